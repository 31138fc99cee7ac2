"""own-networks: shared (external) networks only from the service's `networks` list (an empty
list: any); with a list, every compose service also joins its own; own networks are bridges or
overlays of the project; on a shared network no container answers to a name that another
service's `urls` route to; logs are written on this machine."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pgo.policy.model import NETWORKS, Findings, as_list, as_map, external, items

PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8"))
# Drivers that give the project a network of its own (and nothing of the host's).
NETWORK_DRIVERS = frozenset({"bridge", "overlay"})
# Network driver options that change nothing about what the network can reach.
NETWORK_OPTS = frozenset({
    "com.docker.network.driver.mtu", "com.docker.network.bridge.enable_icc",
    "com.docker.network.bridge.enable_ip_masquerade",
    "com.docker.network.container_iface_prefix", "encrypted",
})
# Log drivers that write on this machine. The others make dockerd (root, in the host's
# network) connect to an address the compose file chooses.
LOG_DRIVERS = frozenset({"json-file", "local", "journald", "syslog", "none"})


def network(f: Findings, key: str, net: Mapping[str, Any]) -> None:
    """A top-level network (not the host's: pgo.policy.namespaces judged that)."""
    what = f"network {key}"
    name = f.network_name(key)
    if _of_another_project(f, "", what, name):
        pass
    elif not external(net) and not f.own_name(name):
        f.add("", NETWORKS, f"{what} would be made as {name!r}, not a name of the project's "
                            f"own ({f.service.name}_*): another project could join it; a "
                            "shared network is made by the administrator and declared "
                            "external")
    elif not f.own_network(key):
        allowed = f.service.networks
        if allowed and name not in allowed:
            f.add("", NETWORKS, f"{what} is the shared network {name!r}, not one of this "
                                f"service's networks ({', '.join(allowed)})")
    if external(net):
        return  # made by the administrator: its driver is theirs
    driver = str(net.get("driver") or "bridge")
    if driver not in NETWORK_DRIVERS:
        f.add("", NETWORKS, f"{what} uses the {driver!r} driver: only bridge and overlay "
                            f"networks are the project's own")
    for k in as_map(net.get("driver_opts")):
        if str(k) not in NETWORK_OPTS:
            f.add("", NETWORKS, f"{what}: driver option {k!r} is not judged safe")
    ipam = as_map(net.get("ipam"))
    ipam_driver = str(ipam.get("driver") or "default")
    if ipam_driver != "default":
        f.add("", NETWORKS, f"{what} uses the IPAM plugin {ipam_driver!r}")
    for pool in as_list(ipam.get("config")):
        for k in ("subnet", "ip_range", "gateway"):
            if as_map(pool).get(k) and not _private(str(as_map(pool)[k])):
                f.add("", NETWORKS, f"{what}: {k} {as_map(pool)[k]} is not a private "
                                    "range: the host would route those public addresses "
                                    "into the project")


def _of_another_project(f: Findings, where: str, what: str, name: str) -> bool:
    """A network named as another pgo service's project makes (OTHER_KEY): joining it, or
    making it first, puts a container beside that project's own, reaching them and
    answering for their names (an alias `db`), whatever the `networks` list allows."""
    other = f.network_owner(name)
    if other is None or other == f.service.name:
        return False
    f.add(where, NETWORKS, f"{what} is {name!r}, a network of service {other}'s project: "
                           "its containers would be reachable from this one, and names there "
                           "answerable by it")
    return True


def _private(text: str) -> bool:
    """An address or network wholly inside the private ranges (RFC 1918, 6598, ULA)."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return any(net.version == p.version and net.subnet_of(p)  # type: ignore[arg-type]
               for p in PRIVATE)


def service(f: Findings, name: str, svc: Mapping[str, Any]) -> None:
    """network_mode and networks: which networks the container joins; with a `networks` list
    in the service's config, at least one of them must be the project's own. (The host's
    network and another container's are pgo.policy.namespaces' to refuse.)"""
    mode = str(svc.get("network_mode") or "")
    own = False
    shared: list[tuple[str, Any]] = []  # (shared network, what the service says about it)
    if mode == "none" or mode.startswith(("service:", "container:")):
        # no network at all, or another container's: that of a service of the project
        # (judged on that service), or refused as another's (pgo.policy.namespaces)
        own = True
    elif mode == "host":
        pass
    elif mode:
        net = "bridge" if mode == "default" else mode
        allowed = f.service.networks
        if _of_another_project(f, name, f"network_mode {mode}", net):
            pass
        elif allowed and net not in allowed:
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
    if f.service.networks and not own:
        f.add(name, NETWORKS, "joins no network of its own (needed next to the shared "
                              f"networks {', '.join(f.service.networks)})")
    for net, how in shared:
        _names_on_shared_network(f, name, svc, net, how)


def _names_on_shared_network(f: Findings, name: str, svc: Mapping[str, Any], net: str,
                             how: Any) -> None:
    """On a shared network Docker's DNS answers for the compose service's name, its
    container_name and its aliases, from every project on it: a container that takes a name
    another service's urls route to gets (part of) that service's traffic from the proxy."""
    names = [name, str(svc.get("container_name") or "")]
    names += [str(a) for a in as_list(as_map(how).get("aliases"))]
    for n in dict.fromkeys(x for x in names if x):
        other = f.service.routes.get(n.lower())
        if other is not None and other != f.service.name:
            f.add(name, NETWORKS, f"answers to {n} on the shared network {net}, the name the "
                                  f"proxy sends service {other}'s urls to")


def logging(f: Findings, name: str, value: Any) -> None:
    log = as_map(value)
    driver = str(log.get("driver") or "json-file")
    if driver not in LOG_DRIVERS:
        f.add(name, NETWORKS, f"log driver {driver}: dockerd would send the logs from the "
                              f"host's network")
    elif driver == "syslog" and any(k == "syslog-address" for k, _ in items(log.get("options"))):
        f.add(name, NETWORKS, "log driver syslog with syslog-address: dockerd would send the "
                              "logs from the host's network")
