"""own-names: image tags and container names are one namespace for the whole machine, so what
the project builds and names is named as its own (NAME-*, NAME_*, NAME/*), and nothing it takes
is a name of another pgo service's: a build tagged `postgres:16` or another team's image name
would run in every project that uses it. Nor does it set the labels by which compose (and
docker stack) tell which project a container, volume or network is of."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from pgo.policy import dockerfiles
from pgo.policy.model import (
    NAMES,
    REMOTE_CONTEXTS,
    Findings,
    as_list,
    as_map,
    image_repository,
    items,
)
from pgo.policy.paths import Unresolvable

# Labels the tools act on: compose finds a project's containers, volumes and networks by
# com.docker.compose.project (and .service, .oneoff, .config-hash...), docker stack by
# com.docker.stack.namespace. Set by a compose file (compose v1 lets a service's labels
# override its own), a container or volume would be another project's: listed, stopped,
# removed or reused by it, and pgod would count it as that project's.
TOOL_LABELS = ("com.docker.compose.", "com.docker.stack.")


def labels(f: Findings, name: str, value: Any, what: str = "label") -> None:
    """`labels` of a compose service, its build or deploy, a volume or a network."""
    for key, _ in items(value):
        if key.strip().lower().startswith(TOOL_LABELS):
            f.add(name, NAMES, f"{what} {key}: a label compose or docker stack sets itself, "
                               "to tell which project a container, volume or network is "
                               "of; name yours otherwise")


def container_name(f: Findings, name: str, value: Any) -> None:
    container = str(value or "")
    other = f.owner(container)
    if other is not None and other != f.service.name:
        f.add(name, NAMES, f"container_name {container} is a name of service {other}'s")


def service(f: Findings, name: str, svc: Mapping[str, Any]) -> None:
    """The machine-wide names the compose service takes: its containers (PROJECT-NAME-N,
    v1 PROJECT_NAME_N) and the images its build writes."""
    mine = f.service.name
    labels(f, name, as_map(svc.get("deploy")).get("labels"), "deploy label")
    for default in (f"{mine}-{name}", f"{mine}_{name}"):
        other = f.owner(default)
        if other != mine:
            f.add(name, NAMES, f"its containers would be named {default}..., names of "
                               f"service {other}'s: call the compose service otherwise")
            break
    if "build" not in svc:
        image = str(svc.get("image") or "")
        other = _others(f, image)
        if other is not None:
            f.add(name, NAMES, f"runs image {image}, a name of service {other}'s own: an "
                               "image a project builds may hold its code and baked-in "
                               "configuration")
        return
    build = as_map(svc.get("build"))
    labels(f, name, build.get("labels"), "build label")
    built = [str(svc.get("image") or f"{mine}-{name}")]
    built += [str(t) for t in as_list(build.get("tags"))]
    for ref in built:
        if f.owner(image_repository(ref), exact=False) != mine:
            f.add(name, NAMES, f"build writes image {ref}, not a name of the project's own "
                               f"({mine}-*, {mine}_* or {mine}/*): it would replace that image "
                               "for every project on this machine that runs it")
    for what, ref in build_images(f, name, build):
        other = _others(f, ref)
        if other is not None:
            f.add(name, NAMES, f"build reads image {ref} ({what}), a name of service "
                               f"{other}'s own: it would copy that project's code and "
                               "configuration into this one's")


def _others(f: Findings, ref: str) -> str | None:
    """The other pgo service an image reference is a name of, if any."""
    other = f.owner(image_repository(ref), exact=False) if ref else None
    return other if other != f.service.name else None


def build_images(f: Findings, name: str, build: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, image reference) of the images a build reads: cache_from, additional contexts
    `docker-image://`, and what its Dockerfile names (pgo.policy.dockerfiles), inline or
    read from this machine. A Dockerfile whose images can not be told is refused here."""
    out: list[tuple[str, str]] = []
    for entry in as_list(build.get("cache_from")):
        cache = str(entry)
        if "type=" not in cache:
            out.append(("cache_from", cache))
        else:
            opts = dict(o.strip().partition("=")[::2] for o in cache.split(","))
            if opts.get("type") == "registry" and opts.get("ref"):
                out.append(("cache_from", opts["ref"]))
    for key, value in items(build.get("additional_contexts")):
        if str(value).startswith("docker-image://"):
            out.append((f"context {key}", str(value).removeprefix("docker-image://")))
    inline = build.get("dockerfile_inline")
    text: str | None = inline if isinstance(inline, str) else None
    what = "dockerfile_inline"
    if text is None:
        what, text = _dockerfile(f, name, build)
    if text is None:
        return out
    try:
        found = _images(f, text, dict(items(build.get("args"))))
    except dockerfiles.Unjudgeable as e:
        f.add(name, NAMES, f"build {what} {e}: the policy can not tell which images the "
                           "build reads; write their names plainly")
        return out
    return out + [(f"{what} {how}", ref) for how, ref in found]


# The most Dockerfile text one judgement parses (real ones are a few KiB): a model of many
# builds of one large Dockerfile each costs the one pgod that long.
PARSE_BUDGET = 1 << 20


def _images(f: Findings, text: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    """dockerfiles.images, once per text and build args in a judgement, within
    PARSE_BUDGET."""
    memo: dict[tuple[str, str], list[tuple[str, str]] | str] = f.memo.setdefault(
        "dockerfiles", {})
    key = (text, repr(sorted(args.items(), key=str)))
    got = memo.get(key)
    if got is None:
        spent = sum(len(t) for t, _ in memo)
        if spent + len(text) > PARSE_BUDGET:
            got = f"makes the Dockerfiles of this project more than {PARSE_BUDGET >> 20} MiB"
        else:
            try:
                got = dockerfiles.images(text, args)
            except dockerfiles.Unjudgeable as e:
                got = str(e)
        memo[key] = got
    if isinstance(got, str):
        raise dockerfiles.Unjudgeable(got)
    return got


def _dockerfile(f: Findings, name: str, build: Mapping[str, Any]) -> tuple[str, str | None]:
    """("dockerfile PATH", its text) of the Dockerfile a build reads from this machine; the
    text is None when there is none to read (a remote context's, one refused as outside, or
    missing: the build fails). Read where it really lies, following no symlink put on the
    way since (pgo.policy.paths.read_file), at most 256 KiB."""
    context = str(build.get("context") or "")
    local = bool(context) and "://" not in context and not context.startswith(
        REMOTE_CONTEXTS)
    dockerfile = str(build.get("dockerfile") or "Dockerfile")
    if not local and not dockerfile.startswith("/"):
        return "", None
    path = posixpath.join(context, dockerfile) if local else dockerfile
    real = f.real(path)
    if real is None or not f.inside(real):
        return "", None  # (refused as outside the data and checkout: pgo.policy.data)
    try:
        data = f.read(real)
    except Unresolvable as e:
        f.add(name, NAMES, f"build dockerfile {path} can not be read ({e}): the policy can "
                           "not tell which images the build reads")
        return "", None
    return f"dockerfile {path}", None if data is None else data.decode("utf-8", "replace")
