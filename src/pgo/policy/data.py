"""own-data: a container gets, of the host's files, only the service's data and checkout.

Bind mounts, file-backed configs and secrets, local volumes that are binds in disguise, the
files compose reads into a container (env_file, label_file) and what a build reads from this
machine all lie, where they really lead, under DATADIR/NAME or the checkout; mounts are bind,
volume or tmpfs; named volumes are the project's own; the checkout's .git is never writable.
Two kinds of host path are let through besides: read-only binds of the host's time zone
(/etc/localtime, /etc/timezone, /usr/share/zoneinfo), and binds the operator allowed for the
service (bind:PATH:ro|rw, pgo.allow).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from pgo.policy.model import (
    DATA,
    REMOTE_CONTEXTS,
    UNKNOWN,
    Findings,
    Mount,
    as_list,
    as_map,
    bind_device,
    clean,
    external,
    items,
    parse_mount,
)
from pgo.policy.paths import Unresolvable, under

# The host's time zone: these files, and the zone data they lead to, tell a container the
# time zone and nothing else of the host. Bound read-only, written as they are.
TIME_ZONE_FILES = ("/etc/localtime", "/etc/timezone")
ZONEINFO = "/usr/share/zoneinfo"


def mounts(f: Findings, name: str, value: Any) -> None:
    """A compose service's `volumes`."""
    for raw in as_list(value):
        m = parse_mount(raw)
        if m is None:
            f.add(name, UNKNOWN, f"volume entry {raw!r} is not understood")
        elif m.type == "bind":
            if not m.source:
                f.add(name, DATA, f"bind mount {m.target} has no source")
                continue
            if _host_bind(f, name, m):
                continue
            real = f.judge_path(name, "bind mount", m.source, _bind_hint(f, m))
            if real is not None and not m.read_only and holds_git(f, real):
                f.add(name, DATA, f"bind mount {m.source} makes the checkout's .git "
                                  "writable (git runs there on the host): mount it "
                                  "read_only or mount a subdirectory")
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


def _host_bind(f: Findings, name: str, m: Mount) -> bool:
    """A bind of a host path outside the service's data and checkout that is let through:
    the host's time zone read-only, or a path the operator allowed (bind:PATH:ro|rw). True
    when it was judged here (accepted, lifted or refused on these grounds)."""
    real = f.real(m.source)
    if real is None or f.inside(real):
        return False
    if m.read_only and time_zone(f, m.source, real):
        return True
    grant = f.allowed_path("bind", m.source, write=not m.read_only)
    if grant is None:
        return False
    shared = _holds_others(f, real)
    if shared:
        f.add(name, DATA, f"bind mount {m.source} {shared}: no exception covers it")
    else:
        f.add(name, DATA, f.outside("bind mount", m.source, real), grant)
    return True


def time_zone(f: Findings, path: str, real: str) -> bool:
    """A host path that is the host's time zone: /etc/localtime or /etc/timezone as written,
    where they are or lead into the zone data, or a zone file as written and really there;
    and a file that is there (dockerd would make a missing one, as a directory, on the
    host)."""
    spelled = clean(f.absolute(path))
    if spelled in TIME_ZONE_FILES:
        ok = real == spelled or under(real, ZONEINFO)
    else:
        ok = under(spelled, ZONEINFO) and under(real, ZONEINFO)
    try:
        return ok and f.read(real) is not None
    except Unresolvable:
        return False


def _holds_others(f: Findings, real: str) -> str:
    """Why a host path is more than the operator can have meant for one service: it is or
    holds the directory of every service's data or checkout, or lies in pgod's state (its
    keys); "" when it is none of those."""
    data, checkout = f.real(f.service.data), f.real(f.service.checkout)
    if data is not None and under(posixpath.dirname(data), real):
        return f"holds the data of every service ({posixpath.dirname(data)})"
    if checkout is None:
        return ""
    if posixpath.basename(checkout) != f.service.name:  # (not pgod's layout: pgod check)
        return f"holds the checkout ({checkout})" if under(checkout, real) else ""
    root = posixpath.dirname(checkout)
    if under(root, real):
        return f"holds the checkout of every service ({root})"
    state = posixpath.join(root, ".pgo")
    if under(real, state):
        return f"lies in pgod's state, which holds the services' keys ({state})"
    return ""


def _bind_hint(f: Findings, m: Mount) -> str:
    """How to fix a bind of a host path, beyond keeping data under PGO_DATA."""
    path = clean(f.absolute(m.source))
    if (path in TIME_ZONE_FILES or under(path, ZONEINFO)) and not m.read_only:
        return f"; the host's time zone only read-only ({path}:{m.target}:ro)"
    if path in TIME_ZONE_FILES or under(path, ZONEINFO):
        return (f"; the host's time zone only as a file in {ZONEINFO} (or /etc/timezone), "
                "which this is not here")
    if not under(path, f.service.checkout) and not under(path, f.service.data):
        mode = "ro" if m.read_only else "rw"
        return f", or ask the operator to allow it (allow = [\"bind:{path}:{mode}\"])"
    return ""


