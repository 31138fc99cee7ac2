"""own-privileges: no privileged container, no capability beyond Docker's default set, no host
devices, no security option that loosens confinement, no host plugins or API socket. The
operator may allow one capability (cap_add:CAP), device (device:PATH) or runtime
(runtime:NAME) for a service (pgo.allow)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pgo.allow import DEFAULT_CAPS, normal_capability
from pgo.policy.model import (
    PRIVILEGES,
    UNKNOWN,
    Findings,
    as_list,
    as_map,
    items,
    truthy,
)

# Sysctls that live in the container's own namespaces (Docker's own list).
SYSCTL_PREFIXES = ("net.", "fs.mqueue.", "kernel.shm", "kernel.msg")
SYSCTLS = frozenset({"kernel.sem"})
RUNTIMES = frozenset({"runc", "io.containerd.runc.v2"})
# The kernel's own default for RLIMIT_MEMLOCK (since Linux 5.16; 64 KiB before).
MEMLOCK = 8 << 20
# What one container's logs may take of the host's disk, where dockerd writes them (json-file,
# local, or the daemon's default driver): max-size x max-file. (The local driver's own
# default is 100 MiB: 20 MiB x 5.)
LOG_DISK = 1 << 30
# When max-file is not given: the local driver's default (json-file's is 1), or whatever the
# operator set as the daemon's default; 5 bounds the former and trusts the latter.
LOG_FILES = 5
# The buffer of `mode: non-blocking` lives in dockerd's memory (its default: 1 MiB).
LOG_BUFFER = 16 << 20
# Log options by driver ("": the daemon's default driver, which the options then go to;
# taken to be a file driver). Any other option is refused as not judged.
_LOG_COMMON = frozenset({"mode", "max-buffer-size", "tag", "labels", "labels-regex", "env",
                         "env-regex"})
LOG_OPTIONS = {
    "": _LOG_COMMON | {"max-size", "max-file", "compress"},
    "json-file": _LOG_COMMON | {"max-size", "max-file", "compress"},
    "local": _LOG_COMMON | {"max-size", "max-file", "compress"},
    "journald": _LOG_COMMON,
    "syslog": _LOG_COMMON | {"syslog-facility", "syslog-format"},
    "none": frozenset(),
}
SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kmgtp]?)i?b?$", re.IGNORECASE)


def flag(what: str) -> Callable[[Findings, str, Any], None]:
    def rule(f: Findings, name: str, value: Any) -> None:
        if truthy(value):
            f.add(name, PRIVILEGES, what)
    return rule


def nonempty(what: str) -> Callable[[Findings, str, Any], None]:
    def rule(f: Findings, name: str, value: Any) -> None:
        if value not in (None, "", [], {}, False):
            f.add(name, PRIVILEGES, what)
    return rule


def cap_add(f: Findings, name: str, value: Any) -> None:
    for cap in as_list(value):
        c = normal_capability(str(cap))
        if c not in DEFAULT_CAPS:
            f.add(name, PRIVILEGES, f"cap_add {cap}: a capability beyond Docker's default set",
                  f.allowed("cap_add", c))


def devices(f: Findings, name: str, value: Any) -> None:
    """Host devices in the container: each one only by the operator's device:PATH."""
    for raw in as_list(value):
        if isinstance(raw, Mapping):
            source = str(raw.get("source") or "")
            shown = f"{source}:{raw.get('target') or source}"
        else:  # v1: SOURCE[:TARGET[:PERMISSIONS]]; a CDI name (vendor/class=name)
            shown = str(raw)
            source = shown.split(":", 1)[0]
        grant = f.allowed_path("device", source) if source.startswith("/") else None
        f.add(name, PRIVILEGES, f"devices {shown}: a host device in the container", grant)


def security_opt(f: Findings, name: str, value: Any) -> None:
    for opt in as_list(value):
        text = str(opt).strip()
        cut = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=len(text))
        key, val = text[:cut].lower(), text[cut + 1:].strip().lower()
        if key == "no-new-privileges" and val in ("", "true", "false"):
            continue
        if key == "apparmor" and val == "docker-default":
            continue
        f.add(name, PRIVILEGES, f"security_opt {text}: may loosen the container's confinement")


