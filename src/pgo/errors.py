"""Every way pgo can fail, in one place.

    PgoError                      base; str(err) is one line meant for a human
    +-- ConfigError               pgo.toml is wrong (file, service, key in the message)
    +-- CommandError              an external program failed (argv redacted, exit status, output)
    |   +-- FetchError            git could not reach or read upstream (transient: retry later)
    +-- ComposeError              the compose project can not be loaded or brought up
    +-- PolicyRefusal             the compose model breaks the service's policy
    +-- UsageError                a request (SSH command, CLI argument) is malformed or refused
    +-- SecretError               a SOPS document can not be decrypted, or a service's age
                                  identity can not be made or read (file and reason, never
                                  a value)
    +-- HostKeyError              pgod's SSH host key file can not be used
"""

from __future__ import annotations

import re


class PgoError(Exception):
    """Base of pgo's own errors. The message is a single line."""


class ConfigError(PgoError):
    pass


class CommandError(PgoError):
    def __init__(self, what: str, returncode: int, output: str = "") -> None:
        self.what = what
        self.returncode = returncode
        self.output = output
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        firsts = [ln for ln in lines if ln.startswith(("fatal:", "error:", "Error", "ERROR"))]
        last = (firsts or lines or [""])[0 if firsts else -1]
        msg = f"{what}: exit status {returncode}"
        if last:
            msg += f": {last}"
        super().__init__(msg)


class FetchError(CommandError):
    pass


class ComposeError(PgoError):
    pass


class PolicyRefusal(PgoError):
    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__("; ".join(violations))


class UsageError(PgoError):
    pass


class SecretError(PgoError):
    """A secret file or identity is refused. `path` names the file (relative to the checkout
    for a SOPS document); the message says why, and never holds a secret value. A file name
    is a team's: its control characters and bytes that are not UTF-8 are escaped."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        shown = re.sub("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]",
                       lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", path)
        super().__init__(f"{shown}: {reason}")


class HostKeyError(PgoError):
    pass
