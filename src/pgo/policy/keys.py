"""The allow-list: every key of the model is either known to change nothing about what a
container can reach of the host (SAFE), judged by the rules its table names, or refused as not
judged. Anything the policy does not know is refused rather than let through.

The walk of one model is here too: the top-level keys, each volume, network, config and
secret, each compose service key by key, then the checks that look at the whole project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pgo.policy import data, names, namespaces, networks, ports, privileges
from pgo.policy.model import (
    PRIVILEGES,
    UNKNOWN,
    Findings,
    Judgement,
    Service,
    as_list,
    as_map,
    parse_mount,
)
from pgo.policy.paths import Reader, Resolver, read_file

# Top-level keys of the model. `include` and `extends` are already resolved by compose.
TOP = frozenset({"name", "version", "services", "volumes", "networks", "configs", "secrets",
                 "include"})
VOLUME_KEYS = frozenset({"name", "driver", "driver_opts", "external", "labels"})
NETWORK_KEYS = frozenset({"name", "driver", "driver_opts", "ipam", "external", "internal",
                          "enable_ipv4", "enable_ipv6", "attachable", "labels"})
FILE_KEYS = frozenset({"name", "file", "environment", "content", "external", "labels",
                       "template_driver"})
MOUNT_KEYS = frozenset({"type", "source", "target", "read_only", "consistency", "bind",
                        "volume", "tmpfs"})
BUILD_KEYS = frozenset({
    "additional_contexts", "args", "cache_from", "cache_to", "context", "dockerfile",
    "dockerfile_inline", "entitlements", "extra_hosts", "isolation", "labels", "network",
    "no_cache", "platforms", "privileged", "provenance", "pull", "sbom", "secrets",
    "shm_size", "ssh", "tags", "target", "ulimits",
})

# Service keys that only shape the container's own process, resources, health, names or
# life cycle.
SAFE = frozenset({
    "annotations", "attach", "blkio_config", "cap_drop", "command", "configs", "cpu_count",
    "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares",
    "cpus", "cpuset", "depends_on", "dns", "dns_opt", "dns_search", "domainname", "entrypoint",
    "environment", "expose", "extends", "extra_hosts", "group_add", "healthcheck", "hostname",
    "image", "init", "links", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "pids_limit", "platform", "profiles", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "scale", "secrets", "shm_size", "stdin_open",
    "stop_grace_period", "stop_signal", "storage_opt", "tmpfs", "tty", "user",
    "working_dir", "networks",  # networks: judged once per service (pgo.policy.networks)
})

Rule = Callable[[Findings, str, Any], None]


def _unknown(f: Findings, where: str, keys: Iterable[Any], known: frozenset[str],
             what: str) -> None:
    for k in keys:
        if not str(k).startswith("x-") and str(k) not in known:
            f.add(where, UNKNOWN, f"{what}: key `{k}` is not known to the policy")


def _mount_keys(f: Findings, name: str, value: Any) -> None:
    for raw in as_list(value):
        m = parse_mount(raw)
        if m is not None and isinstance(raw, Mapping):
            _unknown(f, name, raw, MOUNT_KEYS, f"mount {m.target}")


def _build_keys(f: Findings, name: str, value: Any) -> None:
    _unknown(f, name, as_map(value), BUILD_KEYS, "build")


# Service key -> the rules that judge it, in order.
RULES: dict[str, tuple[Rule, ...]] = {
    "volumes": (_mount_keys, data.mounts, namespaces.propagation),
    "volumes_from": (namespaces.volumes_from,),
    "env_file": (data.read_files("env_file"),),
    "label_file": (data.read_files("label_file"),),
    "container_name": (names.container_name,),
    "labels": (names.labels,),
    "network_mode": (namespaces.network_mode,),
    "ipc": (namespaces.namespace("ipc", frozenset({"", "private", "shareable", "none"})),),
    "pid": (namespaces.namespace("pid", frozenset({"", "private"})),),
    "cgroup": (namespaces.namespace("cgroup", frozenset({"", "private"})),),
    "uts": (namespaces.namespace("uts", frozenset({""})),),
    "userns_mode": (namespaces.namespace("userns", frozenset({""})),),
    "external_links": (namespaces.external_links,),
    "privileged": (privileges.flag("privileged: the container gets the whole host"),),
    "use_api_socket": (privileges.flag(
        "use_api_socket: the container gets the Docker API (the host)"),),
    "cap_add": (privileges.cap_add,),
    "devices": (privileges.devices,),
    "device_cgroup_rules": (privileges.nonempty("device_cgroup_rules: access to host devices"),),
    "gpus": (privileges.nonempty("gpus: host devices in the container"),),
    "cgroup_parent": (privileges.nonempty(
        "cgroup_parent: the container picks its place in the host's cgroups"),),
    "credential_spec": (privileges.nonempty("credential_spec: host credentials (Windows)"),),
    "provider": (privileges.nonempty("provider: runs a plugin binary on the host"),),
    "models": (privileges.nonempty("models: run by a plugin on the host"),),
    "security_opt": (privileges.security_opt,),
    "sysctls": (privileges.sysctls,),
    "oom_score_adj": (privileges.oom_score_adj,),
    "oom_kill_disable": (privileges.oom_kill_disable,),
    "ulimits": (privileges.ulimits,),
    "runtime": (privileges.runtime,),
    "isolation": (privileges.isolation,),
    "post_start": (privileges.hooks("post_start"),),
    "pre_stop": (privileges.hooks("pre_stop"),),
    "develop": (privileges.develop,),
    "deploy": (privileges.deploy,),
    "logging": (networks.logging, privileges.logging),
    "build": (_build_keys, namespaces.build, privileges.build, data.build),
    "ports": (ports.ports,),
}

# Judged once per compose service, whatever keys it has.
PER_SERVICE: tuple[Callable[[Findings, str, Mapping[str, Any]], None], ...] = (
    networks.service, names.service,
)


def check(model: Mapping[str, Any], files: Sequence[tuple[str, str]], service: Service,
          resolve: Resolver, read: Reader = read_file) -> Judgement:
    """Every way `model` breaks the policy for `service` (none: it may be deployed)."""
    f = Findings(model, files, service, resolve, read)
    for key in model:
        k = str(key)
        if k.startswith("x-") or k in TOP:
            continue
        if k == "models":
            f.add("", PRIVILEGES, "top-level `models` is run by a plugin on the host")
        else:
            f.add("", UNKNOWN, f"top-level key `{k}` is not known to the policy")
    for key, raw in f.volumes.items():
        vol = as_map(raw)
        _unknown(f, "", vol, VOLUME_KEYS, f"volume {key}")
        names.labels(f, "", vol.get("labels"), f"volume {key} label")
        data.volume(f, str(key), vol)
    for key, raw in f.networks.items():
        net = as_map(raw)
        _unknown(f, "", net, NETWORK_KEYS, f"network {key}")
        names.labels(f, "", net.get("labels"), f"network {key} label")
        if not namespaces.network(f, str(key), net):
            networks.network(f, str(key), net)
    for kind in ("configs", "secrets"):
        for key, raw in as_map(model.get(kind)).items():
            obj = as_map(raw)
            _unknown(f, "", obj, FILE_KEYS, f"{kind[:-1]} {key}")
            data.file_object(f, kind, str(key), obj)
    for name, raw in f.services.items():
        svc = as_map(raw)
        for key, value in svc.items():
            k = str(key)
            if k.startswith("x-") or k in SAFE:
                continue
            rules = RULES.get(k)
            if rules is None:
                f.add(str(name), UNKNOWN, f"key `{k}` is not known to the policy")
            for rule in rules or ():
                rule(f, str(name), value)
        for judge in PER_SERVICE:
            judge(f, str(name), svc)
    data.model_files(f)
    data.nested(f)
    return f.judgement()
