"""Config reload, the pure part: what changed between two configs, and whether the file did.

The daemon applies a Changes (daemon.Daemon.reload_config): added services start, removed ones are
downed and cleaned up like stale ones, changed ones get a new tracker, the rest are left
alone (the same tracker, containers untouched).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

from pgo import config

POLL_INTERVAL = 2.0  # seconds between two looks at the config file (--restart)


@dataclass(frozen=True)
class Changes:
    added: tuple[config.Service, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[config.Service, tuple[str, ...]], ...] = ()  # new settings, key names

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.removed)} removed",
                 f"{len(self.changed)} changed"]
        return ", ".join(parts)


def key_name(field: str) -> str:
    return "import" if field == "import_" else field


def changed_keys(old: config.Service, new: config.Service) -> tuple[str, ...]:
    """The config keys whose values differ (names only: values may be secrets)."""
    return tuple(key_name(f.name) for f in dataclasses.fields(config.Service)
                 if getattr(old, f.name) != getattr(new, f.name))


def diff(old: config.Config, new: config.Config) -> Changes:
    before = {s.name: s for s in old.services}
    after = {s.name: s for s in new.services}
    return Changes(
        added=tuple(s for n, s in after.items() if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple((s, changed_keys(before[n], s)) for n, s in after.items()
                      if n in before and before[n] != s),
    )


def file_key(path: str) -> tuple[int, int, int, int, int] | None:
    """What a cheap stat says about the file: (device, inode, size, mtime, ctime) in ns."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
