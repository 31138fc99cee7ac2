"""NFS data directories: `mount = "nfs://server/share"` puts the share on DATADIR/NAME.

It is mounted (as root, through the runner) before the service is first brought up, never
twice (the kernel's own table, /proc/self/mountinfo, says what is mounted), and unmounted
when the service goes stale or is removed from pgo.toml. The parsing is pure; `Mounts` is
the small I/O around it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgo.errors import CommandError, PgoError
from pgo.runner import CommandRunner

if TYPE_CHECKING:
    from pgo.service import TrackedService

log = logging.getLogger("pgo.nfs")

MOUNTINFO = Path("/proc/self/mountinfo")
OPTIONS = "rw,nosuid,hard"
NFS_TYPES = frozenset({"nfs", "nfs4"})
MOUNT_TIMEOUT = 180.0  # mount.nfs itself retries for two minutes

URL_RE = re.compile(r"^nfs://([A-Za-z0-9][A-Za-z0-9.-]*)(?::([0-9]{1,5}))?(/\S*)$")


@dataclass(frozen=True)
class Export:
    """A share on an NFS server, as `mount` wants it."""

    server: str
    path: str  # absolute, on the server
    port: int | None = None

    @property
    def source(self) -> str:
        return f"{self.server}:{self.path}"


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, the parts pgo looks at."""

    mountpoint: str
    fstype: str
    source: str


def parse_url(url: str) -> Export:
    """`nfs://server[:port]/share` -> Export(server, "/share", port)."""
    m = URL_RE.match(url)
    if not m:
        raise PgoError(f"mount {url!r}: not an nfs://server/share URL")
    port = int(m.group(2)) if m.group(2) else None
    if port is not None and not 0 < port < 65536:
        raise PgoError(f"mount {url!r}: invalid port {port}")
    return Export(server=m.group(1), path=m.group(3), port=port)


def mount_argv(export: Export, target: Path | str) -> list[str]:
    options = OPTIONS if export.port is None else f"{OPTIONS},port={export.port}"
    return ["mount", "-t", "nfs", "-o", options, export.source, str(target)]


def umount_argv(target: Path | str) -> list[str]:
    return ["umount", str(target)]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as \\040 and the like."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts in /proc/PID/mountinfo text, in the kernel's order (later ones on top).

    A line is `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`
    (proc(5)); lines that do not have that shape are skipped.
    """
    out: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        out.append(Mount(mountpoint=_unescape(fields[4]), fstype=fields[sep + 1],
                         source=_unescape(fields[sep + 2])))
    return out


def mounted_at(mounts: list[Mount], path: str) -> Mount | None:
    """The mount visible at `path` (the last one mounted there), if any."""
    found = None
    for m in mounts:
        if m.mountpoint == path:
            found = m
    return found


class Mounts:
    """Mounts and unmounts services' NFS shares through the runner, as root."""

    def __init__(self, runner: CommandRunner, mountinfo: Path = MOUNTINFO) -> None:
        self.runner = runner
        self.mountinfo = mountinfo

    def at(self, target: Path) -> Mount | None:
        """What is mounted on `target` now (its real path, as the kernel shows it)."""
        try:
            text = self.mountinfo.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise PgoError(f"can not read {self.mountinfo}: {e.strerror or e}") from None
        return mounted_at(parse_mountinfo(text), os.path.realpath(target))

    async def ensure(self, svc: TrackedService) -> None:
        """before_up hook: mount the service's share on its data directory unless it is."""
        if not svc.cfg.mount:
            return
        export = parse_url(svc.cfg.mount)
        target = svc.paths.data(svc.name)
        found = self.at(target)
        if found is not None:
            if found.fstype not in NFS_TYPES or found.source != export.source:
                svc.log.warning("%s already has %s (%s) mounted, not %s; leaving it", target,
                                found.source, found.fstype, export.source)
            return
        await self.runner.run(mount_argv(export, target), timeout=MOUNT_TIMEOUT,
                              service=svc.name, check=True,
                              what=f"mount {export.source} on {target}")
        svc.log.info("mounted %s on %s", export.source, target)

    async def release(self, name: str, target: Path) -> None:
        """Unmount the NFS share on a departing service's data directory, if there is one.
        Failures are logged: the rest of the cleanup goes on."""
        try:
            found = self.at(target)
        except PgoError as e:
            log.error("[%s] %s", name, e)
            return
        if found is None or found.fstype not in NFS_TYPES:
            return
        try:
            await self.runner.run(umount_argv(target), timeout=MOUNT_TIMEOUT, service=name,
                                  check=True, what=f"umount {target}")
        except CommandError as e:
            log.error("[%s] %s", name, e)
            return
        log.info("[%s] unmounted %s from %s", name, found.source, target)
