"""own-namespaces: no host (or another container's) network, ipc, pid, uts, userns or cgroup
namespace; sharing one is allowed only with another service of the same compose project
(`service:X`, or `container:NAME` where NAME is the container_name of X and the service
depends on X)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pgo.policy.model import NAMESPACES, Findings, as_list, as_map, parse_mount


def namespace(key: str, allowed: frozenset[str]) -> Callable[[Findings, str, Any], None]:
    def rule(f: Findings, name: str, value: Any) -> None:
        mode = str(value or "")
        if mode in allowed:
            return
        if mode.startswith("service:") and mode.removeprefix("service:") in f.services:
            return  # shared with a container of the same project
        if mode.startswith("container:") and key in ("ipc", "pid"):
            container(f, name, key, mode)
        elif mode == "host":
            f.add(name, NAMESPACES, f"{key}: host shares the host's {key} namespace")
        else:
            f.add(name, NAMESPACES, f"{key}: {mode} is not the project's own {key} namespace")
    return rule


def network_mode(f: Findings, name: str, value: Any) -> None:
    """The network namespace: the host's or another container's is refused; a shared
    network named here is judged with the other networks (pgo.policy.networks)."""
    mode = str(value or "")
    if mode.startswith("service:"):
        if mode.removeprefix("service:") not in f.services:
            f.add(name, NAMESPACES, f"network_mode {mode}: not a service of this project")
    elif mode.startswith("container:"):
        container(f, name, "network_mode", mode)
    elif mode == "host":
        f.add(name, NAMESPACES, f"network_mode {mode}: not the project's own network")


def container(f: Findings, name: str, key: str, mode: str) -> None:
    """`container:NAME`: the namespace of the container called NAME. That is the same as
    `service:X` when NAME is the container_name of compose service X of this project, and
    this service depends on X: compose then makes X's container first, and when the name is
    taken (by a container of another project) it stops there. Without the dependency it may
    make this one first, in the namespace of whatever container has the name then."""
    target = mode.removeprefix("container:")
    other = next((str(k) for k, svc in f.services.items()
                  if str(as_map(svc).get("container_name") or "") == target), None)
    if other is None:
        f.add(name, NAMESPACES, f"{key} {mode}: not a container of this project; to share "
                                "the namespace of a service of this project, use `service:X`")
    elif not _depends_on(f, name, other):
        f.add(name, NAMESPACES, f"{key} {mode}: compose service {other}'s container, but "
                                "compose may start this one first, beside another container "
                                f"of that name; use `service:{other}` (or depend on {other})")


def _depends_on(f: Findings, name: str, other: str) -> bool:
    """Compose service `name` depends on `other` (and not only if `other` is there)."""
    deps = as_map(f.services.get(name)).get("depends_on")
    if isinstance(deps, Mapping):
        return other in deps and as_map(deps[other]).get("required") not in (False, "false")
    return other in [str(d) for d in as_list(deps)]


def volumes_from(f: Findings, name: str, value: Any) -> None:
    for raw in as_list(value):
        entry = str(raw)
        if entry.startswith("container:"):
            f.add(name, NAMESPACES, f"volumes_from {entry}: another container's volumes")
            continue
        other = entry.removeprefix("service:").split(":")[0]
        if other not in f.services:
            f.add(name, NAMESPACES, f"volumes_from {entry}: not a service of this project")


def propagation(f: Findings, name: str, value: Any) -> None:
    """Bind mounts whose mounts travel between container and host."""
    for raw in as_list(value):
        m = parse_mount(raw)
        if m is not None and m.type == "bind" and m.propagation in ("shared", "rshared"):
            f.add(name, NAMESPACES, f"bind mount {m.target} shares mounts with the host "
                                    f"(propagation {m.propagation})")


def external_links(f: Findings, name: str, value: Any) -> None:
    for link in as_list(value):
        f.add(name, NAMESPACES, f"external_links {link}: a container outside the project")


def build(f: Findings, name: str, value: Any) -> None:
    network = str(as_map(value).get("network") or "")
    if network == "host" or network.startswith(("container:", "service:")):
        f.add(name, NAMESPACES, f"build network {network}: not the build's own network")


def network(f: Findings, key: str, net: Mapping[str, Any]) -> bool:
    """A top-level network that is the host's own; True when it is (nothing else about it
    is judged then)."""
    if f.network_name(key) == "host":
        f.add("", NAMESPACES, f"network {key} is the host's network")
        return True
    return False
