"""pgo.toml -> frozen dataclasses. Every check of the configuration file lives here.

The format is the original Go pgo's, unchanged, plus optional keys of pgo's own:
`webhook_secret`, `notify`, `age_identity` and `allow` (operator exceptions to the compose
policy, each entry checked by pgo.allow) in a service, and `notify` at the top level (the
default of every service that sets none), and `engine` (compose or swarm) in a service.
Any problem is a ConfigError whose message names the file, the service and the key
(never a value that may be a secret).
"""

from __future__ import annotations

import pwd
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgo.allow import Allow, AllowError
from pgo.allow import parse as parse_allow
from pgo.errors import ConfigError, PgoError
from pgo.target import NAME_RE as NAME_RE  # (the service-name pattern, re-exported)
from pgo.target import parse_target

# A service name is a directory name and the compose project name: compose's own rule.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HOSTPORT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*:[0-9]{1,5}$")
URL_RE = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9.*:/_-]*$")
NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
REGISTRY_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]*)?$")

KEYS = {
    "name": str,
    "user": str,
    "repository": str,
    "registries": list,
    "compose": str,
    "branch": str,
    "env": list,
    "urls": dict,
    "networks": list,
    "import": str,
    "reload": str,
    "mount": str,
    "webhook_secret": str,
    "notify": list,
    "age_identity": str,
    "allow": list,
    "engine": str,
}
ENGINES = ("compose", "swarm")
TOP_KEYS = ("services", "notify")
REQUIRED = ("name", "user", "repository")


@dataclass(frozen=True)
class Registry:
    user: str
    token: str
    host: str

    def __repr__(self) -> str:  # never show the token
        return f"Registry(user={self.user!r}, host={self.host!r})"


@dataclass(frozen=True)
class Reload:
    """A reload line `HOST:NAME//exec CMD...`: run CMD in compose service... of project NAME."""

    host: str
    name: str
    argv: tuple[str, ...]  # the command after `exec`, run in compose service NAME


