"""The policy for a service of `engine = "swarm"`: the compose policy, and what follows from
a task running on any node of the swarm.

    own-data   bind mounts only from the service's data directory (DATADIR/NAME, which the
               operator provides on every node): the checkout, and any host path, exist on
               the manager only; an operator's `bind:` exception does not reach the other
               nodes and is not honoured. Named volumes are the project's own on each node;
               file-based configs and secrets are read on the manager and shipped by swarm
               (judged as for compose).
    no-ports   nothing published, neither through the ingress (every node's port) nor in
               host mode: an operator's `port:` exception does not apply either

Networks (own overlay ones, shared ones from the service's list), deploy's placement,
mode, replicas, resources, update, rollback and restart policies are judged as for
compose; everything that reaches the host stays refused by the compose policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgo.policy.model import DATA, PORTS, Findings, Violation, as_list, as_map, parse_mount
from pgo.policy.paths import under


def violations(f: Findings, known: Sequence[Violation] = ()) -> list[Violation]:
    """What the compose policy lets through (it found `known`) but a swarm stack may not
    have."""
    found: list[Violation] = []

    def refused(name: str, rule: str, text: str) -> bool:
        return any(v.compose_service == name and v.rule == rule and text in v.message
                   for v in known)

    data = f.real(f.service.data) or f.service.data
    for name, raw in f.services.items():
        svc: Mapping[str, Any] = as_map(raw)
        for entry in as_list(svc.get("volumes")):
            m = parse_mount(entry)
            if m is None or m.type != "bind" or not m.source:
                continue
            real = f.real(m.source)
            if refused(str(name), DATA, m.source):
                continue
            if real is None or not under(real, data):
                shown = m.source if real in (None, m.source) else f"{m.source} (really {real})"
                found.append(Violation(str(name), DATA, (
                    f"bind mount {shown}: a swarm task may run on any node, where only the "
                    f"data directory is provided; {f.keep_data}")))
        if as_list(svc.get("ports")) and not refused(str(name), PORTS, "publishes"):
            found.append(Violation(str(name), PORTS, (
                "publishes ports (ingress or host mode): a swarm service publishes on every "
                "node; use expose and the proxy")))
    return found
