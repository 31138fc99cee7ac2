"""pgoctl's own known-hosts file: a server's host key is remembered on first use, and a
changed key is refused. The file is in OpenSSH's known_hosts format (`[host]:port TYPE
BASE64`), so `ssh-keygen -R '[host]:port' -f FILE` forgets a host, as the refusal says.

Both of pgoctl's clients decide with check() (the OpenSSH client is given only the lines
check() looks at), and both remember a new key with remember(). This module imports
nothing but `os` and `sys`: pgoctl reads it before it starts ssh.
"""

from __future__ import annotations

import os
import sys


def default_path() -> str:
    """$PGOCTL_KNOWN_HOSTS, else $XDG_CONFIG_HOME/pgoctl/known_hosts (~/.config/...)."""
    explicit = os.environ.get("PGOCTL_KNOWN_HOSTS")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pgoctl", "known_hosts")


def host_id(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class Verdict:
    """Is a key the one remembered for a host?"""

    __slots__ = ("known", "new", "line")

    def __init__(self, known: bool, new: bool, line: int = 0) -> None:
        self.known = known  # the key is the remembered one
        self.new = new  # nothing remembered for this host yet
        self.line = line  # where the remembered, different key is


def _entries(text: str, host: str) -> list[tuple[int, str, str]]:
    """(line number, line, its "TYPE BASE64") of every line that names `host`."""
    found = []
    for n, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if len(parts) < 3 or raw.lstrip().startswith("#"):
            continue
        if host in parts[0].split(","):
            found.append((n, raw, " ".join(parts[1:3])))
    return found


def check(text: str, host: str, key: str) -> Verdict:
    """Is `key` ("TYPE BASE64") the one remembered for `host` in a known_hosts text?"""
    entries = _entries(text, host)
    if any(k == key for _, _, k in entries):
        return Verdict(known=True, new=False)
    return Verdict(known=False, new=not entries, line=entries[0][0] if entries else 0)


def lines_for(text: str, host: str) -> str:
    """The lines of a known_hosts text that check() looks at for `host`."""
    return "".join(raw + "\n" for _, raw, _ in _entries(text, host))


def changed(host: str, fingerprint: str, line: int, path: str) -> str:
    """The refusal of a host key that is not the remembered one."""
    return (f"the host key of {host} has changed (it is now {fingerprint}), which can mean "
            "that someone is intercepting the connection; if the server's key really "
            f"changed, forget the old one (line {line} of {path}): "
            f"ssh-keygen -R '{host}' -f {path}")


def first_use(path: str, host: str, key: str, verbose: bool) -> None:
    """Remember the key of a host met for the first time, saying so with -v; a file that
    can not be written is a warning (the connection goes on)."""
    try:
        remember(path, host, key)
    except OSError as e:
        print(f"pgoctl: warning: could not remember the host key in {path}: {e.strerror}",
              file=sys.stderr)
        return
    if verbose:
        print(f"pgoctl: remembered {host}'s host key {fingerprint(key)} in {path}",
              file=sys.stderr)


def remember(path: str, host: str, key: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{host} {key}\n")


def fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key given as "TYPE BASE64"."""
    import base64
    import hashlib

    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
