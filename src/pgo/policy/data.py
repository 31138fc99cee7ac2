"""own-data: a container gets, of the host's files, only the service's data and checkout.

Bind mounts, file-backed configs and secrets, local volumes that are binds in disguise, the
files compose reads into a container (env_file, label_file) and what a build reads from this
machine all lie, where they really lead, under DATADIR/NAME or the checkout; mounts are bind,
volume or tmpfs; named volumes are the project's own; the checkout's .git is never writable.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from pgo.policy.model import (
    DATA,
    UNKNOWN,
    Findings,
    as_list,
    as_map,
    bind_device,
    external,
    items,
    parse_mount,
)
from pgo.policy.paths import under

# Build contexts that are fetched by the builder, not read from this machine's files.
REMOTE_CONTEXTS = ("git@", "github.com/")


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
            real = f.judge_path(name, "bind mount", m.source)
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
                f.add(name, DATA, f"{key} {path}: a path made by interpolation can not be "
                                  "judged; write it without ${...} (but for ${PGO_DATA})")
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
                        "(${PGO_DATA}/...) or use a bind mount")
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
                            "judged; write it without ${...} (but for ${PGO_DATA})")
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
    writable: list[str] = []
    mounted: list[tuple[str, str, str]] = []  # (compose service or "", what, path)
    for name, raw in f.services.items():
        for entry in as_list(as_map(raw).get("volumes")):
            m = parse_mount(entry)
            if m is None or m.type != "bind" or not m.source:
                continue
            mounted.append((str(name), "bind mount", m.source))
            real = f.real(m.source)
            if not m.read_only and real is not None:
                writable.append(real)
    for key, vol in f.volumes.items():
        dev = bind_device(as_map(as_map(vol).get("driver_opts")))
        if dev.startswith("/"):  # (a relative one is refused as such)
            mounted.append(("", f"volume {key} binds", dev))
            real = f.real(dev)
            if real is not None:
                writable.append(real)
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
        outer = next((w for w in writable if real is not None and real != w
                      and under(real, w)), None)
        if outer is not None:
            f.add(name, DATA, f"{what} {path} lies inside {outer}, which a container may "
                              "write: it could put a symlink on the way before the next "
                              "start; mount the writable one read_only or use sibling "
                              "directories")
    for what, path in f.files:
        real = f.real(path) if path.startswith("/") and "$" not in path else None
        outer = next((w for w in writable if real is not None and under(real, w)), None)
        if outer is not None:
            f.add("", DATA, f"{what} {path} lies in {outer}, which a container may write: "
                            "it could change the model between its judgement and the next "
                            "deploy; keep the files compose reads out of writable mounts")
