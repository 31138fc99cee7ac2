"""The compose policy, per compose service: mounts, namespaces, privileges, ports, networks.

Every key of a compose service is either known to change nothing about what the container can
reach of the host (SAFE), judged by a rule below, or refused as not judged.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pgo.policy import (
    DATA,
    NAMES,
    NAMESPACES,
    NETWORKS,
    PORTS,
    PRIVILEGES,
    UNKNOWN,
    Findings,
    as_list,
    as_map,
    image_repository,
    items,
    truthy,
    under,
)
from pgo.policy_top import bind_device

# Keys that only shape the container's own process, resources, health, names or life cycle.
SAFE = frozenset({
    "annotations", "attach", "blkio_config", "cap_drop", "command", "configs", "cpu_count",
    "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares",
    "cpus", "cpuset", "depends_on", "dns", "dns_opt", "dns_search", "domainname", "entrypoint",
    "environment", "expose", "extends", "extra_hosts", "group_add", "healthcheck", "hostname",
    "image", "init", "labels", "links", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "pids_limit", "platform", "profiles", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "scale", "secrets", "shm_size", "stdin_open",
    "stop_grace_period", "stop_signal", "storage_opt", "tmpfs", "tty", "ulimits", "user",
    "working_dir", "network_mode", "networks",  # network*: judged once per service in _networks
})

# Docker's default capability set: adding one of these back (after `cap_drop: [ALL]`) gives
# the container nothing a default container does not have.
DEFAULT_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})
# Sysctls that live in the container's own namespaces (Docker's own list).
SYSCTL_PREFIXES = ("net.", "fs.mqueue.", "kernel.shm", "kernel.msg")
SYSCTLS = frozenset({"kernel.sem"})
MOUNT_KEYS = frozenset({"type", "source", "target", "read_only", "consistency", "bind",
                        "volume", "tmpfs"})
BUILD_KEYS = frozenset({
    "additional_contexts", "args", "cache_from", "cache_to", "context", "dockerfile",
    "dockerfile_inline", "entitlements", "extra_hosts", "isolation", "labels", "network",
    "no_cache", "platforms", "privileged", "provenance", "pull", "sbom", "secrets",
    "shm_size", "ssh", "tags", "target", "ulimits",
})
# Log drivers that write on this machine. The others make dockerd (root, in the host's
# network) connect to an address the compose file chooses.
LOG_DRIVERS = frozenset({"json-file", "local", "journald", "syslog", "none"})
RUNTIMES = frozenset({"runc", "io.containerd.runc.v2"})


@dataclass(frozen=True)
class Mount:
    type: str
    source: str  # host path (bind), volume key or name (volume), "" (anonymous, tmpfs)
    target: str
    propagation: str = ""
    read_only: bool = False


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


PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
# Build contexts that are fetched by the builder, not read from this machine's files.
REMOTE_CONTEXTS = ("git@", "github.com/")


def host_paths(svc: Mapping[str, Any]) -> list[str]:
    """The host paths of one compose service that the policy judges, as written."""
    out = []
    for mount in as_list(svc.get("volumes")):
        m = parse_mount(mount)
        if m is not None and m.type == "bind" and m.source:
            out.append(m.source)
    out += [path for key in ("env_file", "label_file") for path in map(str, as_list(svc.get(key)))]
    out += [path for _, path in build_paths(svc.get("build"))]
    return out


def build_paths(raw: Any) -> list[tuple[str, str]]:
    """(what, host path) of everything a build reads from this machine's files: its context
    and Dockerfile, additional contexts, ssh keys, local caches. The client that sends them
    to the builder runs as the service's user, so each is judged like a bind mount: what it
    reads ends up in an image the team runs."""
    build = as_map(raw) if not isinstance(raw, str) else {"context": raw}
    out: list[tuple[str, str]] = []
    context = str(build.get("context") or "")
    if context and "://" not in context and not context.startswith(REMOTE_CONTEXTS):
        out.append(("build context", context))
        dockerfile = str(build.get("dockerfile") or "")
        if dockerfile:
            out.append(("build dockerfile", posixpath.join(context, dockerfile)))
    for key, value in items(build.get("additional_contexts")):
        ctx = str(value)
        if ctx.startswith("oci-layout://"):
            out.append((f"build context {key}", ctx.removeprefix("oci-layout://")
                         .split("@", 1)[0]))
        elif "://" not in ctx and not ctx.startswith(("service:", "target:", *REMOTE_CONTEXTS)):
            out.append((f"build context {key}", ctx))
    for entry in as_list(build.get("ssh")):
        for path in _ssh_key_paths(entry):
            out.append(("build ssh key", path))
    for key in ("cache_from", "cache_to"):
        for entry in as_list(build.get(key)):
            opts = dict(o.strip().partition("=")[::2] for o in str(entry).split(","))
            if opts.get("type") == "local":
                out += [(f"build {key} {o}", opts[o]) for o in ("src", "dest") if opts.get(o)]
    return out


def _ssh_key_paths(entry: Any) -> list[str]:
    """The key files of a build `ssh` entry: `ID=PATH[,PATH]`, as compose prints it
    (`ID: PATH`), or a mapping; a bare `default` is the agent, no file."""
    if isinstance(entry, Mapping):
        values = [str(v) for v in entry.values() if v]
    else:
        text = str(entry)
        cut = min((i for i in (text.find("="), text.find(": ")) if i >= 0), default=-1)
        values = [text[cut + 1:]] if cut >= 0 else []
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def judge_service(name: str, svc: Mapping[str, Any], f: Findings) -> None:
    for key, value in svc.items():
        k = str(key)
        if k.startswith("x-") or k in SAFE:
            continue
        rule = RULES.get(k)
        if rule is None:
            f.add(name, UNKNOWN, f"key `{k}` is not known to the policy")
        else:
            rule(name, value, f)
    _networks(name, svc, f)
    _names(name, svc, f)


# -- own data ----------------------------------------------------------------------------------

def _volumes(name: str, value: Any, f: Findings) -> None:
    for raw in as_list(value):
        m = parse_mount(raw)
        if m is None:
            f.add(name, UNKNOWN, f"volume entry {raw!r} is not understood")
            continue
        for k in as_map(raw):
            if not str(k).startswith("x-") and str(k) not in MOUNT_KEYS:
                f.add(name, UNKNOWN, f"mount {m.target}: key `{k}` is not known to the policy")
        if m.type == "bind":
            if not m.source:
                f.add(name, DATA, f"bind mount {m.target} has no source")
            else:
                f.judge_path(name, "bind mount", m.source)
                git = f.policy.git_dir
                real = f.real(m.source)
                if git and not m.read_only and (under(git, real) or under(real, git)):
                    f.add(name, DATA, f"bind mount {m.source} makes the checkout's .git "
                                      "writable (git runs there on the host): mount it "
                                      "read_only or mount a subdirectory")
            if m.propagation in ("shared", "rshared"):
                f.add(name, NAMESPACES, f"bind mount {m.target} shares mounts with the host "
                                        f"(propagation {m.propagation})")
        elif m.type == "volume":
            if m.source and m.source not in f.volumes and not f.own_name(m.source):
                f.add(name, DATA, f"volume {m.source!r} is not one of the project's own")
            sub = str(as_map(as_map(raw).get("volume")).get("subpath") or "")
            if sub.startswith("/") or ".." in sub.split("/"):
                f.add(name, DATA, f"volume mount {m.target}: subpath {sub!r} leaves the "
                                  "volume")
        elif m.type != "tmpfs":
            f.add(name, DATA, f"mount {m.target} has type {m.type!r}: only bind, volume and "
                              f"tmpfs are allowed")


def _read_files(key: str) -> Callable[[str, Any, Findings], None]:
    """env_file, label_file: compose reads them on the host and puts what they hold into
    the container (its environment, its labels)."""
    def rule(name: str, value: Any, f: Findings) -> None:
        for path in map(str, as_list(value)):
            path = _with_known_vars(path, f.policy.env)
            if "$" in path:
                f.add(name, DATA, f"{key} {path}: a path made by interpolation can not be "
                                  "judged; write it without ${...} (but for ${PGO_DATA})")
            else:
                f.judge_path(name, key, path)
    return rule


def _with_known_vars(path: str, env: Mapping[str, str]) -> str:
    """`path` with `${VAR}` and `$VAR` of the variables in `env` replaced by their values
    (anything else, `$$` and `${VAR:-default}` too, is left as written)."""
    def value(m: re.Match[str]) -> str:
        return env.get(m.group(1) or m.group(2), m.group(0))
    return VAR_RE.sub(value, path)


VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _volumes_from(name: str, value: Any, f: Findings) -> None:
    for raw in as_list(value):
        entry = str(raw)
        if entry.startswith("container:"):
            f.add(name, NAMESPACES, f"volumes_from {entry}: another container's volumes")
            continue
        other = entry.removeprefix("service:").split(":")[0]
        if other not in f.services:
            f.add(name, NAMESPACES, f"volumes_from {entry}: not a service of this project")


def judge_nested(f: Findings) -> None:
    """A host path that a container of the project can write (a read-write bind mount, a
    volume that is a bind in disguise) may hold any other host path the project mounts
    only as itself: below it, a container can swap a directory on the way for a symlink
    (`rm -r /data/db; ln -s / /data/db`), and dockerd follows that symlink as root the next
    time it starts a container (a restart policy, `pgoctl start`, a reboot), long after
    the paths were judged. So every bind source, config or secret file, and volume device
    must not lie strictly below a writable one."""
    writable: list[str] = []
    mounted: list[tuple[str, str, str]] = []  # (compose service or "", what, path)
    for name, raw in f.services.items():
        for entry in as_list(as_map(raw).get("volumes")):
            m = parse_mount(entry)
            if m is None or m.type != "bind" or not m.source:
                continue
            mounted.append((str(name), "bind mount", m.source))
            if not m.read_only:
                writable.append(f.real(m.source))
    for key, vol in f.volumes.items():
        dev = bind_device(as_map(as_map(vol).get("driver_opts")))
        if dev:
            mounted.append(("", f"volume {key} binds", dev))
            writable.append(f.real(dev))
    for kind in ("configs", "secrets"):
        for key, obj in as_map(f.model.get(kind)).items():
            path = as_map(obj).get("file")
            if isinstance(path, str) and path:
                mounted.append(("", f"{kind[:-1]} {key} file", path))
    for name, what, path in mounted:
        real = f.real(path)
        outer = next((w for w in writable if real != w and under(real, w)), None)
        if outer is not None:
            f.add(name, DATA, f"{what} {path} lies inside {outer}, which a container may "
                              "write: it could put a symlink on the way before the next "
                              "start; mount the writable one read_only or use sibling "
                              "directories")


# -- own namespaces ----------------------------------------------------------------------------

def _namespace(key: str, allowed: frozenset[str]) -> Callable[[str, Any, Findings], None]:
    def rule(name: str, value: Any, f: Findings) -> None:
        mode = str(value or "")
        if mode in allowed:
            return
        if mode.startswith("service:") and mode.removeprefix("service:") in f.services:
            return  # shared with a container of the same project
        if mode == "host":
            f.add(name, NAMESPACES, f"{key}: host shares the host's {key} namespace")
        else:
            f.add(name, NAMESPACES, f"{key}: {mode} is not the project's own {key} namespace")
    return rule


def _external_links(name: str, value: Any, f: Findings) -> None:
    for link in as_list(value):
        f.add(name, NAMESPACES, f"external_links {link}: a container outside the project")


# -- own privileges ----------------------------------------------------------------------------

def _flag(what: str) -> Callable[[str, Any, Findings], None]:
    def rule(name: str, value: Any, f: Findings) -> None:
        if truthy(value):
            f.add(name, PRIVILEGES, what)
    return rule


def _nonempty(what: str) -> Callable[[str, Any, Findings], None]:
    def rule(name: str, value: Any, f: Findings) -> None:
        if value not in (None, "", [], {}, False):
            f.add(name, PRIVILEGES, what)
    return rule


def _cap_add(name: str, value: Any, f: Findings) -> None:
    for cap in as_list(value):
        c = str(cap).strip().upper().removeprefix("CAP_")
        if c not in DEFAULT_CAPS:
            f.add(name, PRIVILEGES, f"cap_add {cap}: a capability beyond Docker's default set")


def _security_opt(name: str, value: Any, f: Findings) -> None:
    for opt in as_list(value):
        text = str(opt).strip()
        cut = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=len(text))
        key, val = text[:cut].lower(), text[cut + 1:].strip().lower()
        if key == "no-new-privileges" and val in ("", "true", "false"):
            continue
        if key == "apparmor" and val == "docker-default":
            continue
        f.add(name, PRIVILEGES, f"security_opt {text}: may loosen the container's confinement")


def _sysctls(name: str, value: Any, f: Findings) -> None:
    for key, _ in items(value):
        if key not in SYSCTLS and not key.startswith(SYSCTL_PREFIXES):
            f.add(name, PRIVILEGES, f"sysctl {key} is not in the container's own namespaces")


def _oom_score_adj(name: str, value: Any, f: Findings) -> None:
    try:
        score = int(str(value))
    except ValueError:
        f.add(name, UNKNOWN, f"oom_score_adj {value!r} is not a number")
        return
    if score < 0:
        f.add(name, PRIVILEGES, f"oom_score_adj {score}: protects the container at the cost "
                                f"of the host's processes")


def _oom_kill_disable(name: str, value: Any, f: Findings) -> None:
    svc = as_map(f.services.get(name))
    limit = svc.get("mem_limit") or as_map(as_map(as_map(svc.get("deploy")).get(
        "resources")).get("limits")).get("memory")
    if truthy(value) and not limit:
        f.add(name, PRIVILEGES, "oom_kill_disable without a memory limit: when memory runs "
                                "out, the kernel kills the host's processes instead")


def _runtime(name: str, value: Any, f: Findings) -> None:
    if value and str(value) not in RUNTIMES:
        f.add(name, PRIVILEGES, f"runtime {value}: only runc is judged")


def _isolation(name: str, value: Any, f: Findings) -> None:
    if value and str(value) != "default":
        f.add(name, PRIVILEGES, f"isolation {value}: only the default is judged")


def _hooks(key: str) -> Callable[[str, Any, Findings], None]:
    def rule(name: str, value: Any, f: Findings) -> None:
        for hook in as_list(value):
            if truthy(as_map(hook).get("privileged")):
                f.add(name, PRIVILEGES, f"{key} hook runs privileged")
    return rule


def _develop(name: str, value: Any, f: Findings) -> None:
    for watch in as_list(as_map(value).get("watch")):
        if truthy(as_map(as_map(watch).get("exec")).get("privileged")):
            f.add(name, PRIVILEGES, "develop watch hook runs privileged")


def _deploy(name: str, value: Any, f: Findings) -> None:
    reservations = as_map(as_map(as_map(value).get("resources")).get("reservations"))
    if reservations.get("devices"):
        f.add(name, PRIVILEGES, "deploy reserves host devices")


def _logging(name: str, value: Any, f: Findings) -> None:
    log = as_map(value)
    driver = str(log.get("driver") or "json-file")
    if driver not in LOG_DRIVERS:
        f.add(name, NETWORKS, f"log driver {driver}: dockerd would send the logs from the "
                              f"host's network")
    elif driver == "syslog" and any(k == "syslog-address" for k, _ in items(log.get("options"))):
        f.add(name, NETWORKS, "log driver syslog with syslog-address: dockerd would send the "
                              "logs from the host's network")


def _build(name: str, value: Any, f: Findings) -> None:
    build = as_map(value)
    for k in build:
        if not str(k).startswith("x-") and str(k) not in BUILD_KEYS:
            f.add(name, UNKNOWN, f"build: key `{k}` is not known to the policy")
    network = str(build.get("network") or "")
    if network == "host" or network.startswith(("container:", "service:")):
        f.add(name, NAMESPACES, f"build network {network}: not the build's own network")
    if truthy(build.get("privileged")):
        f.add(name, PRIVILEGES, "build runs privileged")
    if build.get("entitlements"):
        f.add(name, PRIVILEGES, "build asks for entitlements "
                                f"({', '.join(map(str, as_list(build['entitlements'])))})")
    if build.get("isolation") and str(build["isolation"]) != "default":
        f.add(name, PRIVILEGES, f"build isolation {build['isolation']}: only the default")
    for what, path in build_paths(value):
        f.judge_path(name, what, path)


# -- own names ---------------------------------------------------------------------------------

def _container_name(name: str, value: Any, f: Findings) -> None:
    container = str(value or "")
    other = f.owner(container)
    if other is not None and other != f.policy.service:
        f.add(name, NAMES, f"container_name {container} is a name of service {other}'s")


def _names(name: str, svc: Mapping[str, Any], f: Findings) -> None:
    """The machine-wide names the compose service takes: its containers (PROJECT-NAME-N,
    v1 PROJECT_NAME_N) and the images its build writes."""
    mine = f.policy.service
    for default in (f"{mine}-{name}", f"{mine}_{name}"):
        other = f.owner(default)
        if other != mine:
            f.add(name, NAMES, f"its containers would be named {default}..., names of "
                               f"service {other}'s: call the compose service otherwise")
            break
    if "build" not in svc:
        return
    built = [str(svc.get("image") or f"{mine}-{name}")]
    built += [str(t) for t in as_list(as_map(svc.get("build")).get("tags"))]
    for ref in built:
        if f.owner(image_repository(ref)) != mine:
            f.add(name, NAMES, f"build writes image {ref}, not a name of the project's own "
                               f"({mine}-*, {mine}_* or {mine}/*): it would replace that image "
                               "for every project on this machine that runs it")


# -- ports and networks ------------------------------------------------------------------------

def _ports(name: str, value: Any, f: Findings) -> None:
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


def _networks(name: str, svc: Mapping[str, Any], f: Findings) -> None:
    """network_mode and networks: which networks the container joins; with a `networks` list
    in the service's config, at least one of them must be the project's own."""
    mode = str(svc.get("network_mode") or "")
    own = False
    shared: list[tuple[str, Any]] = []  # (shared network, what the service says about it)
    if mode == "none":
        own = True  # no network at all
    elif mode.startswith("service:"):
        own = True  # the other service's networks are judged on that service
        if mode.removeprefix("service:") not in f.services:
            f.add(name, NAMESPACES, f"network_mode {mode}: not a service of this project")
    elif mode == "host" or mode.startswith("container:"):
        f.add(name, NAMESPACES, f"network_mode {mode}: not the project's own network")
    elif mode:
        net = "bridge" if mode == "default" else mode
        allowed = f.policy.networks
        if allowed and net not in allowed:
            f.add(name, NETWORKS, f"network_mode {mode}: the shared network {net!r} is "
                                  f"not one of this service's networks ({', '.join(allowed)})")
        shared.append((net, None))
    else:
        nets = svc.get("networks")
        keys = [str(k) for k in (nets if isinstance(nets, Mapping) else as_list(nets))]
        for key in keys or ["default"]:
            if key in f.networks:
                mine = f.own_network(key)
                own = own or mine
                if not mine:
                    shared.append((f.network_name(key), as_map(nets).get(key)))
            elif key == "default":
                own = True  # compose's implicit default network (v1 does not print it)
            else:
                f.add(name, NETWORKS, f"network {key} is not declared")
    if f.policy.networks and not own:
        f.add(name, NETWORKS, "joins no network of its own (needed next to the shared "
                              f"networks {', '.join(f.policy.networks)})")
    for net, how in shared:
        _names_on_shared_network(name, svc, net, how, f)


def _names_on_shared_network(name: str, svc: Mapping[str, Any], net: str, how: Any,
                             f: Findings) -> None:
    """On a shared network Docker's DNS answers for the compose service's name, its
    container_name and its aliases, from every project on it: a container that takes a name
    another service's urls route to gets (part of) that service's traffic from the proxy."""
    names = [name, str(svc.get("container_name") or "")]
    names += [str(a) for a in as_list(as_map(how).get("aliases"))]
    for n in dict.fromkeys(x for x in names if x):
        other = f.policy.routes.get(n.lower())
        if other is not None and other != f.policy.service:
            f.add(name, NETWORKS, f"answers to {n} on the shared network {net}, the name the "
                                  f"proxy sends service {other}'s urls to")


RULES: dict[str, Callable[[str, Any, Findings], None]] = {
    "volumes": _volumes,
    "volumes_from": _volumes_from,
    "env_file": _read_files("env_file"),
    "label_file": _read_files("label_file"),
    "container_name": _container_name,
    "ipc": _namespace("ipc", frozenset({"", "private", "shareable", "none"})),
    "pid": _namespace("pid", frozenset({"", "private"})),
    "cgroup": _namespace("cgroup", frozenset({"", "private"})),
    "uts": _namespace("uts", frozenset({""})),
    "userns_mode": _namespace("userns", frozenset({""})),
    "external_links": _external_links,
    "privileged": _flag("privileged: the container gets the whole host"),
    "use_api_socket": _flag("use_api_socket: the container gets the Docker API (the host)"),
    "cap_add": _cap_add,
    "devices": _nonempty("devices: host devices in the container"),
    "device_cgroup_rules": _nonempty("device_cgroup_rules: access to host devices"),
    "gpus": _nonempty("gpus: host devices in the container"),
    "cgroup_parent": _nonempty("cgroup_parent: the container picks its place in the host's "
                               "cgroups"),
    "credential_spec": _nonempty("credential_spec: host credentials (Windows)"),
    "provider": _nonempty("provider: runs a plugin binary on the host"),
    "models": _nonempty("models: run by a plugin on the host"),
    "security_opt": _security_opt,
    "sysctls": _sysctls,
    "oom_score_adj": _oom_score_adj,
    "oom_kill_disable": _oom_kill_disable,
    "runtime": _runtime,
    "isolation": _isolation,
    "post_start": _hooks("post_start"),
    "pre_stop": _hooks("pre_stop"),
    "develop": _develop,
    "deploy": _deploy,
    "logging": _logging,
    "build": _build,
    "ports": _ports,
}
