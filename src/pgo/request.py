"""What a client may ask of a service, the pure part: parse `NAME//COMMAND [ARGS...]` (its
target with pgo.target.parse_target, the one parser of `[HOST:]NAME//COMMAND`), describe a
command (Spec; the table of them is pgo.commands.COMMANDS), and
check a request's arguments against what its command may be given.

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
from typing import TYPE_CHECKING, Literal

from pgo.errors import UsageError
from pgo.target import parse_target

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pgo.runner import Sink
    from pgo.service import TrackedService

    # what carries out a checked command; it returns the exit status (pgo.commands)
    Handler = Callable[[TrackedService, "Spec", "Checked", Sink, Sink], Awaitable[int]]

BAD_REQUEST, NOT_FOUND, NOT_ACCEPTABLE = 400, 404, 406
MAX_REQUEST = 64 * 1024  # bytes of one exec request
SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a compose service name


class Refused(UsageError):
    """A request that is answered with a status and one line, without running anything."""

    def __init__(self, status: int, message: str, why: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.why = why  # for pgod's log only, when the answer does not say it


@dataclass(frozen=True)
class Request:
    name: str  # the pgo service
    command: str  # the word after //, as sent: "ps", "git", ...
    args: tuple[str, ...]


# (long flag, its short form or "", takes a value)
Flag = tuple[str, str, bool]
# what a command takes besides its flags: nothing, compose service names, (exec) a
# compose service and the command to run in it, passed through untouched, or (rollback) at
# most one commit, a prefix of hexadecimal digits
Positional = Literal["none", "services", "exec", "commit"]
COMMIT_RE = re.compile(r"[0-9a-fA-F]{4,64}")


@dataclass(frozen=True)
class Spec:
    """One command: the SSH server's dispatcher, pgoctl's help and the man-page test all
    read the table of them (pgo.commands.COMMANDS)."""

    name: str  # "ps", "git pull", ...
    summary: str  # one line, for pgoctl --help
    handler: Handler
    lock: bool = False  # takes the service's lock (the tracker's): waits for a deploy
    flags: tuple[Flag, ...] = ()
    positional: Positional = "none"


def parse(line: str) -> Request:
    """`NAME//COMMAND [ARGS...]`, quoted as a POSIX shell would (what `ssh host CMD` sends
    and pgoctl produces), into a Request; Refused(400) when it is not one."""
    if len(line.encode("utf-8", "surrogateescape")) > MAX_REQUEST:
        raise Refused(BAD_REQUEST, f"Bad Request: request longer than {MAX_REQUEST} bytes")
    if "\x00" in line:
        raise Refused(BAD_REQUEST, "Bad Request: NUL byte in the request")
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise Refused(BAD_REQUEST, f"Bad Request: {e} (quote as a shell would)") from None
    if not words:
        raise Refused(BAD_REQUEST, 'Bad Request: expected "NAME//COMMAND [ARGS...]"')
    try:
        target = parse_target(words[0], host=False)
    except UsageError as e:
        raise Refused(BAD_REQUEST, f"Bad Request: {e}") from None
    return Request(name=target.name, command=target.command, args=tuple(words[1:]))


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
            if not SERVICE_RE.fullmatch(word):
                raise _refuse(s, word, "is not a compose service name")
    if s.positional == "commit":
        if len(rest) > 1:
            raise _refuse(s, rest[1], "takes at most one commit")
        if rest and not COMMIT_RE.fullmatch(rest[0]):
            raise _refuse(s, rest[0], "is not a commit (4 to 64 hexadecimal digits)")
    if s.positional == "exec" and (len(rest) < 2 or not SERVICE_RE.fullmatch(rest[0])):
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