def holds_git(f: Findings, real: str) -> bool:
    """A real path that is, holds or lies inside the checkout's .git."""
    git = f.git_dir
    return git is not None and (under(git, real) or under(real, git))


def read_files(key: str) -> Callable[[Findings, str, Any], None]:
    """env_file, label_file: compose reads them on the host and puts what they hold into
    the container (its environment, its labels)."""
    def rule(f: Findings, name: str, value: Any) -> None:
        for path in map(str, as_list(value)):
            if "$" in path:
                f.add(name, DATA, f"{key} {path}: pgod could not interpolate this path as "
                                  "compose does, so it can not be judged; write it without "
                                  f"${{...}}, or as ${{PGO_DATA}}/... (here {f.service.data})")
            else:
                f.judge_path(name, key, path)
    return rule


def build(f: Findings, name: str, value: Any) -> None:
    for what, path in build_paths(value):
        f.judge_path(name, what, path)


def build_paths(raw: Any) -> list[tuple[str, str]]:
    """(what, host path) of everything a build reads from this machine's files: its context
    and Dockerfile, additional contexts, ssh keys, local caches. The client that sends them
    to the builder runs as the service's user, so each is judged like a bind mount: what it
    reads ends up in an image the team runs."""
    build = as_map(raw) if not isinstance(raw, str) else {"context": raw}
    out: list[tuple[str, str]] = []
    context = str(build.get("context") or "")
    local = bool(context) and "://" not in context and not context.startswith(REMOTE_CONTEXTS)
    dockerfile = str(build.get("dockerfile") or "")
    if local and not dockerfile and not isinstance(build.get("dockerfile_inline"), str):
        dockerfile = "Dockerfile"  # (compose v1 does not print the default)
    if local:
        out.append(("build context", context))
    if dockerfile.startswith("/") or (dockerfile and local):
        # an absolute Dockerfile is read from this machine whatever the context, even a
        # git URL's; a relative one of a remote context lies in that context
        out.append(("build dockerfile", posixpath.join(context if local else "/", dockerfile)))
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


# -- project-wide: volumes, configs and secrets -------------------------------------------------

def volume(f: Findings, key: str, vol: Mapping[str, Any]) -> None:
    what = f"volume {key}"
    name = f.volume_name(key)
    if not f.own_name(name):
        how = "an external volume" if external(vol) else "named"
        f.add("", DATA, f"{what} is {how} {name!r}: only the project's own volumes "
                        f"({f.service.name}_*) may be used")
    driver = str(vol.get("driver") or "local")
    if driver != "local":
        f.add("", DATA, f"{what} uses the volume plugin {driver!r}, which acts on the host")
    opts = as_map(vol.get("driver_opts"))
    if not opts:
        return
    dev = bind_device(opts)
    for k in opts:
        if str(k) not in ("type", "o", "device"):
            f.add("", DATA, f"{what}: driver option {k!r} is not judged safe")
    if dev:
        _device(f, what, dev)
    elif str(opts.get("type", "")) != "tmpfs":
        f.add("", DATA, f"{what} mounts {opts.get('device', '')!r} as "
                        f"{opts.get('type', '')!r}: a device or network file system of the host")


def _device(f: Findings, what: str, dev: str) -> None:
    """The host path a local volume binds. dockerd (root) takes it as written, at every
    start of a container that mounts the volume: a relative path from its own working
    directory (`/` under systemd, so `etc` is the host's /etc), `..` without the policy's
    eyes. So it is absolute, plain, and judged like a bind source; and as any container
    that mounts a volume may write it, it never holds the checkout's .git."""
    if not dev.startswith("/"):
        f.add("", DATA, f"{what} binds {dev!r}, a relative path: dockerd would take it from "
                        "its own working directory, not the checkout; write it absolute "
                        f"(${{PGO_DATA}}/..., here {f.service.data}/...) or use a bind mount")
        return
    if any(part in (".", "..") for part in dev.split("/")):
        f.add("", DATA, f"{what} binds {dev}: dockerd takes `.` and `..` in a volume's "
                        "device as written; write the path without them")
        return
    real = f.judge_path("", f"{what} binds", dev)
    if real is not None and holds_git(f, real):
        f.add("", DATA, f"{what} binds {dev}, which holds the checkout's .git (git runs "
                        "there on the host) and any container mounting the volume may "
                        "write it: bind-mount the checkout read_only, or a subdirectory")


