"""What a client may ask of a service, the pure part: parse `NAME//COMMAND [ARGS...]`, name
the command, and check its arguments against what that command may be given.

Every word after the command comes from whoever holds a key, so arguments are accepted by a
list per command, never by a list of known-bad flags: a flag a command does not list (another
project, file, directory or env file, `exec --privileged`, `down --rmi`, a journal of another
user...) is refused with the reason. Positional words that name compose services must look
like compose service names; only the command `exec` runs inside the container passes through
untouched, after its compose service.

Answers the SSH server gives, as the original pgo does (the exit status of the request):

    400  the request is malformed, or an argument is refused
    404  no service of that name, or the key is not one of its keys: the two are answered
         alike, so that a key can not tell which names exist (as the webhook does)
    406  no such command

(The original's 401 is not given: it told an existing service from a missing one.)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pgo.config import NAME_RE
from pgo.errors import UsageError

BAD_REQUEST, NOT_FOUND, NOT_ACCEPTABLE = 400, 404, 406
MAX_REQUEST = 64 * 1024  # bytes of one exec request
SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a compose service name


class Refused(UsageError):
    """A request that is answered with a status and one line, without running anything."""

    def __init__(self, status: int, message: str, why: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.why = why  # for pgod's log only, when the answer does not say it


@dataclass(frozen=True)
class Request:
    name: str  # the pgo service
    command: str  # as in the table: "ps", "git pull", ...
    args: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """What one command is, and what it may be given."""

    name: str
    summary: str
    mutating: bool  # takes the service's lock (shared with the tracker)
    flags: tuple[Flag, ...] = ()
    positional: str = "none"  # "none", "services" (compose service names), "exec"


# (long flag, its short form or "", takes a value)
Flag = tuple[str, str, bool]
LOGS_FLAGS: tuple[Flag, ...] = (
    ("--follow", "-f", False), ("--timestamps", "-t", False), ("--tail", "-n", True),
    ("--since", "", True), ("--until", "", True), ("--no-color", "", False),
    ("--no-log-prefix", "", False), ("--index", "", True))
PS_FLAGS: tuple[Flag, ...] = (
    ("--all", "-a", False), ("--quiet", "-q", False), ("--services", "", False),
    ("--format", "", True), ("--status", "", True), ("--filter", "", True),
    ("--no-trunc", "", False), ("--orphans", "", False))
TIMEOUT_FLAGS: tuple[Flag, ...] = (("--timeout", "-t", True),)
EXEC_FLAGS: tuple[Flag, ...] = (
    ("--no-TTY", "-T", False), ("--detach", "-d", False), ("--env", "-e", True),
    ("--user", "-u", True), ("--workdir", "-w", True), ("--index", "", True))
PULL_FLAGS: tuple[Flag, ...] = (
    ("--quiet", "-q", False), ("--ignore-pull-failures", "", False),
    ("--include-deps", "", False))
JOURNAL_FLAGS: tuple[Flag, ...] = (
    ("--follow", "-f", False), ("--lines", "-n", True), ("--since", "-S", True),
    ("--until", "-U", True), ("--output", "-o", True), ("--reverse", "-r", False),
    ("--priority", "-p", True), ("--grep", "-g", True), ("--quiet", "-q", False),
    ("--utc", "", False), ("--no-hostname", "", False), ("--catalog", "-x", False),
    ("--all", "-a", False), ("--output-fields", "", True))

# The command table: the SSH server, pgoctl's help and internal users (the Caddy reload)
# all read this one.
COMMANDS: dict[str, Spec] = {s.name: s for s in (
    Spec("up", "judge the checkout and bring the project up (ends a down or stop)", True),
    Spec("down", "down the project; it stays down until up", True,
         (("--volumes", "-v", False), *TIMEOUT_FLAGS)),
    Spec("stop", "stop containers; they stay stopped until start, restart or up", True,
         TIMEOUT_FLAGS, "services"),
    Spec("start", "start stopped containers", True, (), "services"),
    Spec("restart", "restart containers", True, TIMEOUT_FLAGS, "services"),
    Spec("pull", "pull the images (logged in to the service's registries)", True,
         PULL_FLAGS, "services"),
    Spec("ps", "list the project's containers", False, PS_FLAGS, "services"),
    Spec("logs", "show (-f: follow) the containers' output", False, LOGS_FLAGS, "services"),
    Spec("exec", "run a command in a running container (no TTY)", False, EXEC_FLAGS, "exec"),
    Spec("load", "judge the current checkout by the compose policy", False),
    Spec("status", "what pgod knows: desired and applied commit, errors, holds", False),
    Spec("ping", "check that the key works", False),
    Spec("journal", "the service user's lines in the system journal", False, JOURNAL_FLAGS),
    Spec("git pull", "fetch upstream and reconcile now", True),
    Spec("git hash", "the checkout's commit (8 hex digits)", False),
)}


def parse(line: str) -> Request:
    """`NAME//COMMAND [ARGS...]`, quoted as a POSIX shell would (what `ssh host CMD` sends
    and pgoctl produces), into a Request; Refused(400 or 406) when it is not one."""
    if len(line.encode("utf-8", "surrogateescape")) > MAX_REQUEST:
        raise Refused(BAD_REQUEST, f"Bad Request: request longer than {MAX_REQUEST} bytes")
    if "\x00" in line:
        raise Refused(BAD_REQUEST, "Bad Request: NUL byte in the request")
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise Refused(BAD_REQUEST, f"Bad Request: {e} (quote as a shell would)") from None
    if not words or "//" not in words[0]:
        raise Refused(BAD_REQUEST, 'Bad Request: expected "NAME//COMMAND [ARGS...]"')
    name, _, command = words[0].partition("//")
    args = words[1:]
    if not NAME_RE.fullmatch(name):
        raise Refused(BAD_REQUEST, f"Bad Request: {name!r} is not a service name")
    if command == "git" and args[:1] in (["pull"], ["hash"]):
        command, args = f"git {args[0]}", args[1:]
    return Request(name=name, command=command, args=tuple(args))


def spec(command: str) -> Spec:
    try:
        return COMMANDS[command]
    except KeyError:
        known = ", ".join(COMMANDS)
        raise Refused(NOT_ACCEPTABLE,
                      f"Not Acceptable: unknown command {command!r} (known: {known})") from None


@dataclass(frozen=True)
class Checked:
    flags: tuple[str, ...]  # each flag in its long form, `--flag` or `--flag=value`
    words: tuple[str, ...]  # compose services; for exec: the service, then its command


def check_args(s: Spec, args: tuple[str, ...]) -> Checked:
    """Split the arguments into flags and words if `s` may be given them; Refused(400)
    naming the first that may not. Flags are given back in their long form with the value
    attached (`--tail=5`), so no value can be read as a flag by the program. For exec, the
    command after the compose service passes through as it is (compose reads no flags
    after the service)."""
    by_name = {f[0]: f for f in s.flags} | {f[1]: f for f in s.flags if f[1]}
    flags: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--" and s.positional != "none":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name, eq, value = word.partition("=")
        found = by_name.get(name)
        if found is None:
            raise _refuse(s, word, "this flag is not allowed here" if name.startswith("--")
                          or len(name) == 2 else "give each short flag alone")
        long, _, takes_value = found
        if takes_value and not eq:
            if i + 1 >= len(args):
                raise _refuse(s, word, "needs a value")
            i += 1
            value = args[i]
        elif not takes_value and eq:
            raise _refuse(s, word, "takes no value")
        flags.append(f"{long}={value}" if takes_value else long)
        i += 1
    rest = args[i:]
    if s.positional == "none" and rest:
        raise _refuse(s, rest[0], "takes no arguments of this kind")
    if s.positional == "services":
        for word in rest:
            if not SERVICE_RE.match(word):
                raise _refuse(s, word, "is not a compose service name")
    if s.positional == "exec" and (len(rest) < 2 or not SERVICE_RE.match(rest[0])):
        raise Refused(BAD_REQUEST,
                      "Bad Request: exec: give a compose service and a command "
                      "(exec [FLAGS] SERVICE COMMAND [ARGS...])")
    return Checked(flags=tuple(flags), words=rest)


def _refuse(s: Spec, word: str, why: str) -> Refused:
    shown = word if len(word) <= 80 else word[:77] + "..."
    return Refused(BAD_REQUEST, f"Bad Request: {s.name}: {shown!r} refused: {why} (allowed: "
                   + (", ".join(f[0] for f in s.flags) or "no flags") + ")")


def compose_args(s: Spec, checked: Checked) -> list[str]:
    """The compose subcommand line for checked arguments: exec never gets a TTY."""
    if s.name == "exec":
        flags = [f for f in checked.flags if f != "--no-TTY"]
        return ["exec", "-T", *flags, *checked.words]
    return [s.name, *checked.flags, *checked.words]
