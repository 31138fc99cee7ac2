"""Decrypt the SOPS documents of a checkout in place.

    tracked_files(git_ls_files_z_output)            -> the paths git tracks
    decrypt_checkout(checkout, tracked, identities, owner) -> Decrypted, or SecretError

The checkout is the team's: any path in it may be a symlink, a FIFO or a directory where a
file was. Every path is opened relative to the checkout's directory, one component at a
time, with O_NOFOLLOW: a symlink is never followed (a tracked symlink is left alone; a
symlinked directory on the way is refused, as git never checks a file out beyond one), and
only regular files are read. A file is read only up to the size limit; one that is larger
and looks like a SOPS document is refused. Most files stop at a byte search for sops'
metadata (`sops.sniff`); a file that mentions sops but is not a document is left alone.

A decrypted file replaces the encrypted one atomically (same name, a new inode), owned by
the service's user, mode 0600. Nothing is written unless every document decrypts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets as token
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pgo.errors import SecretError
from pgo.secrets import sops
from pgo.secrets.identity import Identities
from pgo.secrets.tree import shown

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
EDGE = 64 * 1024  # of a file over the limit, the head and tail sniffed for sops' metadata
MIB = 1 << 20
# per checkout: each document is parsed, decrypted and held until all are (a YAML document
# of 1 MiB takes pgod about a second)
MAX_DOCUMENTS = 256
MAX_TOTAL = 8 * MIB


@dataclass(frozen=True)
class Decrypted:
    files: tuple[str, ...]  # paths (relative to the checkout) decrypted in place
    secrets: tuple[str, ...] = field(repr=False)  # decrypted values, to redact from logs
    # files whose content looks like a SOPS document of another format than their name
    # says (sops reads `secret.txt` as binary): left as they are; worth a warning
    mismatched: tuple[str, ...] = ()


def tracked_files(ls_files_z: bytes) -> list[str]:
    """The paths in `git ls-files -z` output (bytes that are not UTF-8 kept as surrogate
    escapes, as os.fsdecode keeps them)."""
    return [os.fsdecode(p) for p in ls_files_z.split(b"\0") if p]


def decrypt_checkout(checkout: Path, tracked: Iterable[str],
                     identities: Identities | Callable[[], Identities],
                     owner: tuple[int, int], *, limit: int = sops.MAX_SIZE,
                     write: bool = True) -> Decrypted:
    """Decrypt every SOPS document among the `tracked` paths of `checkout` in place (or,
    with write=False, only check that each decrypts). `identities` may be a callable: it is
    called only when there is a document to decrypt (so a service's identity is made on
    first need). Raises SecretError naming the first file that can not be decrypted; then
    nothing has been written."""
    ids: Identities | None = identities if isinstance(identities, Identities) else None
    tree = _Tree(checkout)
    plaintexts: list[tuple[str, bytes]] = []
    found_secrets: list[str] = []
    mismatched: list[str] = []
    total = 0
    try:
        for rel in tracked:
            data = tree.read(rel, limit)
            if data is None or not sops.sniff(data, rel):
                if data is not None and _other_format(data, rel):
                    mismatched.append(rel)
                continue
            if not sops.is_document(data, rel):
                if _broken(data, rel):
                    raise SecretError(rel, "looks like a SOPS document but can not be read as "
                                      f"one ({sops.format_for(rel)}, by its name)")
                if _other_format(data, rel):
                    mismatched.append(rel)
                continue
            if ids is None:
                assert callable(identities)
                ids = identities()
            try:
                plain = sops.decrypt(data, rel, ids.identities)
            except sops.Malformed as e:
                raise SecretError(rel, f"not a valid SOPS document: {e}") from None
            except sops.Refused as e:
                raise SecretError(rel, f"can not be decrypted: {e}") from None
            plaintexts.append((rel, plain.content))
            found_secrets += plain.secrets
            total += len(data)
            if len(plaintexts) > MAX_DOCUMENTS or total > MAX_TOTAL:
                raise SecretError(rel, f"more than {MAX_DOCUMENTS} SOPS documents, or more "
                                  f"than {_size(MAX_TOTAL)} of them, in one commit; refused")
        if write:
            for rel, content in plaintexts:
                tree.replace(rel, content, owner)
    finally:
        tree.close()
    return Decrypted(tuple(r for r, _ in plaintexts), sops.redactable(found_secrets),
                     tuple(mismatched))


def _broken(data: bytes, rel: str) -> bool:
    """A named format's file that has sops' marks but does not parse: a damaged document,
    not a file that merely mentions sops."""
    return sops.format_for(rel) != "binary" and b"ENC[AES256_GCM," in data


def _other_format(data: bytes, rel: str) -> bool:
    """Content sops wrote as YAML, dotenv or INI under a name sops reads as binary."""
    if sops.format_for(rel) != "binary" or b"ENC[AES256_GCM," not in data:
        return False
    return (data.startswith(b"sops:") or b"\nsops:" in data or b"sops_mac=" in data
            or b"[sops]" in data)


class _Tree:
    """The checkout, opened once; directories below it opened without following symlinks
    and kept open while the checkout is walked."""

    def __init__(self, checkout: Path) -> None:
        try:
            self.root = os.open(checkout, DIR_FLAGS)
        except OSError as e:
            raise SecretError(str(checkout), f"can not open the checkout: {e.strerror or e}") \
                from None
        self.dirs: dict[str, int] = {"": self.root}

    def close(self) -> None:
        for fd in self.dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.dirs.clear()

    def _dir(self, rel: str, parts: list[str]) -> int | None:
        """The directory of `rel`, or None when it is gone."""
        key = ""
        fd = self.root
        for part in parts:
            key = f"{key}/{part}" if key else part
            if key in self.dirs:
                fd = self.dirs[key]
                continue
            try:
                sub = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return None
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SecretError(rel, f"{shown(key)} is a symlink or not a directory; "
                                      "not followed") from None
                raise SecretError(rel, f"can not open {shown(key)}: {e.strerror or e}") \
                    from None
            self.dirs[key] = sub
            fd = sub
        return fd

    @staticmethod
    def _parts(rel: str) -> list[str]:
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise SecretError(rel, "not a path inside the checkout")
        return parts

    def read(self, rel: str, limit: int) -> bytes | None:
        """The content of regular file `rel`, or None when it is a symlink, not a regular
        file, gone, or larger than `limit` without looking like a SOPS document."""
        parts = self._parts(rel)
        parent = self._dir(rel, parts[:-1])
        if parent is None:
            return None
        try:
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO, errno.EISDIR):
                return None  # a tracked symlink (left alone), a gitlink, gone, a socket
            raise SecretError(rel, f"can not read it: {e.strerror or e}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_size > limit:
                head = os.pread(fd, EDGE, 0)
                tail = os.pread(fd, EDGE, max(st.st_size - EDGE, 0))
                if sops.sniff(head, rel) or sops.sniff(tail, rel):
                    raise SecretError(rel, f"a SOPS document larger than {_size(limit)}; "
                                      "refused")
                return None
            chunks = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, limit + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
            if len(data) > limit:  # it grew while being read
                raise SecretError(rel, f"larger than {_size(limit)}; refused")
            return data
        finally:
            os.close(fd)

    def replace(self, rel: str, content: bytes, owner: tuple[int, int]) -> None:
        """Atomically make `rel` a new file holding `content`, owned by `owner`, mode 0600;
        whatever is at its name (a symlink too) is replaced, never followed."""
        parts = self._parts(rel)
        parent = self._dir(rel, parts[:-1])
        if parent is None:
            raise SecretError(rel, "its directory is gone; can not write its plaintext")
        tmp = f".{parts[-1][:64]}.pgo-{token.token_hex(6)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent)
        except OSError as e:
            raise SecretError(rel, f"can not write its plaintext: {e.strerror or e}") from None
        try:
            try:
                os.fchmod(fd, 0o600)
                if os.geteuid() == 0 or (os.getuid(), os.getgid()) != owner:
                    os.fchown(fd, *owner)
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise SecretError(rel, f"can not write its plaintext: {e.strerror or e}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"
