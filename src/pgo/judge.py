"""The thin I/O step before the policy: resolve real paths, then ask policy.check().

Compose already made every path in the model absolute against the project directory; what
only the file system knows is where a path really leads: a symlink committed to the
repository (`./data -> /etc`), one a container left in its data directory, a `..` after a
symlink. Each host path the policy judges is resolved here, as it is at this moment, and the
pure policy decides on the result. (Paths that do not exist yet resolve as far as they do:
dockerd creates the rest under the resolved parent.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pgo import policy
from pgo.config import NAME_RE


def real_path(path: str, base: Path) -> str:
    """Where `path` (relative paths against `base`) really leads, symlinks followed."""
    return os.path.realpath(os.path.join(base, path))


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


def service_policy(model: Mapping[str, Any], service: str, user: str,
                   networks: tuple[str, ...], checkout: Path, data: Path,
                   routes: Mapping[str, str] | None = None) -> policy.ServicePolicy:
    base = checkout.absolute()
    return policy.ServicePolicy(
        service=service, root=user == "root",
        allowed=(real_path(str(checkout), base), real_path(str(data), base)),
        networks=networks, project_dir=str(base),
        git_dir=real_path(".git", base),
        real={p: real_path(p, base) for p in policy.host_paths(model)},
        others=other_services(service, checkout, data),
        routes=dict(routes or {}),
        env={"PGO_DATA": str(data), "PGO_SERVICE": service},
    )


def judge(model: Mapping[str, Any], service: str, user: str, networks: tuple[str, ...],
          checkout: Path, data: Path, routes: Mapping[str, str] | None = None
          ) -> list[policy.Violation]:
    """`routes`: the names other services' urls send traffic to (Config.routes_of_others)."""
    if user == "root":
        return []  # root services bypass the policy
    return policy.check(model, service_policy(model, service, user, networks, checkout, data,
                                              routes))