def file_object(f: Findings, kind: str, key: str, obj: Mapping[str, Any]) -> None:
    """A top-level config or secret: its `file` is bind-mounted into the containers."""
    path = obj.get("file")
    if isinstance(path, str) and path:
        f.judge_path("", f"{kind[:-1]} {key} file", path)


def model_files(f: Findings) -> None:
    """The files compose read to build the model (pgo.compose.Model.files): the compose
    file, .env, include and extends files, include env files and project directories.
    Compose reads them as the service's user, and what they hold becomes the model: a host
    file there (a .env committed as a symlink to one) is read into it."""
    for what, path in f.files:
        if "://" in path or path.startswith(REMOTE_CONTEXTS):
            f.add("", DATA, f"{what} {path}: compose would fetch it from the network, where "
                            "the policy does not see it; keep it in the repository")
        elif "$" in path:
            f.add("", DATA, f"{what} {path}: a path made by interpolation can not be "
                            "judged; write it without ${...}, or as ${PGO_DATA}/... "
                            f"(here {f.service.data})")
        else:
            f.judge_path("", what, path)


def nested(f: Findings) -> None:
    """A host path that a container of the project can write (a read-write bind mount, a
    volume that is a bind in disguise) may hold any other host path the project mounts
    only as itself: below it, a container can swap a directory on the way for a symlink
    (`rm -r /data/db; ln -s / /data/db`), and dockerd follows that symlink as root the next
    time it starts a container (a restart policy, `pgoctl start`, a reboot), long after
    the paths were judged. So every bind source, config or secret file, and volume device
    must not lie strictly below a writable one, nor any file compose reads (an env or
    label file, strictly below). A file compose reads to build the model (the compose file,
    .env, an include) may not even be a writable one itself: a container could rewrite the
    model between its judgement and the next deploy."""
    # (real path, how a container may write it, how to stop that)
    writable: list[tuple[str, str, str]] = []
    mounted: list[tuple[str, str, str]] = []  # (compose service or "", what, path)
    for name, raw in f.services.items():
        for entry in as_list(as_map(raw).get("volumes")):
            m = parse_mount(entry)
            if m is None or m.type != "bind" or not m.source:
                continue
            mounted.append((str(name), "bind mount", m.source))
            real = f.real(m.source)
            if not m.read_only and real is not None:
                writable.append((real, f"compose service {name}'s bind mount {m.source}:"
                                       f"{m.target} may write",
                                 f"make that mount read-only ({m.source}:{m.target}:ro)"))
    for key, vol in f.volumes.items():
        dev = bind_device(as_map(as_map(vol).get("driver_opts")))
        if dev.startswith("/"):  # (a relative one is refused as such)
            mounted.append(("", f"volume {key} binds", dev))
            real = f.real(dev)
            if real is not None:
                writable.append((real, f"any container mounting volume {key} may write",
                                 f"bind {real} instead of volume {key}, read-only"))
    for kind in ("configs", "secrets"):
        for key, obj in as_map(f.model.get(kind)).items():
            path = as_map(obj).get("file")
            if isinstance(path, str) and path:
                mounted.append(("", f"{kind[:-1]} {key} file", path))
    for name, raw in f.services.items():
        for key in ("env_file", "label_file"):
            mounted += [(str(name), key, str(p)) for p in as_list(as_map(raw).get(key))
                        if "$" not in str(p)]
    for name, what, path in mounted:
        real = f.real(path)
        outer = next((w for w in writable if real is not None and real != w[0]
                      and under(real, w[0])), None)
        if outer is not None:
            f.add(name, DATA, f"{what} {path} lies inside {outer[0]}, which {outer[1]}: it "
                              "could put a symlink on the way before the next start; "
                              f"{outer[2]}, or use sibling directories under "
                              f"${{PGO_DATA}} (here {f.service.data})")
    for what, path in f.files:
        real = f.real(path) if path.startswith("/") and "$" not in path else None
        outer = next((w for w in writable if real is not None and under(real, w[0])), None)
        if outer is not None:
            f.add("", DATA, f"{what} {path} lies in {outer[0]}, which {outer[1]}: it could "
                            "change the model between its judgement and the next deploy; "
                            f"{outer[2]}, or keep the files compose reads out of writable "
                            "mounts")
    for name, raw in f.services.items():
        # the Dockerfile is judged (pgo.policy.names), then read again by the build, while
        # the old containers still run
        for what, path in build_paths(as_map(raw).get("build")):
            real = f.real(path) if what == "build dockerfile" else None
            outer = next((w for w in writable if real is not None and under(real, w[0])),
                         None)
            if outer is not None:
                f.add(str(name), DATA, f"{what} {path} lies in {outer[0]}, which {outer[1]}: "
                                       "it could change the Dockerfile between its judgement "
                                       f"and the build; {outer[2]}, or keep the Dockerfile "
                                       "out of writable mounts")
