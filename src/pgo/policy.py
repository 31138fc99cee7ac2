"""The compose policy (pure): (normalized compose model, service policy) -> violations.

A service whose user is not root shares the machine with other teams, so its compose file may
give its containers nothing of the host beyond the service's own:

    own data        bind mounts, file-backed configs and secrets, and named volumes that are
                    host paths in disguise lie under DATADIR/NAME or the checkout (real paths);
                    mount types bind, volume and tmpfs only; volumes are the project's own
    own namespaces  no host (or another container's) network, ipc, pid, uts, userns, cgroup;
                    sharing is allowed only with another service of the same compose project
    own privileges  no privileged, no capability beyond Docker's default set, no devices, no
                    security option that loosens confinement, no host plugins or API socket
    own names       images the project builds, and its containers, are named as its own
                    (NAME-*, NAME_*, NAME/*): image tags and container names are one
                    namespace for the whole machine, and a build tagged `postgres:16` or
                    another team's image name would run in every project that uses it
    no ports        nothing published on the host (`expose` and the Caddy proxy instead)
    own networks    shared (external) networks only from the service's `networks` list (an
                    empty list: any); with a list, every compose service also joins its own;
                    on a shared network no container answers to a name that another
                    service's `urls` route to

The model is the one the compose tool printed (`docker compose config`, or v1's
`docker-compose config`): both shapes are read. Anything the policy does not know is refused
rather than let through: keys are allow-listed, not deny-listed.

The only facts from outside the model are the real paths (symlinks resolved), handed in by
pgo.judge as `ServicePolicy.real`. Without them, paths are judged lexically.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# The rules, as named in violations and logs.
DATA = "own-data"
NAMESPACES = "own-namespaces"
PRIVILEGES = "own-privileges"
NAMES = "own-names"
PORTS = "no-ports"
NETWORKS = "own-networks"
UNKNOWN = "not-judged"


@dataclass(frozen=True)
class ServicePolicy:
    service: str  # pgo service name (the compose project)
    root: bool  # root services bypass the policy
    allowed: tuple[str, ...]  # real host paths under which bind sources may lie
    networks: tuple[str, ...]  # external networks allowed; empty: any
    project_dir: str = ""  # where relative paths in the model are relative to (the checkout)
    # the checkout's real .git directory: git runs there as the service user, so a container
    # that can write it (hooks, core.fsmonitor...) would run code on the host
    git_dir: str = ""
    # host path as written in the model -> its real path (symlinks resolved), from pgo.judge
    real: Mapping[str, str] = field(default_factory=dict, compare=False)
    # the other pgo services on this machine (their compose projects): a name PREFIX_KEY
    # belongs to the longest service name it starts with, so `web` can not claim the
    # volumes and networks of `web_api` (`web_api_data`) by a key or name `api_data`
    others: tuple[str, ...] = ()
    # host name (lower case) -> the other pgo service whose `urls` the proxy sends there:
    # on a shared network, a container that answers to that name would get their traffic
    routes: Mapping[str, str] = field(default_factory=dict, compare=False)
    # variables pgod sets in compose's environment (PGO_DATA, PGO_SERVICE): they win over a
    # .env file in the checkout, so a path written with them is known before interpolation
    env: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Violation:
    compose_service: str  # "" when the problem is project-wide (top-level volumes, networks...)
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"compose service {self.compose_service}" if self.compose_service else "project"
        return f"{where}: {self.message} [{self.rule}]"


class Findings:
    """Where violations are collected while one model is judged."""

    def __init__(self, model: Mapping[str, Any], policy: ServicePolicy) -> None:
        self.policy = policy
        self.found: list[Violation] = []
        self.model = model
        self.services: Mapping[str, Any] = as_map(model.get("services"))
        self.volumes: Mapping[str, Any] = as_map(model.get("volumes"))
        self.networks: Mapping[str, Any] = as_map(model.get("networks"))

    def add(self, compose_service: str, rule: str, message: str) -> None:
        v = Violation(compose_service, rule, message)
        if v not in self.found:
            self.found.append(v)

    # -- paths -----------------------------------------------------------------------------

    def real(self, path: str) -> str:
        """The real path of a host path of the model (lexical when pgo.judge did not say)."""
        return normalize(self.policy.real.get(path, path), self.policy.project_dir)

    def inside(self, path: str) -> bool:
        real = self.real(path)
        return any(under(real, normalize(root, "")) for root in self.policy.allowed)

    def judge_path(self, compose_service: str, what: str, path: str) -> None:
        if self.inside(path):
            return
        real = self.real(path)
        shown = path if real == path else f"{path} (really {real})"
        self.add(compose_service, DATA,
                 f"{what} {shown} is outside the service's data and checkout")

    # -- names -----------------------------------------------------------------------------

    def own_name(self, name: str) -> bool:
        """Volumes and networks the project creates are named PROJECT_KEY by compose. A
        project name may itself hold `_`, so PROJECT_KEY is also OTHER_KEY2 when OTHER is
        PROJECT_SOMETHING: the name is the project's own only when no longer project name
        on this machine claims it."""
        mine = self.policy.service
        if not name.startswith(f"{mine}_"):
            return False
        return not any(len(o) > len(mine) and name.startswith(f"{o}_")
                       for o in self.policy.others)

    def owner(self, name: str) -> str | None:
        """The pgo service a machine-wide name (an image repository, a container) belongs
        to: the longest service name it is, or starts with followed by `-`, `_` or `/`
        (compose names them PROJECT-SERVICE, v1 PROJECT_SERVICE); None for nobody's."""
        claims = [o for o in (self.policy.service, *self.policy.others)
                  if name == o or name.startswith((f"{o}-", f"{o}_", f"{o}/"))]
        return max(claims, key=len, default=None)

    def volume_name(self, key: str) -> str:
        vol = as_map(self.volumes.get(key))
        return str(vol.get("name") or (key if external(vol) else f"{self.policy.service}_{key}"))

    def network_name(self, key: str) -> str:
        net = as_map(self.networks.get(key))
        return str(net.get("name") or (key if external(net) else f"{self.policy.service}_{key}"))

    def own_network(self, key: str) -> bool:
        net = self.networks.get(key)
        return key in self.networks and not external(as_map(net)) \
            and self.own_name(self.network_name(key))


