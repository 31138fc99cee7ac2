"""The model as the rules see it: the service judged, the findings, and small readers of the
compose tool's output (both v2's and v1's shapes)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgo.allow import Allow
from pgo.policy.paths import Reader, Resolver, Unresolvable, read_file, under

# The rules, as named in violations and logs.
DATA = "own-data"
NAMESPACES = "own-namespaces"
PRIVILEGES = "own-privileges"
NAMES = "own-names"
PORTS = "no-ports"
NETWORKS = "own-networks"
UNKNOWN = "not-judged"

# Build contexts that are fetched by the builder, not read from this machine's files.
REMOTE_CONTEXTS = ("git@", "github.com/")


@dataclass(frozen=True)
class Service:
    """What the policy knows of the pgo service whose model it judges."""

    name: str  # the pgo service, and its compose project
    checkout: str  # absolute: relative paths of the model are relative to it
    data: str  # DATADIR/NAME, absolute
    networks: tuple[str, ...] = ()  # shared networks it may join; empty: any
    # the other pgo services on this machine (their compose projects): a name PREFIX_KEY
    # belongs to the longest service name it starts with, so `web` can not claim the
    # volumes, networks and images of `web_api` (`web_api_data`) by a key `api_data`
    others: tuple[str, ...] = ()
    # host name (lower case) -> the other pgo service whose `urls` the proxy sends there:
    # on a shared network, a container that answers to that name would get their traffic
    routes: Mapping[str, str] = field(default_factory=dict, compare=False)
    # the operator's exceptions (pgo.toml `allow`), each lifting one rule
    allow: tuple[Allow, ...] = ()


@dataclass(frozen=True)
class Violation:
    compose_service: str  # "" when the problem is project-wide (top-level volumes, networks...)
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"compose service {self.compose_service}" if self.compose_service else "project"
        return f"{where}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class Lifted:
    """A violation that an operator exception lifted."""

    allow: Allow
    violation: Violation

    def __str__(self) -> str:
        return f"allowed by {self.allow}: {self.violation}"


@dataclass(frozen=True)
class Judgement:
    """The verdict on one model: what breaks the policy (none: it may be deployed), what the
    operator's exceptions lifted, and the exceptions the model did not need."""

    violations: tuple[Violation, ...] = ()
    lifted: tuple[Lifted, ...] = ()
    unused: tuple[Allow, ...] = ()


