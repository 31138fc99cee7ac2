"""own-names: image tags and container names are one namespace for the whole machine, so what
the project builds and names is named as its own (NAME-*, NAME_*, NAME/*), and nothing it takes
is a name of another pgo service's: a build tagged `postgres:16` or another team's image name
would run in every project that uses it. Nor does it set the labels by which compose (and
docker stack) tell which project a container, volume or network is of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgo.policy.model import NAMES, Findings, as_list, as_map, image_repository, items

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
    for what, ref in build_images(build):
        other = _others(f, ref)
        if other is not None:
            f.add(name, NAMES, f"build reads image {ref} ({what}), a name of service "
                               f"{other}'s own: it would copy that project's code and "
                               "configuration into this one's")


def _others(f: Findings, ref: str) -> str | None:
    """The other pgo service an image reference is a name of, if any."""
    other = f.owner(image_repository(ref), exact=False) if ref else None
    return other if other != f.service.name else None


def build_images(build: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, image reference) of the images a build reads: cache_from, additional contexts
    `docker-image://`, and the FROM and --from of an inline Dockerfile."""
    out: list[tuple[str, str]] = []
    for entry in as_list(build.get("cache_from")):
        text = str(entry)
        if "type=" not in text:
            out.append(("cache_from", text))
        else:
            opts = dict(o.strip().partition("=")[::2] for o in text.split(","))
            if opts.get("type") == "registry" and opts.get("ref"):
                out.append(("cache_from", opts["ref"]))
    for key, value in items(build.get("additional_contexts")):
        if str(value).startswith("docker-image://"):
            out.append((f"context {key}", str(value).removeprefix("docker-image://")))
    inline = build.get("dockerfile_inline")
    if isinstance(inline, str):
        out += [("dockerfile_inline", ref) for ref in dockerfile_images(inline)]
    return out


def dockerfile_images(text: str) -> list[str]:
    """The images a Dockerfile names: FROM (not an earlier stage), --from= and a mount's
    from=. Written with ${...}, a name is taken as written."""
    stages: set[str] = set()
    out: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            args = [w for w in words[1:] if not w.startswith("--")]
            if args and args[0].lower() not in stages:
                out.append(args[0])
            if len(args) >= 3 and args[1].upper() == "AS":
                stages.add(args[2].lower())
        for word in words:
            for opt in word.removeprefix("--mount=").split(","):
                ref = opt.removeprefix("--").partition("from=")[2] \
                    if opt.removeprefix("--").startswith("from=") else ""
                if ref and ref.lower() not in stages and not ref.isdigit():
                    out.append(ref)
    return out
