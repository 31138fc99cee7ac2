"""`[HOST:]NAME//COMMAND`: where a request goes and what it asks, parsed in one place.

pgoctl's target (`HOST:NAME//COMMAND`), the request pgod's SSH server is sent
(`NAME//COMMAND [ARGS...]`, pgo.request) and the reload line of pgo.toml
(`HOST:NAME//exec CMD...`, pgo.config) all call parse_target; pgoctl writes the request
line with request_line(), which the server's shell-like split reads back word for word.
The service-name pattern lives here too, for pgo.toml's names and requests alike.

pgoctl reads this module before it starts ssh, and its start-up is most of its time (see
bench/ssh): it imports only `re` and `shlex` (which pgoctl's entry-point script loads
anyway), no dataclasses or typing.
"""

from __future__ import annotations

import re
import shlex

from pgo.errors import UsageError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")  # a service name (no trailing newline)
# a host as pgoctl and the reload line name it: a DNS name or an IPv4 or IPv6 address,
# never an option to a program it is handed to, never user@host
HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
                     r"(%[A-Za-z0-9_.-]+)?")


class Target:
    """A parsed `[HOST:]NAME//COMMAND`."""

    __slots__ = ("host", "name", "command")

    def __init__(self, host: str, name: str, command: str) -> None:
        self.host = host  # "" when the form has none (the SSH server's request)
        self.name = name  # the pgo service
        self.command = command  # the word after //: "ps", "git", ...

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and \
            (self.host, self.name, self.command) == (other.host, other.name, other.command)

    def __hash__(self) -> int:
        return hash((self.host, self.name, self.command))

    def __repr__(self) -> str:
        return f"Target({self.host!r}, {self.name!r}, {self.command!r})"


def parse_target(word: str, *, host: bool) -> Target:
    """`HOST:NAME//COMMAND` (host=True: pgoctl, the reload line) or `NAME//COMMAND`
    (host=False: what pgod's SSH server is sent); UsageError with one line when `word` is
    not that form."""
    form = "HOST:NAME//COMMAND" if host else "NAME//COMMAND"
    shown = word if len(word) <= 80 else word[:77] + "..."
    left, sep, command = word.partition("//")
    if not sep:
        raise UsageError(f"{shown!r} is not {form}")
    where, name = "", left
    if host:
        where, colon, name = left.rpartition(":")
        if where.startswith("[") and where.endswith("]"):
            where = where[1:-1]
        if not colon or not HOST_RE.fullmatch(where):
            raise UsageError(f"{shown!r} is not {form}: {where!r} is not a host name or "
                             "address")
    if not NAME_RE.match(name):
        raise UsageError(f"{shown!r} is not {form}: {name!r} is not a service name")
    if not command:
        raise UsageError(f"{shown!r} is not {form}: no command")
    return Target(where, name, command)


def request_line(name: str, command: str, args: list[str]) -> str:
    """What pgoctl sends: `NAME//COMMAND ARGS...`, quoted as a POSIX shell would need (the
    server splits it with shlex; tests/unit/test_request.py holds the round trip)."""
    return shlex.join([f"{name}//{command}", *args])
