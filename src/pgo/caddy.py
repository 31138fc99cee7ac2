"""The Caddy import: one snippet that routes every service's `urls`, kept in the checkout of
the service with `import`, and that service's `reload` run after the snippet changes.

    routes(cfg) / snippet(routes)   pure: the site blocks, in a stable order
    write_import(...)               I/O: atomic, never leaves the checkout, only on change
    run_reload(...)                 `docker compose exec -T NAME CMD...` in project NAME
    Importer                        the hooks pgod wires in: after every sync and before
                                    every up of the import service, after an up of the reload
                                    target, after a config reload

The checkout is the team's: any path in it may be a symlink, a directory or a FIFO planted
by a commit or by a container that mounts it. Every step below is taken relative to an open
directory with O_NOFOLLOW, so nothing outside the checkout is ever read or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from pgo import config
from pgo.errors import PgoError
from pgo.runner import redact
from pgo.service import TrackedService

log = logging.getLogger("pgo.caddy")

RELOAD_TIMEOUT = 120.0
OUTPUT_LIMIT = 64 * 1024  # bytes of a reload's output kept for the log
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def routes(cfg: config.Config) -> tuple[list[tuple[str, str]], list[str]]:
    """Every (site, host:port) of every service, sorted by site, and the problems found.
    A site two services claim goes to the first by name (Caddy refuses a duplicate site,
    which would take every route down); the other claim is reported."""
    owner: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    problems: list[str] = []
    for svc in sorted(cfg.services, key=lambda s: s.name):
        for site, target in svc.urls:
            if site in owner:
                problems.append(f"url {site!r} of service {svc.name} is already routed for "
                                f"service {owner[site]}; left out of the Caddy import")
                continue
            owner[site] = svc.name
            out.append((site, target))
    out.sort()
    return out, problems


def snippet(sites: Sequence[tuple[str, str]]) -> str:
    """The Caddyfile text: one site block per url. (config.py allows only characters that
    can not break out of a block: no spaces, braces, quotes or newlines.)"""
    return "".join(f"{site} {{\n\treverse_proxy {target}\n}}\n" for site, target in sites)


def _read_regular(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The content of regular file `name` in dir_fd, or None when it is missing or is
    anything else (a symlink is not followed, a FIFO not waited on)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _open_dir(dir_fd: int, part: str, rel: str, uid: int, gid: int) -> int:
    """Open directory `part` below dir_fd without following a symlink; create it (owned
    by the service user) when it does not exist."""
    try:
        return os.open(part, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=dir_fd)
            os.chown(part, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        return os.open(part, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise PgoError(f"Caddy import {rel}: {part!r} in the checkout is a symlink or not a "
                       "directory; not following it") from None


def write_import(checkout: Path, rel: str, text: str, uid: int, gid: int) -> str:
    """Make `checkout/rel` hold `text`, owned by uid:gid, mode 0644. Return "unchanged",
    "created" or "replaced". The file is replaced atomically (a new inode: mount its
    directory in a container, not the file); a symlink at its place is replaced, never
    followed."""
    parts = [p for p in PurePosixPath(rel).parts if p != "."]
    if not parts or rel.startswith("/") or ".." in parts:
        raise PgoError(f"Caddy import {rel}: not a relative path inside the checkout")
    try:
        dir_fd = os.open(checkout, DIR_FLAGS)
        try:
            for part in parts[:-1]:
                sub = _open_dir(dir_fd, part, rel, uid, gid)
                os.close(dir_fd)
                dir_fd = sub
            return _replace(dir_fd, parts[-1], text.encode(), uid, gid)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise PgoError(f"Caddy import {rel}: can not write it: {e.strerror or e}") from None


def _replace(dir_fd: int, name: str, data: bytes, uid: int, gid: int) -> str:
    old = _read_regular(dir_fd, name, len(data) + 1)
    if old == data:
        return "unchanged"
    existed = old is not None or _exists(dir_fd, name)
    tmp = f".{name}.pgo-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dir_fd)
    try:
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return "replaced" if existed else "created"


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


async def run_reload(target: TrackedService, argv: Sequence[str]) -> tuple[int, str]:
    """Run a reload line's command in its project, as the original pgo does:
    `HOST:NAME//exec CMD...` is `docker compose exec -T NAME CMD...` in project NAME (the
    compose service named like the pgo service). It goes through the command table's
    `exec`, the one `pgoctl NAME//exec` uses. Return the exit status and the output."""
    from pgo import commands, request

    out = bytearray()

    async def keep(chunk: bytes) -> None:
        out.extend(chunk[: max(0, OUTPUT_LIMIT - len(out))])

    checked = request.Checked(flags=(), words=(target.name, *argv))
    async with asyncio.timeout(RELOAD_TIMEOUT):
        rc = await commands.run(target, commands.COMMANDS["exec"], checked, keep, keep)
    return rc, redact(out.decode("utf-8", "replace"), target.secrets)


class Importer:
    """Keeps the import service's snippet current and runs its reload after a rewrite.

    A reload that can not run yet (its target is not tracked or not running) is owed: it is
    tried again on every pass of the import service and after every up of the target, and
    logged once, not on every try."""

    def __init__(self, current: Callable[[], config.Config],
                 tracked: Callable[[str], TrackedService | None]) -> None:
        self.current = current  # the config in force (it changes on a config reload)
        self.tracked = tracked  # service name -> its tracker, if tracked
        self.written: str | None = None  # the snippet last written or found in place
        self.owed = False  # a rewrite happened that no reload has followed yet
        self._said_waiting = False
        self._reloading = asyncio.Lock()

    def _importer(self) -> config.Service | None:
        return next((s for s in self.current().services if s.import_), None)

    async def ensure(self, svc: TrackedService) -> None:
        """after_sync and before_up hook: write the snippet into the import service's
        checkout when it differs; after a rewrite (or while one is owed) reload."""
        rel = svc.cfg.import_
        if not rel:
            return
        sites, problems = routes(self.current())
        text = snippet(sites)
        outcome = write_import(svc.paths.checkout(svc.name), rel, text, svc.as_user.uid,
                               svc.as_user.gid)
        if outcome != "unchanged":
            if outcome == "replaced" and self.written == text:
                svc.log.warning("Caddy import %s was changed outside pgod (is it tracked in "
                                "the repository? list it in .gitignore); written again", rel)
            else:
                svc.log.info("Caddy import %s written: %d site(s)", rel, len(sites))
            for p in problems:
                svc.log.warning("%s", p)
            self.owed = True
            self._said_waiting = False
        self.written = text
        if self.owed:
            await self.reload(svc)

    async def after_deploy(self, svc: TrackedService) -> None:
        """after_deploy hook: the reload target came up; run a reload it still owes."""
        importer = self._importer()
        if self.owed and importer is not None and importer.reload is not None \
                and importer.reload.name == svc.name:
            importer_svc = self.tracked(importer.name)
            if importer_svc is not None:
                await self.reload(importer_svc)

    async def on_reload(self, new: config.Config) -> None:
        """Config reload hook: when the snippet the new config makes differs from the one
        in place, wake the import service; its pass rewrites it and reloads."""
        importer = self._importer()
        if importer is None:
            return
        if snippet(routes(new)[0]) == self.written:
            return
        svc = self.tracked(importer.name)
        if svc is not None:
            svc.log.info("urls changed: rewriting the Caddy import")
            svc.wake.set()

    async def reload(self, importer: TrackedService) -> None:
        """Run the import service's reload line if its target runs; else leave it owed."""
        line = importer.cfg.reload
        if line is None:
            self.owed = False
            return
        async with self._reloading:
            if not self.owed:
                return
            target = self.tracked(line.name)
            try:
                running = target is not None and await target.project.running()
            except PgoError as e:
                running = False
                importer.log.warning("reload: can not tell whether %s runs: %s", line.name, e)
            if target is None or not running:
                if not self._said_waiting:
                    importer.log.info("reload: %s is not running yet; reloading once it is up",
                                      line.name)
                    self._said_waiting = True
                return
            self.owed = False
            what = " ".join(line.argv)
            try:
                rc, output = await run_reload(target, line.argv)
            except (PgoError, OSError, TimeoutError) as e:
                importer.log.error("reload in %s (exec %s) failed: %s", line.name, what,
                                   str(e) or type(e).__name__)
                return
            if rc == 0:
                importer.log.info("reload in %s (exec %s) done", line.name, what)
            else:
                last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()),
                            "")
                importer.log.error("reload in %s (exec %s) failed: exit status %d%s",
                                   line.name, what, rc, f": {last}" if last else "")