def check(model: Mapping[str, Any], policy: ServicePolicy) -> list[Violation]:
    """Every way `model` breaks `policy`; empty when the model may be deployed."""
    if policy.root:
        return []
    from pgo import policy_service, policy_top

    f = Findings(model, policy)
    policy_top.judge_top(model, f)
    for name, svc in f.services.items():
        policy_service.judge_service(str(name), as_map(svc), f)
    policy_service.judge_nested(f)
    return list(f.found)


def host_paths(model: Mapping[str, Any]) -> list[str]:
    """Every host path the policy judges, as written in the model: pgo.judge resolves these
    to real paths before the policy is asked."""
    from pgo import policy_service, policy_top

    out: list[str] = []
    out += policy_top.host_paths(model)
    for svc in as_map(model.get("services")).values():
        out += policy_service.host_paths(as_map(svc))
    return list(dict.fromkeys(out))


# -- small pure helpers ------------------------------------------------------------------------

def normalize(path: str, base: str) -> str:
    """Absolute, lexically normalized: `//`, `.` and `..` folded. A relative path is taken
    relative to `base` (compose makes paths absolute against the project directory); with
    no base it stays relative, and so is never under an allowed root."""
    if not path.startswith("/"):
        if not base:
            return path
        path = base.rstrip("/") + "/" + path
    out = posixpath.normpath(re.sub(r"/+", "/", path))
    return "/" + out.lstrip("/")


def under(path: str, root: str) -> bool:
    if not path.startswith("/") or not root.startswith("/"):
        return False
    return path == root or path.startswith(root.rstrip("/") + "/")


def image_repository(ref: str) -> str:
    """The repository of an image reference, without registry host, tag or digest:
    `registry.example.org:5000/team/app:1@sha256:...` -> `team/app`."""
    ref = ref.split("@", 1)[0]
    if ":" in ref.rsplit("/", 1)[-1]:
        ref = ref.rsplit(":", 1)[0]
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join(parts).lower()


def as_map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list | tuple):
        return list(v)
    return [v]


def truthy(v: Any) -> bool:
    """A YAML boolean as compose writes it (true), or as a string ("true", "yes", "1")."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "yes", "y", "on", "1")
    return bool(v)


def external(v: Mapping[str, Any]) -> bool:
    ext = v.get("external")
    return isinstance(ext, Mapping) or truthy(ext)


def items(v: Any) -> Iterator[tuple[str, Any]]:
    """A list_or_dict (`[K=V, ...]` or `{K: V}`) as (key, value) pairs."""
    if isinstance(v, Mapping):
        for k, x in v.items():
            yield str(k), x
    else:
        for x in as_list(v):
            k, _, val = str(x).partition("=")
            yield k, val
