"""The compose policy: judge(model, service, ...) -> the violations (none: it may be deployed).

A service whose user is not root shares the machine with other teams, so its compose file may
give its containers nothing of the host beyond the service's own. One module per principle, as
the README lists them, each rule named in every violation it finds:

    data.py        own-data        bind mounts, files compose reads, volumes that are host
                                   paths: under DATADIR/NAME or the checkout, where they really
                                   lead; mount types bind, volume, tmpfs; the project's volumes
    names.py       own-names       images it builds and containers it names are its own
    namespaces.py  own-namespaces  no host (or another container's) namespace
    privileges.py  own-privileges  no privilege, capability, device or loosened confinement
    ports.py       no-ports        nothing published on the host
    swarm.py       own-data,       for a swarm service (engine = "swarm"): binds only from
                   no-ports        DATADIR/NAME, no published port, whatever is allowed
    networks.py    own-networks    shared networks only from the service's list; no name
                                   another service's urls route to

keys.py holds the allow-list of keys and which rules judge each; anything else is refused as
not-judged. The operator's exceptions (pgo.allow, `allow` in pgo.toml) each lift one rule
where that rule is judged: the rule asks Findings.allowed or allowed_path, and a violation
so lifted is kept apart (Judgement.lifted), for `pgod check` to show. paths.py is the one
place a host path is resolved (every rule asks it, through Findings) and a file the policy
looks into is read; model.py holds the findings and the readers of compose's output, v2's
and v1's.

The model is the one the compose tool printed (pgo.compose.Project.config), with the files
compose read to build it. Root services are not judged: this is the one place that says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pgo.allow import Allow
from pgo.compose import Model
from pgo.config import NAME_RE
from pgo.policy import swarm
from pgo.policy.keys import check
from pgo.policy.model import (
    DATA,
    NAMES,
    NAMESPACES,
    NETWORKS,
    PORTS,
    PRIVILEGES,
    UNKNOWN,
    Findings,
    Judgement,
    Lifted,
    Service,
    Violation,
)
from pgo.policy.paths import Reader, Resolver, Unresolvable, read_file, real_path

__all__ = ["DATA", "NAMES", "NAMESPACES", "NETWORKS", "PORTS", "PRIVILEGES", "UNKNOWN",
           "Judgement", "Lifted", "Reader", "Resolver", "Service", "Unresolvable",
           "Violation", "check", "judge", "judgement", "other_services", "read_file",
           "real_path"]


def judge(model: Model, service: str, user: str, networks: Sequence[str], checkout: Path,
          data: Path, routes: Mapping[str, str] | None = None, *,
          allow: Sequence[Allow] = (), others: Sequence[str] | None = None,
          resolve: Resolver = real_path, read: Reader = read_file, engine: str = "compose"
          ) -> list[Violation]:
    """What is wrong with `model` for pgo service `service` (see judgement)."""
    return list(judgement(model, service, user, networks, checkout, data, routes,
                          allow=allow, others=others, resolve=resolve, read=read,
                          engine=engine).violations)


def judgement(model: Model, service: str, user: str, networks: Sequence[str],
              checkout: Path, data: Path, routes: Mapping[str, str] | None = None, *,
              allow: Sequence[Allow] = (), others: Sequence[str] | None = None,
              resolve: Resolver = real_path, read: Reader = read_file,
              engine: str = "compose") -> Judgement:
    """The verdict on `model` for pgo service `service` (run as `user`, sharing `networks`,
    checked out in `checkout`, its data in `data`, with the operator's exceptions `allow`).
    `routes`: the host names other services' urls send traffic to
    (Config.routes_of_others). `others` defaults to the services the file system tells of
    (other_services); `resolve` and `read` to the real file system. `engine`: "swarm"
    adds the rules of a stack whose tasks may run on any node (pgo.policy.swarm)."""
    if user == "root":
        return Judgement()  # root services bypass the policy
    svc = Service(
        name=service, checkout=str(checkout.absolute()), data=str(data.absolute()),
        networks=tuple(networks), routes=dict(routes or {}), allow=tuple(allow),
        others=tuple(others) if others is not None else other_services(service, checkout,
                                                                         data))
    verdict = check(model.data, model.files, svc, resolve, read)
    if engine == "swarm":
        more = swarm.violations(Findings(model.data, model.files, svc, resolve, read),
                                verdict.violations)
        verdict = Judgement(verdict.violations + tuple(
            v for v in more if v not in verdict.violations), verdict.lifted, verdict.unused)
    return verdict


def other_services(service: str, checkout: Path, data: Path) -> tuple[str, ...]:
    """The names of the other pgo services on this machine, as far as the file system
    tells: every service has its data directory beside this one's (DATADIR/NAME), and, in
    pgod's own layout, its checkout beside this one's. Stale directories count too: the
    volumes of a removed service may still be there."""
    found: set[str] = set()
    parents = [data.parent]
    if checkout.name == service:
        parents.append(checkout.parent)
    for parent in parents:
        try:
            with os.scandir(parent) as entries:
                found.update(e.name for e in entries if NAME_RE.match(e.name))
        except OSError:
            continue
    found.discard(service)
    return tuple(sorted(found))
