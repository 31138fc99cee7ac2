"""own-namespaces: no host (or another container's) network, ipc, pid, uts, userns or cgroup
namespace; sharing one is allowed only with another service of the same compose project."""

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
        if mode == "host":
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
    elif mode == "host" or mode.startswith("container:"):
        f.add(name, NAMESPACES, f"network_mode {mode}: not the project's own network")


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
