"""A service's SOPS documents as pgod checks its commits out: decrypted in place, their
values redacted from then on.

    Redactions          the values never to be printed for one service: its config's secrets
                        and every value decrypted for it. One object per service, shared by
                        its checkout, its compose project, its log and the runner's command
                        lines, so a value decrypted now is redacted everywhere at once.
    KeyUnavailable      the service's identities can not be read or made: the machine's
                        problem, for its operator (tried again next pass), never a verdict on
                        a commit
    decrypt_tree(dir, tracked, svc, private_dir, owner, write=True) -> Decrypted
                        checkout.decrypt_checkout off the event loop, the service's
                        identities read (or made) only when a document is found
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

from pgo import config
from pgo.errors import SecretError
from pgo.secrets.checkout import Decrypted, decrypt_checkout
from pgo.secrets.identity import Identities, for_service

# The most decrypted values one service keeps redacting: beyond, the oldest go (a team that
# commits a new value every minute must not make every log line slower for ever).
MAX_DECRYPTED = 4096


class Redactions(list[str]):
    """The values to redact: the config's secrets (always), then the values decrypted for
    the service, which are kept after a commit that drops them (a rotated password stays
    redacted: a container that still runs may print it), up to MAX_DECRYPTED."""

    def __init__(self, configured: Iterable[str] = ()) -> None:
        super().__init__(v for v in configured if v)
        self.configured = len(self)

    def add(self, values: Iterable[str]) -> None:
        known = set(self)
        for v in values:
            if v and v not in known:
                known.add(v)
                self.append(v)
        over = len(self) - self.configured - MAX_DECRYPTED
        if over > 0:
            del self[self.configured:self.configured + over]


class KeyUnavailable(SecretError):
    """The identities to decrypt with can not be read or made (the file, the reason)."""


async def decrypt_tree(directory: Path, tracked: Sequence[str], svc: config.Service,
                       private_dir: Path, owner: tuple[int, int], *, write: bool = True,
                       create: bool = True) -> Decrypted:
    """Every SOPS document among the `tracked` files of `directory` decrypted in place (with
    `write` false: only checked). SecretError names the first document that can not be
    decrypted; KeyUnavailable says the identities could not be had."""

    def identities() -> Identities:
        try:
            return for_service(svc, private_dir, create=create)
        except SecretError as e:
            raise KeyUnavailable(e.path, e.reason) from None

    return await asyncio.to_thread(decrypt_checkout, directory, tracked, identities, owner,
                                   write=write)
