"""no-ports: nothing published on the host; containers are reached through `expose` and the
proxy. The operator may allow one host port and protocol for a service (port:53/udp)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pgo.policy.model import PORTS, Findings, as_list


def ports(f: Findings, name: str, value: Any) -> None:
    shown = []
    for p in as_list(value):
        if isinstance(p, Mapping):
            host = ":".join(str(x) for x in (p.get("host_ip"), p.get("published")) if x)
            text = f"{host or '*'}->{p.get('target')}"
            if p.get("protocol") and p.get("protocol") != "tcp":
                text += f"/{p['protocol']}"
        else:
            text = str(p)
        port = published(p)
        grant = f.allowed("port", port) if port is not None else None
        if grant is not None:
            f.add(name, PORTS, f"publishes port {text} on the host", grant)
        else:
            shown.append(text)
    if shown:
        f.add(name, PORTS, f"publishes ports on the host ({', '.join(shown)}); use expose "
                           f"and the proxy")


def published(entry: Any) -> str | None:
    """PORT/PROTO of the one host port a `ports` entry publishes (v2's mapping, v1's
    `[IP:][PUBLISHED:]TARGET[/PROTO]`); None for a random port, a range, or what can not be
    read."""
    if isinstance(entry, Mapping):
        port, proto = str(entry.get("published") or ""), str(entry.get("protocol") or "tcp")
    elif isinstance(entry, str | int):
        body, _, proto = str(entry).partition("/")
        fields = body.rsplit(":", 2)
        port, proto = (fields[-2] if len(fields) > 1 else ""), proto or "tcp"
    else:
        return None
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        return None
    return f"{int(port)}/{proto.lower()}"
