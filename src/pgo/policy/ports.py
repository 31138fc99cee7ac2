"""no-ports: nothing published on the host; containers are reached through `expose` and the
proxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgo.policy.model import PORTS, Findings, as_list


def ports(f: Findings, name: str, value: Any) -> None:
    shown = []
    for p in as_list(value):
        if isinstance(p, Mapping):
            host = ":".join(str(x) for x in (p.get("host_ip"), p.get("published")) if x)
            shown.append(f"{host or '*'}->{p.get('target')}")
        else:
            shown.append(str(p))
    if shown:
        f.add(name, PORTS, f"publishes ports on the host ({', '.join(shown)}); use expose "
                           f"and the proxy")
