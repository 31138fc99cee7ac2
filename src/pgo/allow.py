"""Operator exceptions to the compose policy: a service's `allow = [...]` in pgo.toml.

Each entry lifts exactly one rule of the policy, for the one service whose table holds it,
and nothing else; `user = "root"` stays the only way around the whole policy. The kinds are
a closed list (pgod(8) gives the risk of each):

    cap_add:CAP        one capability beyond Docker's default set, in `cap_add`
    device:PATH        a host device under /dev in `devices` (a directory: the devices in it)
    bind:PATH:ro       a read-only bind mount of the host path PATH or of a path below it
    bind:PATH:rw       the same, read-write too
    runtime:NAME       an OCI runtime other than runc
    port:PORT[/PROTO]  publishing host port PORT (tcp, the default, or udp or sctp)

Not kinds, on purpose: `sysctl:` (runc itself refuses a sysctl outside the container's
namespaces, and those inside are accepted already), `network_mode:host` (the host's network
namespace holds every loopback-only service of the machine, pgod's own listeners too: such a
service runs as root).

parse() makes one entry an Allow, or raises AllowError saying what is wrong with it; config.py
puts that into one ConfigError line naming the file, the service, the key and the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Docker's default capability set: adding one of these back (after `cap_drop: [ALL]`) gives
# the container nothing a default container does not have.
DEFAULT_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})
# Every Linux capability (capability(7), Linux 6.x).
CAPABILITIES = DEFAULT_CAPS | frozenset({
    "AUDIT_CONTROL", "AUDIT_READ", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
    "DAC_READ_SEARCH", "IPC_LOCK", "IPC_OWNER", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN",
    "MAC_OVERRIDE", "NET_ADMIN", "NET_BROADCAST", "PERFMON", "SYS_ADMIN", "SYS_BOOT",
    "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE",
    "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
})
# Capabilities that hand a container the host whatever else the policy holds: mounts and
# cgroup escapes (SYS_ADMIN), kernel modules, raw I/O, reading any host file by handle
# (DAC_READ_SEARCH), the LSM policy that confines it, kernel memory through BPF and perf.
# A service that needs one is a root service, which says plainly what it is.
HOST_CAPS = frozenset({
    "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH", "MAC_ADMIN", "MAC_OVERRIDE",
    "BPF", "PERFMON",
})
# Host trees no bind exception reaches (at, above or below): the kernel's interfaces, the
# devices (device: is for those), the engine's and systemd's sockets and the engine's state.
HOST_TREES = ("/proc", "/sys", "/dev", "/boot", "/run", "/var/run", "/var/lib/docker",
              "/var/lib/containerd")
# System directories a bind exception may lie below, but neither be nor hold.
SYSTEM_DIRS = ("/etc", "/usr", "/var", "/var/lib", "/root", "/home", "/bin", "/sbin", "/lib",
               "/lib64")
# Devices that are the host's memory or I/O ports.
HOST_DEVICES = ("/dev/mem", "/dev/kmem", "/dev/port")
PROTOCOLS = ("tcp", "udp", "sctp")
KINDS = ("bind", "cap_add", "device", "port", "runtime")
RUNTIME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PORT_RE = re.compile(r"^([0-9]{1,5})(?:/([a-z]+))?$")


class AllowError(ValueError):
    """An `allow` entry that is not one; str() says why."""


@dataclass(frozen=True)
class Allow:
    """One operator exception. `value`: the capability (upper case, without CAP_), the
    absolute path (device, bind), the runtime's name, or PORT/PROTO."""

    kind: str
    value: str
    write: bool = False  # bind: read-write as well as read-only

    def __str__(self) -> str:
        if self.kind == "bind":
            return f"bind:{self.value}:{'rw' if self.write else 'ro'}"
        return f"{self.kind}:{self.value}"


def parse(entry: str) -> Allow:
    kind, sep, rest = entry.partition(":")
    if not sep:
        raise AllowError(f"not KIND:VALUE (kinds: {', '.join(KINDS)})")
    if kind not in KINDS:
        raise AllowError(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})")
    if any(c.isspace() or c == "\0" for c in rest) or not rest:
        raise AllowError(f"no {kind} named, or one with blanks in it")
    if kind == "cap_add":
        return Allow(kind, _capability(rest))
    if kind == "device":
        return Allow(kind, _device(rest))
    if kind == "bind":
        path, sep, mode = rest.rpartition(":")
        if not sep or mode not in ("ro", "rw"):
            raise AllowError("must be bind:PATH:ro or bind:PATH:rw")
        return Allow(kind, _bind(path), write=mode == "rw")
    if kind == "runtime":
        if not RUNTIME_RE.match(rest):
            raise AllowError(f"not a runtime name: {rest!r}")
        if rest in ("runc", "io.containerd.runc.v2"):
            raise AllowError("runc is allowed already")
        return Allow(kind, rest)
    m = PORT_RE.match(rest)
    if m is None or not 0 < int(m.group(1)) < 65536 or (m.group(2) or "tcp") not in PROTOCOLS:
        raise AllowError("must be port:PORT or port:PORT/PROTO (a port 1-65535; tcp, udp "
                         "or sctp)")
    return Allow(kind, f"{int(m.group(1))}/{m.group(2) or 'tcp'}")


def normal_capability(text: str) -> str:
    """A capability as cap_add spells it (`net_admin`, `CAP_NET_ADMIN`) -> NET_ADMIN."""
    return text.strip().upper().removeprefix("CAP_")


def _capability(text: str) -> str:
    cap = normal_capability(text)
    if cap == "ALL":
        raise AllowError("ALL is every capability: a service that needs them runs as root")
    if cap not in CAPABILITIES:
        raise AllowError(f"{text!r} is not a Linux capability")
    if cap in DEFAULT_CAPS:
        raise AllowError(f"{cap} is in Docker's default set: allowed already")
    if cap in HOST_CAPS:
        raise AllowError(f"{cap} hands the container the host: a service that needs it runs "
                         "as root")
    return cap


def _plain(path: str) -> str:
    """An absolute path written plainly: no `.`, `..`, `//`, `:` or trailing `/`."""
    parts = path.split("/")
    if not path.startswith("/") or path == "/" or any(p in ("", ".", "..") for p in parts[1:]):
        raise AllowError("must be an absolute path without `.`, `..`, `//` or a trailing `/`")
    if ":" in path:
        raise AllowError("a path with `:` can not be told from a mount's fields")
    return path


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _device(text: str) -> str:
    path = _plain(text)
    if not path.startswith("/dev/"):
        raise AllowError("a device lies under /dev")
    if any(under(path, d) for d in HOST_DEVICES):
        raise AllowError(f"{path} is the host's memory or I/O ports: a service that needs it "
                         "runs as root")
    return path


def _bind(text: str) -> str:
    path = _plain(text)
    for tree in HOST_TREES:
        if under(path, tree) or under(tree, path):
            raise AllowError(f"{path} is, holds or lies in {tree} (the kernel's, the devices' "
                             "or the engine's: the host itself)")
    for sysdir in SYSTEM_DIRS:
        if under(sysdir, path):
            raise AllowError(f"{path} is or holds the system directory {sysdir}: name a "
                             "directory below it")
    return path
