"""The compose policy, project-wide part: top-level volumes, networks, configs and secrets."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pgo.policy import (
    DATA,
    NAMESPACES,
    NETWORKS,
    PRIVILEGES,
    UNKNOWN,
    Findings,
    as_list,
    as_map,
    external,
)

# Top-level keys of the model. `include` and `extends` are already resolved by compose.
TOP = frozenset({"name", "version", "services", "volumes", "networks", "configs", "secrets",
                 "include"})
VOLUME_KEYS = frozenset({"name", "driver", "driver_opts", "external", "labels"})
NETWORK_KEYS = frozenset({"name", "driver", "driver_opts", "ipam", "external", "internal",
                          "enable_ipv4", "enable_ipv6", "attachable", "labels"})
FILE_KEYS = frozenset({"name", "file", "environment", "content", "external", "labels",
                       "template_driver"})
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


def judge_top(model: Mapping[str, Any], f: Findings) -> None:
    for key in model:
        k = str(key)
        if k.startswith("x-") or k in TOP:
            continue
        if k == "models":
            f.add("", PRIVILEGES, "top-level `models` is run by a plugin on the host")
        else:
            f.add("", UNKNOWN, f"top-level key `{k}` is not known to the policy")
    for key, raw in f.volumes.items():
        _volume(str(key), as_map(raw), f)
    for key, raw in f.networks.items():
        _network(str(key), as_map(raw), f)
    for kind in ("configs", "secrets"):
        for key, raw in as_map(model.get(kind)).items():
            _file_object(kind, str(key), as_map(raw), f)


def host_paths(model: Mapping[str, Any]) -> list[str]:
    out = []
    for vol in as_map(model.get("volumes")).values():
        dev = bind_device(as_map(as_map(vol).get("driver_opts")))
        if dev:
            out.append(dev)
    for kind in ("configs", "secrets"):
        for obj in as_map(model.get(kind)).values():
            path = as_map(obj).get("file")
            if isinstance(path, str) and path:
                out.append(path)
    return out


def _unknown(keys: Any, known: frozenset[str], what: str, f: Findings) -> None:
    for k in keys:
        if not str(k).startswith("x-") and str(k) not in known:
            f.add("", UNKNOWN, f"{what}: key `{k}` is not known to the policy")


def bind_device(opts: Mapping[str, Any]) -> str:
    """The host path of a local volume that is a bind mount in disguise, else ""."""
    o = {x.strip().partition("=")[0] for x in str(opts.get("o", "")).split(",")}
    if o & {"bind", "rbind"}:
        return str(opts.get("device") or "")
    return ""


def _volume(key: str, vol: Mapping[str, Any], f: Findings) -> None:
    what = f"volume {key}"
    _unknown(vol, VOLUME_KEYS, what, f)
    name = f.volume_name(key)
    if not f.own_name(name):
        how = "an external volume" if external(vol) else "named"
        f.add("", DATA, f"{what} is {how} {name!r}: only the project's own volumes "
                        f"({f.policy.service}_*) may be used")
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
        f.judge_path("", f"{what} binds", dev)
    elif str(opts.get("type", "")) == "tmpfs":
        return
    else:
        f.add("", DATA, f"{what} mounts {opts.get('device', '')!r} as "
                        f"{opts.get('type', '')!r}: a device or network file system of the host")


def _network(key: str, net: Mapping[str, Any], f: Findings) -> None:
    what = f"network {key}"
    _unknown(net, NETWORK_KEYS, what, f)
    name = f.network_name(key)
    if name == "host":
        f.add("", NAMESPACES, f"{what} is the host's network")
        return
    if not f.own_network(key):
        allowed = f.policy.networks
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


def _private(text: str) -> bool:
    """An address or network wholly inside the private ranges (RFC 1918, 6598, ULA)."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return any(net.version == p.version and net.subnet_of(p)  # type: ignore[arg-type]
               for p in PRIVATE)


def _file_object(kind: str, key: str, obj: Mapping[str, Any], f: Findings) -> None:
    what = f"{kind[:-1]} {key}"
    _unknown(obj, FILE_KEYS, what, f)
    path = obj.get("file")
    if isinstance(path, str) and path:
        f.judge_path("", f"{what} file", path)
