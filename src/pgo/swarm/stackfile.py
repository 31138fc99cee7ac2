"""The compose model as `docker compose config` printed it -> the stack file that
`docker stack deploy` reads, and what in a model swarm would ignore or refuse.

Compose's model is the compose specification's; `docker stack deploy` reads the older
version 3 format, whose loader ignores some keys with a warning at deploy time and refuses
others. pgo reports both before anything is deployed (unsupported()), and only translates
what means the same in both formats (to_stack()): the model's top-level `name` (the stack's
name is the service's), `depends_on` as compose prints it (`{db: {condition:
service_started}}`, a list for swarm, which starts services in no order anyway), a key set
to null (compose's JSON for "not set"), a bind mount's `create_host_path` (swarm never
creates one: the directory must exist on the node) and a published port printed as a
string.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

# What the docker CLI's stack loader ignores ("Ignoring unsupported options") or refuses
# ("forbidden properties"), per compose service key, with the reason shown.
IGNORED = {
    "build": "swarm builds nothing: push the image to a registry",
    "cgroup_parent": "ignored by swarm",
    "cgroupns_mode": "ignored by swarm",
    "devices": "ignored by swarm",
    "domainname": "ignored by swarm",
    "external_links": "ignored by swarm",
    "ipc": "ignored by swarm",
    "links": "ignored by swarm (use the service names on the stack's networks)",
    "mac_address": "ignored by swarm",
    "network_mode": "ignored by swarm",
    "pid": "ignored by swarm",
    "privileged": "ignored by swarm",
    "restart": "ignored by swarm (use deploy.restart_policy)",
    "security_opt": "ignored by swarm",
    "shm_size": "ignored by swarm",
    "userns_mode": "ignored by swarm",
}
FORBIDDEN = {
    "container_name": "swarm names the tasks",
    "extends": "refused by swarm",
    "cpu_quota": "refused by swarm (use deploy.resources)",
    "cpu_shares": "refused by swarm (use deploy.resources)",
    "cpuset": "refused by swarm (use deploy.resources)",
    "mem_limit": "refused by swarm (use deploy.resources.limits.memory)",
    "memswap_limit": "refused by swarm",
}


def unsupported(model: Mapping[str, Any]) -> list[str]:
    """What swarm would ignore or refuse in `model`, one entry per compose service (and
    the project), e.g. `compose service web: build (swarm builds nothing...)`. Empty: the
    stack file means what the model says (the docker CLI's own loader has the last word:
    pgo.swarm.stack.Stack.check)."""
    found: list[str] = []
    services = model.get("services")
    for name, svc in sorted((services or {}).items() if isinstance(services, Mapping)
                            else ()):
        if not isinstance(svc, Mapping):
            continue
        keys = [f"{k} ({why})" for k, why in {**IGNORED, **FORBIDDEN}.items() if k in svc]
        deps = svc.get("depends_on")
        if isinstance(deps, Mapping):
            for dep, opts in sorted(deps.items()):
                cond = opts.get("condition") if isinstance(opts, Mapping) else None
                if cond not in (None, "service_started"):
                    keys.append(f"depends_on {dep} condition {cond} (swarm starts services "
                                "in no order and waits for none)")
        if keys:
            found.append(f"compose service {name}: " + ", ".join(keys))
    return found


def bind_sources(model: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(compose service, host path, create_host_path) of every bind mount of `model`, as
    compose printed it: the short syntax (`${PGO_DATA}/db:/db`) says create_host_path,
    which compose honours and swarm does not (Stack.up creates such a path, as the
    service's user); a long-syntax bind without it must exist (missing_sources)."""
    found: list[tuple[str, str, bool]] = []
    services = model.get("services")
    for name, svc in sorted(services.items() if isinstance(services, Mapping) else ()):
        if not isinstance(svc, Mapping):
            continue
        for mount in svc.get("volumes") or ():
            if isinstance(mount, Mapping) and mount.get("type") == "bind" \
                    and isinstance(mount.get("source"), str) and mount["source"]:
                bind = mount.get("bind")
                create = isinstance(bind, Mapping) and bind.get("create_host_path") is True
                found.append((str(name), mount["source"], create))
    return found


def missing_sources(model: Mapping[str, Any], exists: Callable[[str], bool]) -> list[str]:
    """The bind mounts of `model` whose host path does not `exist` and that nothing will
    create (see bind_sources), one entry each: swarm would reject every task of them."""
    return [f"compose service {name}: bind mount source {source} does not exist on this "
            "node, and swarm creates none (create it, or use the short syntax or "
            "bind.create_host_path: true and pgod creates it as the service's user)"
            for name, source, create in bind_sources(model)
            if not create and not exists(source)]


def to_stack(model: Mapping[str, Any]) -> dict[str, Any]:
    """The stack document of `model` (see the module): a copy, `model` is not changed."""
    doc: dict[str, Any] = json.loads(json.dumps(model))
    doc.pop("name", None)
    for svc in (doc.get("services") or {}).values():
        if not isinstance(svc, dict):
            continue
        for key in [k for k, v in svc.items() if v is None]:
            del svc[key]  # (compose's JSON says `entrypoint: null` for "not set")
        deps = svc.get("depends_on")
        if isinstance(deps, dict):
            svc["depends_on"] = sorted(deps)
        for mount in svc.get("volumes") or ():
            if isinstance(mount, dict) and isinstance(mount.get("bind"), dict):
                mount["bind"].pop("create_host_path", None)
                if not mount["bind"]:
                    del mount["bind"]
        for port in svc.get("ports") or ():
            if isinstance(port, dict) and isinstance(port.get("published"), str) \
                    and port["published"].isdigit():
                port["published"] = int(port["published"])
    return doc


def render(model: Mapping[str, Any]) -> bytes:
    """The stack file's bytes (JSON, which is YAML too)."""
    return json.dumps(to_stack(model), indent=1, sort_keys=True).encode()
