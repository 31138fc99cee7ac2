"""own-names: image tags and container names are one namespace for the whole machine, so what
the project builds and names is named as its own (NAME-*, NAME_*, NAME/*), and nothing it takes
is a name of another pgo service's: a build tagged `postgres:16` or another team's image name
would run in every project that uses it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgo.policy.model import NAMES, Findings, as_list, as_map, image_repository


def container_name(f: Findings, name: str, value: Any) -> None:
    container = str(value or "")
    other = f.owner(container)
    if other is not None and other != f.service.name:
        f.add(name, NAMES, f"container_name {container} is a name of service {other}'s")


def service(f: Findings, name: str, svc: Mapping[str, Any]) -> None:
    """The machine-wide names the compose service takes: its containers (PROJECT-NAME-N,
    v1 PROJECT_NAME_N) and the images its build writes."""
    mine = f.service.name
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
