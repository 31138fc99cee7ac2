"""SSH keys on disk: pgod's host key, and the keys a service's repository authorizes.

A service's keys are every key line of every `ssh/*.pub` file in its current checkout, so
access follows the repository: a push that adds a key grants, one that removes it revokes.
The checkout is the team's (and a container may have it mounted), so it is read without
following any symlink: the `ssh` directory and each file are opened with O_NOFOLLOW relative
to the checkout, only regular files count, and sizes are bounded. A line that is not a plain
public key (an authorized_keys line with options, a certificate, garbage) grants nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

import asyncssh

log = logging.getLogger("pgo.sshkeys")

MAX_FILES = 256
MAX_FILE = 64 * 1024
HOST_KEY = "ssh_host_ed25519_key"


def load_host_key(directory: Path) -> asyncssh.SSHKey:
    """pgod's host key, made once (ed25519, mode 0600) and reused across restarts."""
    path = directory / HOST_KEY
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise asyncssh.KeyImportError(
                f"{path}: must be a regular file of pgod's user with mode 0600") from None
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="pgod")
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
        f.flush()
        os.fsync(f.fileno())
    log.info("made a new SSH host key %s (%s)", path, key.get_fingerprint())
    return key


def parse_keys(text: str) -> list[asyncssh.SSHKey]:
    """The plain public keys among the lines of one .pub file."""
    keys = []
    for raw in text.splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            key = asyncssh.import_public_key(entry)
        except (asyncssh.KeyImportError, ValueError, TypeError):
            continue
        keys.append(key)
    return keys


def _read_nofollow(dirfd: int, name: str) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        return None
    return data.decode("utf-8", "replace")


def service_keys(checkout: Path) -> list[asyncssh.SSHKey]:
    """Every key in `ssh/*.pub` of the checkout, read without following symlinks."""
    try:
        top = os.open(checkout, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        try:
            sshdir = os.open("ssh", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
        except OSError:
            return []
        try:
            names = sorted(n for n in os.listdir(sshdir) if n.endswith(".pub"))[:MAX_FILES]
            keys: list[asyncssh.SSHKey] = []
            for name in names:
                text = _read_nofollow(sshdir, name)
                if text is not None:
                    keys += parse_keys(text)
            return keys
        finally:
            os.close(sshdir)
    finally:
        os.close(top)


def authorized(key: asyncssh.SSHKey, checkout: Path) -> bool:
    with contextlib.suppress(OSError):
        wanted = key.public_data
        return any(k.public_data == wanted for k in service_keys(checkout))
    return False