class Findings:
    """One judgement: the model, the service, the resolver, and the violations found."""

    def __init__(self, model: Mapping[str, Any], files: Sequence[tuple[str, str]],
                 service: Service, resolve: Resolver, read: Reader = read_file) -> None:
        self.model = model
        self.files = tuple(files)  # (what, path) of every file compose read for the model
        self.service = service
        self.resolve = resolve
        self.read = read
        self.found: list[Violation] = []
        self.lifted: list[Lifted] = []
        self.memo: dict[str, Any] = {}  # what a rule keeps for the rest of the judgement
        self.services: Mapping[str, Any] = as_map(model.get("services"))
        self.volumes: Mapping[str, Any] = as_map(model.get("volumes"))
        self.networks: Mapping[str, Any] = as_map(model.get("networks"))
        self._real: dict[str, str | Unresolvable] = {}
        self.roots = tuple(r for r in (self.real(service.checkout), self.real(service.data))
                           if r is not None)
        # git runs in the checkout's .git as the service user: a container that can write it
        # (hooks, core.fsmonitor...) would run code on the host
        self.git_dir = self.real(posixpath.join(service.checkout, ".git"))

    def add(self, compose_service: str, rule: str, message: str,
            allowed: Allow | None = None) -> None:
        """A violation; or, when the operator's exception `allowed` lifts it, a note of
        that."""
        v = Violation(compose_service, rule, message)
        if allowed is not None:
            if Lifted(allowed, v) not in self.lifted:
                self.lifted.append(Lifted(allowed, v))
        elif v not in self.found:
            self.found.append(v)

    def judgement(self) -> Judgement:
        used = {x.allow for x in self.lifted}
        return Judgement(tuple(self.found), tuple(self.lifted),
                         tuple(a for a in self.service.allow if a not in used))

    # -- the operator's exceptions ---------------------------------------------------------

    def allowed(self, kind: str, value: str) -> Allow | None:
        """The exception of `kind` that names exactly `value` (a capability, a runtime,
        PORT/PROTO), if the operator granted one."""
        return next((a for a in self.service.allow if a.kind == kind and a.value == value),
                    None)

    def allowed_path(self, kind: str, path: str, write: bool = False) -> Allow | None:
        """The exception of `kind` (bind, device) that covers host path `path`: the path as
        written and where it really leads both lie at or below the exception's path (where
        that really leads); for `write`, one that allows writing."""
        real = self.real(path)
        if real is None:
            return None
        spelled = clean(self.absolute(path))
        for a in self.service.allow:
            if a.kind != kind or (write and not a.write) or not under(spelled, a.value):
                continue
            root = self.real(a.value)
            if root is not None and under(real, root):
                return a
        return None

    # -- paths -----------------------------------------------------------------------------

    def absolute(self, path: str) -> str:
        """`path` made absolute against the checkout, as compose would (not normalized:
        the resolver takes `..` where it stands)."""
        return path if path.startswith("/") else posixpath.join(self.service.checkout, path)

    def real(self, path: str) -> str | None:
        """Where a host path of the model really leads; None when it can not be told."""
        got = self._real.get(path)
        if got is None:
            try:
                got = self.resolve(self.absolute(path))
            except Unresolvable as e:
                got = e
            self._real[path] = got
        return None if isinstance(got, Unresolvable) else got

    def inside(self, real: str) -> bool:
        return any(under(real, root) for root in self.roots)

    @property
    def keep_data(self) -> str:
        """How to keep data where the policy accepts it (the end of own-data messages)."""
        return f"keep data under ${{PGO_DATA}} (here {self.service.data})"

    def outside(self, what: str, path: str, real: str) -> str:
        shown = path if real == path else f"{path} (really {real})"
        return f"{what} {shown} is outside the service's data and checkout; {self.keep_data}"

    def judge_path(self, compose_service: str, what: str, path: str, hint: str = ""
                   ) -> str | None:
        """Refuse `path` unless it really leads inside the service's data or checkout;
        return where it leads when it does. `hint`: more on how to fix a refusal."""
        real = self.real(path)
        if real is None:
            why = self._real[path]
            self.add(compose_service, DATA, f"{what} {path} can not be followed ({why}): "
                                            f"a path pgod can not resolve is refused; "
                                            f"{self.keep_data}{hint}")
            return None
        if self.inside(real):
            return real
        self.add(compose_service, DATA, self.outside(what, path, real) + hint)
        return None

    # -- names -----------------------------------------------------------------------------

    def own_name(self, name: str) -> bool:
        """Volumes and networks the project creates are named PROJECT_KEY by compose. A
        project name may itself hold `_`, so PROJECT_KEY is also OTHER_KEY2 when OTHER is
        PROJECT_SOMETHING: the name is the project's own only when no longer project name
        on this machine claims it."""
        mine = self.service.name
        if not name.startswith(f"{mine}_"):
            return False
        return not any(len(o) > len(mine) and name.startswith(f"{o}_")
                       for o in self.service.others)

    def owner(self, name: str, exact: bool = True) -> str | None:
        """The pgo service a machine-wide name (an image repository, a container) belongs
        to: the longest service name it starts with followed by `-`, `_` or `/` (compose
        names them PROJECT-SERVICE, v1 PROJECT_SERVICE), or, with `exact`, is; None for
        nobody's. (Image names are claimed by prefix only: a service called postgres owns
        postgres-*, not the official `postgres` image.)"""
        claims = [o for o in (self.service.name, *self.service.others)
                  if (exact and name == o) or name.startswith((f"{o}-", f"{o}_", f"{o}/"))]
        return max(claims, key=len, default=None)

    def network_owner(self, name: str) -> str | None:
        """The pgo service whose project makes a network of that name (PROJECT_KEY): the
        longest service name it starts with followed by `_`; None for nobody's (a network
        the administrator made, such as `proxy`, even beside a service called proxy)."""
        claims = [o for o in (self.service.name, *self.service.others)
                  if name.startswith(f"{o}_")]
        return max(claims, key=len, default=None)

    def volume_name(self, key: str) -> str:
        vol = as_map(self.volumes.get(key))
        return str(vol.get("name") or (key if external(vol) else f"{self.service.name}_{key}"))

    def network_name(self, key: str) -> str:
        net = as_map(self.networks.get(key))
        return str(net.get("name") or (key if external(net) else f"{self.service.name}_{key}"))

    def own_network(self, key: str) -> bool:
        net = self.networks.get(key)
        return key in self.networks and not external(as_map(net)) \
            and self.own_name(self.network_name(key))


# -- readers of the model ----------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    type: str
    source: str  # host path (bind), volume key or name (volume), "" (anonymous, tmpfs)
    target: str
    propagation: str = ""
    read_only: bool = False


PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")


def parse_mount(raw: Any) -> Mount | None:
    """A service `volumes` entry: v2's long form, or v1's `SOURCE:TARGET[:MODE]` string."""
    if isinstance(raw, Mapping):
        return Mount(type=str(raw.get("type") or ""), source=str(raw.get("source") or ""),
                     target=str(raw.get("target") or ""),
                     propagation=str(as_map(raw.get("bind")).get("propagation") or ""),
                     read_only=truthy(raw.get("read_only")))
    if isinstance(raw, str):
        parts = raw.split(":")
        if len(parts) == 1:
            return Mount(type="volume", source="", target=parts[0])
        src, dst, mode = parts[0], parts[1], ":".join(parts[2:])
        kind = "bind" if src.startswith(("/", ".", "~")) else "volume"
        prop = next((o for o in mode.split(",") if o in PROPAGATIONS), "")
        return Mount(type=kind, source=src, target=dst, propagation=prop,
                     read_only="ro" in mode.split(","))
    return None


def bind_device(opts: Mapping[str, Any]) -> str:
    """The host path of a local volume that is a bind mount in disguise, else ""."""
    o = {x.strip().partition("=")[0] for x in str(opts.get("o", "")).split(",")}
    if o & {"bind", "rbind"}:
        return str(opts.get("device") or "")
    return ""


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


def clean(path: str) -> str:
    """An absolute path by its spelling alone (`..` taken lexically): for comparing what a
    model says with what an exception names, never for where a path leads."""
    return "/" + posixpath.normpath(path).lstrip("/")


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