def sysctls(f: Findings, name: str, value: Any) -> None:
    for key, _ in items(value):
        if key not in SYSCTLS and not key.startswith(SYSCTL_PREFIXES):
            f.add(name, PRIVILEGES, f"sysctl {key} is not in the container's own namespaces")


def oom_score_adj(f: Findings, name: str, value: Any) -> None:
    try:
        score = int(str(value))
    except ValueError:
        f.add(name, UNKNOWN, f"oom_score_adj {value!r} is not a number")
        return
    if score < 0:
        f.add(name, PRIVILEGES, f"oom_score_adj {score}: protects the container at the cost "
                                f"of the host's processes")


def memory_limit(svc: Any) -> Any:
    """The compose service's memory limit (mem_limit, or deploy's), None without one."""
    svc = as_map(svc)
    return svc.get("mem_limit") or as_map(as_map(as_map(svc.get("deploy")).get(
        "resources")).get("limits")).get("memory")


def oom_kill_disable(f: Findings, name: str, value: Any) -> None:
    if truthy(value) and not memory_limit(f.services.get(name)):
        f.add(name, PRIVILEGES, "oom_kill_disable without a memory limit: when memory runs "
                                "out, the kernel kills the host's processes instead")


def runtime(f: Findings, name: str, value: Any) -> None:
    if value and str(value) not in RUNTIMES:
        f.add(name, PRIVILEGES, f"runtime {value}: only runc is allowed",
              f.allowed("runtime", str(value)))


def isolation(f: Findings, name: str, value: Any) -> None:
    if value and str(value) != "default":
        f.add(name, PRIVILEGES, f"isolation {value}: only the default is allowed")


def hooks(key: str) -> Callable[[Findings, str, Any], None]:
    def rule(f: Findings, name: str, value: Any) -> None:
        for hook in as_list(value):
            if truthy(as_map(hook).get("privileged")):
                f.add(name, PRIVILEGES, f"{key} hook runs privileged")
    return rule


def develop(f: Findings, name: str, value: Any) -> None:
    for watch in as_list(as_map(value).get("watch")):
        if truthy(as_map(as_map(watch).get("exec")).get("privileged")):
            f.add(name, PRIVILEGES, "develop watch hook runs privileged")


def deploy(f: Findings, name: str, value: Any) -> None:
    reservations = as_map(as_map(as_map(value).get("resources")).get("reservations"))
    if reservations.get("devices"):
        f.add(name, PRIVILEGES, "deploy reserves host devices")


def ulimits(f: Findings, name: str, value: Any) -> None:
    _ulimits(f, name, "ulimit", value, bool(memory_limit(f.services.get(name))))


def _ulimits(f: Findings, name: str, what: str, value: Any, memory_limited: bool) -> None:
    """Limits that protect the host as a whole, not the container's own resources: realtime
    priority (a SCHED_FIFO process keeps a CPU from everything else; the kernel leaves the
    rest of the machine 5%), a nice value above the host's, and memory locked where no
    memory limit counts it. nofile, nproc, core, stack and the like stay the container's."""
    for key, raw in items(value):
        soft_hard = (as_map(raw).get("soft"), as_map(raw).get("hard")) \
            if isinstance(raw, Mapping) else (raw,)
        given = [x for x in soft_hard if x is not None]
        try:
            limits = [int(str(x)) for x in given]
        except ValueError:
            f.add(name, UNKNOWN, f"{what} {key} {raw!r} is not a number")
            continue
        if not limits:
            continue
        shown = "/".join(map(str, given))
        unlimited = any(n < 0 for n in limits)
        top = max(limits)
        if key == "rtprio" and (unlimited or top > 0):
            f.add(name, PRIVILEGES, f"{what} rtprio {shown}: realtime scheduling lets the "
                                    "container's processes take whole CPUs from the host")
        elif key == "nice" and (unlimited or top > 20):
            f.add(name, PRIVILEGES, f"{what} nice {shown}: lets the container's processes "
                                    "take a priority above the host's own (nice below 0)")
        elif key == "memlock" and (unlimited or top > MEMLOCK) and not memory_limited:
            f.add(name, PRIVILEGES, f"{what} memlock {shown}: locked memory can not be "
                                    "reclaimed; more than 8 MiB only with a memory limit "
                                    "(mem_limit), which it counts against")


