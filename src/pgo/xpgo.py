"""The top-level `x-pgo` extension of a compose file: how pgod deploys it.

    x-pgo:
      reload: false          # a changed model waits for a manual //up (default true)
      down: true             # down, then up (default: up alone, in place)
      health_timeout: 60s    # the health gate's deadline after up (default 2m; 0s: no gate)
      settle: 5s             # how long a container must run unchanged (default 10s)

Read strictly, like the rest of what a team commits: an unknown key or a value of the wrong
type is refused with one line naming it (Settings.parse raises ValueError), and the commit
is not deployed. The compose tool does not look at `x-*` keys; only pgod does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgo.duration import parse_duration

HEALTH_TIMEOUT = 120.0
SETTLE = 10.0
MAX_HEALTH_TIMEOUT = 3600.0  # the service's lock is held that long at most


@dataclass(frozen=True)
class Settings:
    reload: bool = True
    down: bool = False
    health_timeout: float = HEALTH_TIMEOUT
    settle: float = SETTLE

    @classmethod
    def parse(cls, ext: Any, defaults: Settings | None = None) -> Settings:
        """The settings of an `x-pgo` value (None: not there); `defaults` for what it does
        not set. ValueError with one line when it is not valid."""
        base = defaults or cls()
        if ext is None:
            return base
        if not isinstance(ext, dict):
            raise ValueError("x-pgo: expected a mapping (reload, down, health_timeout, settle)")
        unknown = sorted(str(k) for k in ext if k not in KEYS)
        if unknown:
            raise ValueError(f"x-pgo: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
        values: dict[str, Any] = {}
        for key in ("reload", "down"):
            if key in ext:
                if not isinstance(ext[key], bool):
                    raise ValueError(f"x-pgo: {key}: expected true or false, got "
                                     f"{_shown(ext[key])}")
                values[key] = ext[key]
        for key in ("health_timeout", "settle"):
            if key in ext:
                values[key] = _duration(key, ext[key])
        out = Settings(**{**base.__dict__, **values})
        if out.health_timeout > MAX_HEALTH_TIMEOUT:
            raise ValueError(f"x-pgo: health_timeout: {_shown(ext.get('health_timeout'))} is "
                             f"longer than {MAX_HEALTH_TIMEOUT / 60:g}m")
        if out.health_timeout and out.settle >= out.health_timeout:
            raise ValueError("x-pgo: settle must be shorter than health_timeout "
                             f"({out.settle:g}s, {out.health_timeout:g}s)")
        return out

    @property
    def gated(self) -> bool:
        """False for `health_timeout: 0s`: up alone decides (no health gate)."""
        return self.health_timeout > 0


KEYS = ("reload", "down", "health_timeout", "settle")


def _duration(key: str, value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError(f"x-pgo: {key}: expected a duration such as 30s or 2m, got "
                         f"{_shown(value)}")
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise ValueError(f"x-pgo: {key}: {e}") from None
    return seconds


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
