"""systemd's readiness protocol (sd_notify(3)): one datagram to $NOTIFY_SOCKET.

Without NOTIFY_SOCKET (not started by systemd with Type=notify) every call does nothing.
A socket name starting with `@` is in the abstract namespace. Children never see the
variable: the runner builds their environment from nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("pgo.notify")


def notify(*fields: str) -> bool:
    """Send `KEY=VALUE` lines, e.g. notify("READY=1"); True when a datagram went out."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    elif addr[0] != "/":
        log.warning("NOTIFY_SOCKET=%s is neither a path nor an abstract name; ignored", addr)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(fields).encode(), addr)
    except OSError as e:
        log.warning("sd_notify %s to %s failed: %s", fields[0] if fields else "", addr, e)
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading() -> bool:
    # MONOTONIC_USEC: what systemd >= 253 asks of a reload notification (older ones ignore it)
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping() -> bool:
    return notify("STOPPING=1")