def build(f: Findings, name: str, value: Any) -> None:
    b = as_map(value)
    if b.get("ulimits"):
        _ulimits(f, name, "build ulimit", b["ulimits"], False)
    if truthy(b.get("privileged")):
        f.add(name, PRIVILEGES, "build runs privileged")
    if b.get("entitlements"):
        f.add(name, PRIVILEGES, "build asks for entitlements "
                                f"({', '.join(map(str, as_list(b['entitlements'])))})")
    if b.get("isolation") and str(b["isolation"]) != "default":
        f.add(name, PRIVILEGES, f"build isolation {b['isolation']}: only the default")


def logging(f: Findings, name: str, value: Any) -> None:
    """The host's log rotation: where dockerd writes a container's logs to files, they stay
    bounded (max-size x max-file at most LOG_DISK); the non-blocking buffer, in dockerd's
    memory, at most LOG_BUFFER. (Drivers that send logs elsewhere are
    pgo.policy.networks'.)"""
    log = as_map(value)
    driver = str(log.get("driver") or "")
    opts = {k: str(v) for k, v in items(log.get("options"))}
    known = LOG_OPTIONS.get(driver)
    if known is None:
        return  # a driver that does not write on this machine: refused as such
    for k in opts:
        if k not in known:
            f.add(name, UNKNOWN, f"log option {k} (driver {driver or 'default'}) is not known "
                                 "to the policy")
    mode = opts.get("mode", "blocking")
    if mode not in ("blocking", "non-blocking"):
        f.add(name, UNKNOWN, f"log option mode {mode!r} is not known to the policy")
    if "max-buffer-size" in opts:
        buffer = log_size(opts["max-buffer-size"])
        if buffer is None or buffer < 0 or buffer > LOG_BUFFER:
            f.add(name, PRIVILEGES, f"log option max-buffer-size {opts['max-buffer-size']}: "
                                    "the buffer lives in dockerd's memory; at most "
                                    f"{LOG_BUFFER >> 20}m")
    if driver in ("", "json-file", "local"):
        _log_files(f, name, driver, opts)


def _log_files(f: Findings, name: str, driver: str, opts: Mapping[str, str]) -> None:
    shown = f"log driver {driver}" if driver else "log options"
    cap = f"at most {LOG_DISK >> 20} MiB of logs per container (max-size x max-file)"
    if "max-size" not in opts:
        if driver == "json-file":
            f.add(name, PRIVILEGES, "log driver json-file without max-size: its log grows "
                                    "without end on the host's disk; set max-size (and "
                                    "max-file) or leave the driver to the host")
        elif "max-file" in opts and driver == "":
            f.add(name, PRIVILEGES, "log option max-file without max-size: the host's "
                                    "rotation would no longer bound the logs; set max-size "
                                    "too")
        if driver != "local" or "max-file" not in opts:
            return
    size = log_size(opts.get("max-size", "20m"))  # (the local driver's default)
    try:
        files = int(opts.get("max-file", str(LOG_FILES)))
    except ValueError:
        files = 0
    if size is None or files < 1:
        f.add(name, UNKNOWN, f"{shown}: max-size {opts.get('max-size')!r} or max-file "
                             f"{opts.get('max-file')!r} is not understood")
    elif size < 0:
        f.add(name, PRIVILEGES, f"{shown}: max-size {opts['max-size']} lets the log grow "
                                f"without end on the host's disk; {cap}")
    elif size * files > LOG_DISK:
        f.add(name, PRIVILEGES, f"{shown}: max-size {opts.get('max-size', '20m')} x max-file "
                                f"{files} lets the logs take {size * files / 2**30:.1f} GiB "
                                f"of the host's disk; {cap}")


def log_size(text: str) -> int | None:
    """A size as dockerd reads log options (go-units' RAMInBytes: 10m, 1.5G, 100kb, 4096;
    binary multiples); -1 (no limit) as -1; None when it is not one."""
    if text.strip() == "-1":
        return -1
    m = SIZE_RE.match(text.strip())
    if m is None:
        return None
    return int(float(m.group(1)) * 1024 ** " kmgtp".index(m.group(2).lower() or " "))
