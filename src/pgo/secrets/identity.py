"""A service's age identities: its own, made on first need, or the operator's file.

    for_service(svc, private_dir)   the identities a service decrypts with (made if need be)
    ensure(private_dir)             the service's own identity: read, or made once
    read(path)                      an identity file as age-keygen writes it
    Identities.recipient            the `age1...` a team encrypts for

A service's own identity is an X25519 key in `DIR/.pgo/services/NAME/age.key`, the format
age-keygen writes (comments, then `AGE-SECRET-KEY-1...`), owned by root, mode 0600: the
service's user can not read it, nor can anything in a checkout or data directory. It is
written once, atomically (a private temporary file linked into place, so a second pgod
never overwrites the first's key), and never logged; only its recipient is.

An operator may instead name a file in pgo.toml, `age_identity = "/etc/pgo/keys/team1.txt"`:
one or more identities, so a key can be rotated (a document for the old recipient or the new
one decrypts). The recipient shown for such a file is its last identity's, the one
`age-keygen >> FILE` adds. Both kinds of file must be regular files (no symlink), owned by
root (pgod's user), and neither group nor others may have any permission on them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyrage

from pgo import config
from pgo.errors import SecretError

log = logging.getLogger("pgo.secrets")

IDENTITY_FILE = "age.key"
MAX_FILE = 64 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Identities:
    source: str  # the file they were read from
    identities: tuple[pyrage.x25519.Identity, ...] = field(repr=False)

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(str(i.to_public()) for i in self.identities)

    @property
    def recipient(self) -> str:
        """The recipient a team encrypts for: the last identity's (the newest, in a file
        that `age-keygen >>` grew)."""
        return self.recipients[-1]

    def __repr__(self) -> str:  # never a secret key, even by accident
        return f"Identities(source={self.source!r}, recipients={self.recipients!r})"


def parse(text: str, source: str) -> Identities:
    """The X25519 identities of an identity file; a problem is one line naming the file and
    the line, never the line's content."""
    found: list[pyrage.x25519.Identity] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise SecretError(source, f"line {n} is not an X25519 age identity "
                              "(AGE-SECRET-KEY-1...) nor a # comment")
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SecretError(source, f"line {n} is not a valid age identity") from None
    if not found:
        raise SecretError(source, "holds no age identity")
    return Identities(source, tuple(found))


def read(path: Path) -> Identities:
    """The identities in `path`, which must be a regular file (not a symlink) of pgod's own
    user that no group or other user may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SecretError(str(path), "is a symlink; not followed") from None
        raise SecretError(str(path), f"can not read it: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        _check_private(st, str(path))
        data = os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE:
        raise SecretError(str(path), f"larger than {MAX_FILE // 1024} KiB; not an identity file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(str(path), "not UTF-8 text") from None
    return parse(text, str(path))


def _check_private(st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(path, "is not a regular file")
    if st.st_uid != os.geteuid():
        raise SecretError(path, f"is owned by uid {st.st_uid}, not by pgod's user "
                          f"(uid {os.geteuid()}): chown it")
    if st.st_mode & 0o077:
        raise SecretError(path, f"has mode {stat.S_IMODE(st.st_mode):04o}: other users may "
                          "read or change it; chmod 600 it")


def ensure(private_dir: Path) -> Identities:
    """The service's own identity in `private_dir`, made now when there is none yet."""
    path = private_dir / IDENTITY_FILE
    try:
        return read(path)
    except SecretError:
        if os.path.lexists(path):
            raise
    return _make(private_dir)


def _make(private_dir: Path) -> Identities:
    path = private_dir / IDENTITY_FILE
    try:
        private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dir_fd = os.open(private_dir, DIR_FLAGS)
    except OSError as e:
        raise SecretError(str(path), f"can not make it: {e.strerror or e}") from None
    try:
        identity = pyrage.x25519.Identity.generate()
        recipient = str(identity.to_public())
        text = (f"# created: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                f"# public key: {recipient}\n{identity}\n")
        tmp = f".{IDENTITY_FILE}.{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
        except OSError as e:
            raise SecretError(str(path), f"can not make it: {e.strerror or e}") from None
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(text.encode())
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:  # link, not rename: a key another pgod made a moment ago is never replaced
                os.link(tmp, IDENTITY_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd,
                        follow_symlinks=False)
            except FileExistsError:
                return read(path)
            except OSError as e:
                raise SecretError(str(path), f"can not make it: {e.strerror or e}") from None
            os.fsync(dir_fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    log.info("made an age identity %s (recipient %s)", path, recipient)
    return read(path)


def for_service(svc: config.Service, private_dir: Path, *, create: bool = True) -> Identities:
    """The identities service `svc` decrypts with: the operator's `age_identity` file, or
    its own in `private_dir` (made now when `create` and there is none)."""
    if svc.age_identity:
        return read(Path(svc.age_identity))
    if create:
        return ensure(private_dir)
    return read(private_dir / IDENTITY_FILE)
