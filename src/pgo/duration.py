"""Go-style durations (10s, 5m, 1m30s, 1h, 250ms) and listen addresses (:2222, host:port)."""

from __future__ import annotations

import re

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError when it is not one."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r} (use e.g. 10s, 5m, 1m30s)")
        total += float(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_addr(text: str) -> tuple[str, int]:
    """`:2222`, `127.0.0.1:2222`, `[::1]:2222` -> (host, port); host "" means every address."""
    m = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$", text.strip())
    if not m:
        raise ValueError(f"invalid address {text!r} (use e.g. :2222 or 127.0.0.1:2222)")
    port = int(m.group(3))
    if port > 65535:
        raise ValueError(f"invalid port in {text!r}")
    return (m.group(1) or m.group(2) or ""), port