@dataclass(frozen=True)
class Service:
    name: str
    user: str
    repository: str
    branch: str = "main"
    compose: str | None = None
    registries: tuple[Registry, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    urls: tuple[tuple[str, str], ...] = ()
    networks: tuple[str, ...] = ()
    import_: str | None = None
    reload: Reload | None = None
    mount: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    # Apprise URLs (they may carry credentials: secrets); None: the top-level default
    notify: tuple[str, ...] | None = field(default=None, repr=False)
    # a file of age identities the service decrypts SOPS documents with (None: its own)
    age_identity: str | None = None
    # operator exceptions to the compose policy (pgo.allow), each lifting one rule
    allow: tuple[Allow, ...] = ()
    # what runs the model: `docker compose` on this machine, or a Docker Swarm stack
    # (`docker stack deploy`, pgo.swarm) of the swarm whose manager this machine is
    engine: str = "compose"

    @property
    def is_swarm(self) -> bool:
        return self.engine == "swarm"

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        out = [v for _, v in self.env if v]
        out += [r.token for r in self.registries]
        if self.webhook_secret:
            out.append(self.webhook_secret)
        out += self.notify or ()
        m = re.match(r"^[a-z+]+://([^@/]+)@", self.repository)
        if m:
            out.append(m.group(1))
        return tuple(out)

    def display_repository(self) -> str:
        return re.sub(r"^([a-z+]+://)[^@/]+@", r"\1***@", self.repository)


@dataclass(frozen=True)
class Config:
    path: str
    services: tuple[Service, ...]
    notify: tuple[str, ...] = field(default=(), repr=False)  # default Apprise URLs

    def get(self, name: str) -> Service | None:
        for s in self.services:
            if s.name == name:
                return s
        return None

    def notify_urls(self, name: str) -> tuple[str, ...]:
        """Where notifications of service `name` go: its own `notify`, else the top-level
        one (an empty list of its own turns them off)."""
        svc = self.get(name)
        if svc is not None and svc.notify is not None:
            return svc.notify
        return self.notify if svc is not None else ()

    def routes_of_others(self, name: str) -> dict[str, str]:
        """Host name (lower case) -> service, for every `urls` target of the services other
        than `name`: the names the proxy sends their traffic to, on the shared networks."""
        return {target.rpartition(":")[0].lower(): s.name for s in self.services
                if s.name != name for _, target in s.urls}


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def load(path: str | Path, *, known_user: Callable[[str], bool] = user_exists) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: can not read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return parse(text, str(p), known_user=known_user)


def parse(text: str, path: str, *, known_user: Callable[[str], bool] = user_exists) -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for key in doc:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown top-level key {key!r} (only notify and "
                              "[[services]])")
    default_notify = notify_list(doc.get("notify", []), lambda msg: ConfigError(
        f"{path}: key 'notify': {msg}"))
    raw = doc.get("services", [])
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise ConfigError(f"{path}: 'services' must be an array of tables ([[services]])")
    services: list[Service] = []
    seen: set[str] = set()
    for i, table in enumerate(raw):
        svc = _service(table, path, i, known_user)
        if svc.name in seen:
            raise ConfigError(f"{path}: service {svc.name}: key 'name': duplicate service name")
        seen.add(svc.name)
        services.append(svc)
    for a in services:
        for b in services:
            if b.name.startswith(a.name + "_"):
                raise ConfigError(
                    f"{path}: service {b.name}: key 'name': starts with {a.name + '_'!r}, the "
                    f"prefix of service {a.name}'s volumes and networks")
    imports = [s.name for s in services if s.import_]
    if len(imports) > 1:
        raise ConfigError(
            f"{path}: service {imports[1]}: key 'import': only one service may write the "
            f"Caddy import (also set on {imports[0]})"
        )
    return Config(path=path, services=tuple(services), notify=default_notify)


def _service(
    t: Mapping[str, Any], path: str, index: int, known_user: Callable[[str], bool]
) -> Service:
    raw_name = t.get("name")
    named = isinstance(raw_name, str) and raw_name
    who = f"service {raw_name}" if named else f"service #{index + 1}"

    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{path}: {who}: key '{key}': {msg}")

    for key, value in t.items():
        if key not in KEYS:
            raise err(key, "unknown key")
        want = KEYS[key]
        if not isinstance(value, want):
            raise err(key, f"must be a {_typename(want)}, not {_typename(type(value))}")
    for key in REQUIRED:
        if key not in t or not str(t[key]).strip():
            raise err(key, "missing (name, user and repository are required)")

    name: str = t["name"]
    if not NAME_RE.match(name):
        raise err("name", "must be lowercase letters, digits, '-' or '_' (a compose project name)")
    user: str = t["user"]
    if not known_user(user):
        raise err("user", f"no such user {user!r} on this machine")
    repository: str = t["repository"]
    if repository.startswith("-") or any(c.isspace() for c in repository):
        raise err("repository", "not a git repository URL or path")
    branch: str = t.get("branch", "main")
    if not branch or branch.startswith("-") or not re.match(r"^[A-Za-z0-9._/-]+$", branch) \
            or ".." in branch:
        raise err("branch", f"not a valid branch name: {branch!r}")
    compose = t.get("compose")
    if compose is not None:
        if not compose or compose.startswith("/") or ".." in Path(compose).parts:
            raise err("compose", "must be a relative path inside the repository")

    env: list[tuple[str, str]] = []
    for item in t.get("env", []):
        if not isinstance(item, str) or "=" not in item:
            raise err("env", f"entries must be \"VAR=VALUE\" strings, got {item!r}")
        k, v = item.split("=", 1)
        if not ENV_NAME_RE.match(k):
            raise err("env", f"not a valid variable name: {k!r}")
        env.append((k, v))

    registries: list[Registry] = []
    for item in t.get("registries", []):
        if not isinstance(item, str) or "@" not in item:
            raise err("registries", "entries must be \"user:token@registry\" or \"token@registry\"")
        cred, host = item.rsplit("@", 1)
        ruser, sep, token = cred.partition(":")
        if not sep:
            ruser, token = user, cred
        if not token or not ruser or not REGISTRY_HOST_RE.match(host):
            raise err("registries", "entries must be \"user:token@registry\" or \"token@registry\"")
        registries.append(Registry(user=ruser, token=token, host=host))

    urls: list[tuple[str, str]] = []
    for url, target in t.get("urls", {}).items():
        if not isinstance(target, str) or not HOSTPORT_RE.match(target):
            raise err("urls", f"target of {url!r} must be \"host:port\", got {target!r}")
        port = int(target.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise err("urls", f"target of {url!r} has an invalid port {port}")
        if not URL_RE.match(url):
            raise err("urls", f"not a valid site address: {url!r}")
        urls.append((url, target))
    urls.sort()

    networks: list[str] = []
    for n in t.get("networks", []):
        if not isinstance(n, str) or not NETWORK_RE.match(n):
            raise err("networks", f"not a valid network name: {n!r}")
        networks.append(n)

    imp = t.get("import")
    if imp is not None and (not imp or imp.startswith("/") or ".." in Path(imp).parts):
        raise err("import", "must be a relative file path inside the checkout")

    reload = None
    if "reload" in t:
        reload = parse_reload(t["reload"])
        if reload is None:
            raise err("reload", "must be an exec command line: \"HOST:NAME//exec SERVICE CMD...\"")

    mount = t.get("mount")
    if mount is not None and not re.match(r"^nfs://[A-Za-z0-9.-]+(:[0-9]+)?/\S*$", mount):
        raise err("mount", f"must be an nfs:// URL (nfs://server/share), got {mount!r}")

    secret = t.get("webhook_secret")
    if secret is not None and len(secret) < 8:
        raise err("webhook_secret", "too short (8 characters at least)")

    notify = None
    if "notify" in t:
        notify = notify_list(t["notify"], lambda msg: err("notify", msg))

    age_identity = t.get("age_identity")
    if age_identity is not None and (
            not age_identity.startswith("/") or ".." in Path(age_identity).parts
            or age_identity.endswith("/") or any(c in age_identity for c in "\0\n\r")):
        raise err("age_identity", "must be the absolute path of a file of age identities")

    allowed = allow_list(t.get("allow", []), user, lambda msg: err("allow", msg))

    engine = t.get("engine", "compose")
    if engine not in ENGINES:
        raise err("engine", f"must be \"compose\" or \"swarm\", not {engine[:40]!r}")

    return Service(
        name=name,
        user=user,
        repository=repository,
        branch=branch,
        compose=compose,
        registries=tuple(registries),
        env=tuple(env),
        urls=tuple(urls),
        networks=tuple(networks),
        import_=imp,
        reload=reload,
        mount=mount,
        webhook_secret=secret,
        notify=notify,
        age_identity=age_identity,
        allow=allowed,
        engine=engine,
    )


def allow_list(value: list[Any], user: str, err: Callable[[str], ConfigError]
               ) -> tuple[Allow, ...]:
    """The operator exceptions of one service (pgo.allow), each entry checked strictly."""
    if value and user == "root":
        raise err("a root service is not judged by the policy: there is nothing to allow")
    out: list[Allow] = []
    for entry in value:
        if not isinstance(entry, str):
            raise err(f"entries must be strings (KIND:VALUE), not {_typename(type(entry))}")
        try:
            got = parse_allow(entry)
        except AllowError as e:
            raise err(f"entry {entry!r}: {e}") from None
        if got in out:
            raise err(f"entry {entry!r}: listed twice")
        out.append(got)
    return tuple(out)


def notify_list(value: Any, err: Callable[[str], ConfigError]) -> tuple[str, ...]:
    """Apprise URLs, each one that Apprise understands. A message never shows a URL: it may
    hold a token or a password; entries are named by their place in the list."""
    if not isinstance(value, list):
        raise err(f"must be a list of Apprise URLs, not {_typename(type(value))}")
    urls = []
    for i, url in enumerate(value, 1):
        if not isinstance(url, str):
            raise err(f"entry {i} must be a string (an Apprise URL), not "
                      f"{_typename(type(url))}")
        from pgo import notifications  # (Apprise is loaded only when there are URLs)

        problem = notifications.check_url(url)
        if problem:
            raise err(f"entry {i}: {problem}")
        urls.append(url)
    return tuple(urls)


def parse_reload(line: str) -> Reload | None:
    """`HOST:NAME//exec SERVICE CMD...` -> Reload, or None when it is not such a line."""
    try:
        words = shlex.split(line)
        target = parse_target(words[0], host=True) if words else None
    except (ValueError, PgoError):
        return None
    if target is None or target.command != "exec" or len(words) < 2:
        return None
    return Reload(host=target.host, name=target.name, argv=tuple(words[1:]))


def _typename(t: type) -> str:
    return {str: "string", list: "list", dict: "table", int: "integer", bool: "boolean",
            float: "number"}.get(t, t.__name__)
