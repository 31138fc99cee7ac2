"""pgoctl's own known-hosts file: a server's host key is remembered on first use, and a
changed key is refused. The file is in OpenSSH's known_hosts format (`[host]:port TYPE
BASE64`), so `ssh-keygen -R '[host]:port' -f FILE` forgets a host, as the refusal says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_path() -> Path:
    """$PGOCTL_KNOWN_HOSTS, else $XDG_CONFIG_HOME/pgoctl/known_hosts (~/.config/...)."""
    explicit = os.environ.get("PGOCTL_KNOWN_HOSTS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pgoctl" / "known_hosts"


def host_id(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class Verdict:
    known: bool  # the key is the remembered one
    new: bool  # nothing remembered for this host yet
    line: int = 0  # where the remembered, different key is


def check(text: str, host: str, key: str) -> Verdict:
    """Is `key` ("TYPE BASE64") the one remembered for `host` in a known_hosts text?"""
    found = 0
    for n, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if len(parts) < 3 or raw.lstrip().startswith("#"):
            continue
        if host not in parts[0].split(","):
            continue
        if " ".join(parts[1:3]) == key:
            return Verdict(known=True, new=False)
        found = found or n
    return Verdict(known=False, new=not found, line=found)


def remember(path: Path, host: str, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{host} {key}\n")
