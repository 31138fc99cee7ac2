"""SSH keys on disk: pgod's host key, and the keys a service's repository authorizes.

A service's keys are every key line of every `ssh/*.pub` file in its current checkout, so
access follows the repository: a push that adds a key grants, one that removes it revokes.
The checkout is the team's (and a container may have it mounted), so it is read without
following any symlink: the `ssh` directory and each file are opened with O_NOFOLLOW relative
to the checkout, only regular files count. A line that is not a plain public key (an
authorized_keys line with options, a certificate, garbage) grants nothing.

What a team commits there costs pgod work, so it is bounded and done once per commit: the
keys of a checkout are parsed when its HEAD (read from git's files) or git's index (which
git writes after it has written the files of a checkout, reset or clone) changes, never
per request, and at most MAX_FILES files of MAX_FILE bytes and MAX_KEYS key lines are
read; what is left out is logged once per commit. `Keyring` keeps every tracked service's keys
and their union, which the SSH server asks at authentication: a key no service holds is
not let in at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from pgo.errors import HostKeyError
from pgo.gitrepo import read_ref

log = logging.getLogger("pgo.sshkeys")

MAX_ENTRIES = 1024  # names in ssh/ looked at (a bigger directory grants nothing)
MAX_FILES = 64  # ssh/*.pub files read, in name order
MAX_FILE = 16 * 1024  # bytes of one file (room for about 20 RSA keys)
MAX_KEYS = 128  # key lines parsed per checkout (comments and blank lines are free)
HOST_KEY = "ssh_host_ed25519_key"
# A key no service holds makes the keyring look at every checkout's HEAD again, at most
# this often: a key pushed a moment ago is found, a flood of unknown keys costs little.
REFRESH_GAP = 0.25


def load_host_key(directory: Path) -> asyncssh.SSHKey:
    """pgod's host key, made once (ed25519, mode 0600) and reused across restarts;
    HostKeyError when the file there can not be used."""
    path = directory / HOST_KEY
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise HostKeyError(
                f"{path}: must be a regular file of pgod's user with mode 0600") from None
        try:
            return asyncssh.read_private_key(str(path))
        except (OSError, asyncssh.KeyImportError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) else str(e)
            raise HostKeyError(f"{path}: not a usable private key ({why}); move it away "
                               "and pgod makes a new one") from None
    key = asyncssh.generate_private_key("ssh-ed25519", comment="pgod")
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
        f.flush()
        os.fsync(f.fileno())
    log.info("made a new SSH host key %s (%s)", path, key.get_fingerprint())
    return key


@dataclass
class Parsed:
    """The keys of one checkout (their public data), and what was left out."""

    keys: set[bytes] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    lines: int = 0  # key lines parsed so far
    full: bool = False  # MAX_KEYS reached: nothing more is read


def parse_keys(text: str, found: Parsed, where: str = "") -> None:
    """Add the plain public keys among the lines of one .pub file to `found`."""
    for raw in text.splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        if found.lines >= MAX_KEYS:
            found.full = True
            found.problems.append(f"more than {MAX_KEYS} key lines: the rest of {where} "
                                  "and what follows ignored")
            return
        found.lines += 1
        try:
            key = asyncssh.import_public_key(entry)
        except (asyncssh.KeyImportError, ValueError, TypeError):
            continue
        found.keys.add(key.public_data)


def _read_nofollow(dirfd: int, name: str, found: Parsed) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        found.problems.append(f"ssh/{name} is larger than {MAX_FILE} bytes: ignored")
        return None
    return data.decode("utf-8", "replace")


def read_keys(checkout: Path) -> Parsed:
    """Every key in `ssh/*.pub` of the checkout, read without following symlinks, within
    the limits above."""
    found = Parsed()
    try:
        top = os.open(checkout, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return found
    try:
        try:
            sshdir = os.open("ssh", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
        except OSError:
            return found
        try:
            with os.scandir(sshdir) as it:
                entries = [e.name for _, e in zip(range(MAX_ENTRIES + 1), it, strict=False)]
            if len(entries) > MAX_ENTRIES:
                found.problems.append(f"ssh/ has more than {MAX_ENTRIES} entries: "
                                      "no key read")
                return found
            names = sorted(n for n in entries if n.endswith(".pub"))
            if len(names) > MAX_FILES:
                found.problems.append(f"{len(names)} ssh/*.pub files: only the first "
                                      f"{MAX_FILES} read (up to ssh/{names[MAX_FILES - 1]})")
            for name in names[:MAX_FILES]:
                text = _read_nofollow(sshdir, name, found)
                if text is not None:
                    parse_keys(text, found, f"ssh/{name}")
                if found.full:
                    break
            return found
        finally:
            os.close(sshdir)
    finally:
        os.close(top)


def checkout_version(checkout: Path) -> str | None:
    """What the checkout's files are, from git's own files (no process): its commit, and
    the identity of git's index, which changes when git has (re)written the files of that
    commit (a clone without files that is reset later keeps its HEAD). None while the
    checkout has no commit."""
    commit = read_ref(checkout / ".git", "HEAD")
    if commit is None:
        return None
    try:
        st = os.stat(checkout / ".git" / "index")
    except OSError:
        return f"{commit} -"
    return f"{commit} {st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


@dataclass(frozen=True)
class KeySet:
    version: str  # checkout_version() when the keys were read
    keys: frozenset[bytes]


class Keyring:
    """Every tracked service's keys, parsed once per commit of its checkout, and their
    union, which tells a key that some service holds from one that none does.

    `tracked()` gives the services tracked now (name -> checkout). Parsing runs in a
    thread, once for any number of requests that ask at the same time."""

    def __init__(self, tracked: Callable[[], Mapping[str, Path]]) -> None:
        self.tracked = tracked
        self._sets: dict[str, KeySet] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[KeySet | None]] = {}
        self._index: frozenset[bytes] = frozenset()  # every tracked service's keys
        self._refresh: asyncio.Task[None] | None = None
        self._last_start = -1e9  # monotonic time the last refresh started
        self._fresh_since = -1e9  # ... and the last one that finished

    async def keys_of(self, name: str, checkout: Path) -> frozenset[bytes]:
        """The keys in the checkout's current commit (none while it has no commit)."""
        version = checkout_version(checkout)
        if version is None:
            return frozenset()
        cached = self._sets.get(name)
        if cached is not None and cached.version == version:
            return cached.keys
        loading = self._loading.get((name, version))
        if loading is None:
            loading = asyncio.ensure_future(asyncio.to_thread(self._load, name, checkout))
            self._loading[(name, version)] = loading
            loading.add_done_callback(lambda _: self._loading.pop((name, version), None))
        loaded = await asyncio.shield(loading)
        if loaded is None:
            return frozenset()
        self._sets[name] = loaded
        return loaded.keys

    def _load(self, name: str, checkout: Path) -> KeySet | None:
        """Parse the checkout's keys; None when git changed it meanwhile, three times (a
        reset in progress): nothing is granted from a half-written ssh/ directory."""
        for _ in range(3):
            before = checkout_version(checkout)
            if before is None:
                return None
            try:
                found = read_keys(checkout)
            except OSError as e:  # an unreadable ssh/ grants nothing
                found = Parsed(problems=[f"ssh/: {e.strerror or e}"])
            if checkout_version(checkout) == before:
                if found.problems:
                    log.warning("[%s] ssh keys of commit %s: %s", name, before[:8],
                                "; ".join(found.problems))
                return KeySet(before, frozenset(found.keys))
        return None

    async def authorized(self, key: asyncssh.SSHKey, name: str, checkout: Path) -> bool:
        """Is `key` one of service `name`'s keys in its current commit?"""
        return key.public_data in await self.keys_of(name, checkout)

    async def holds(self, key: asyncssh.SSHKey, since: float) -> bool:
        """Does some tracked service hold `key`? The union is as of a refresh that started
        at or after `since` (a monotonic time: when the connection came), so a key pushed
        and deployed before the client connected is known."""
        if key.public_data in self._index:
            return True
        while self._fresh_since < since:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._refresh_soon())
            await asyncio.shield(self._refresh)
        return key.public_data in self._index

    async def _refresh_soon(self) -> None:
        wait = self._last_start + REFRESH_GAP - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        started = self._last_start = time.monotonic()
        try:
            await self.refresh()
        finally:
            self._fresh_since = started

    async def refresh(self) -> None:
        """Look at every tracked checkout's commit; parse the keys of those that moved."""
        tracked = dict(self.tracked())
        union: set[bytes] = set()
        for name, checkout in tracked.items():
            union |= await self.keys_of(name, checkout)
        for gone in set(self._sets) - set(tracked):
            del self._sets[gone]
        self._index = frozenset(union)
