"""pgoctl: run a command on a service through pgod's SSH interface.

    pgoctl [-i IDENTITY] [-p PORT] [-v] [--] HOST:NAME//COMMAND [ARGS...]

Two clients behave the same: the system's OpenSSH client (pgo.openssh), used when it is
installed and the key is an unencrypted OpenSSH key, and the built-in one on asyncssh for
everything else. Start-up is most of pgoctl's time (bench/ssh), so the way to ssh imports
only small modules: the usual command line is read by quick_args, which hands anything
unusual to argparse (the parser of record, which --help, errors and the man-page test
use); asyncssh, asyncio, argparse and the command table are imported only when needed.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (mypy reads the block below; importing typing costs start-up)
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

USAGE_EXIT = 2
DEFAULT_PORT = 2222
MAX_KEY = 1024 * 1024  # bytes of a private key file read
# pgod answers a refused request with an HTTP-like status (400, 404, 406) on the wire;
# SSH clients keep its low 8 bits, so pgoctl (like ssh) exits 144, 148 or 150.
EPILOG = ("Without -i the private key is read from $PGOCTL_ID (the key's contents). "
          "Exit status: the remote command's; refusals 144 (400 bad request), 148 (404 no "
          "such service for this key), 150 (406 unknown command); 255 connection trouble; "
          "2 usage.")


class Args:
    __slots__ = ("identity", "port", "verbose", "target", "args")

    def __init__(self, identity: str | None, port: int, verbose: bool, target: str,
                 args: list[str]) -> None:
        self.identity = identity
        self.port = port
        self.verbose = verbose
        self.target = target
        self.args = args


def parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(USAGE_EXIT, f"{self.prog}: {message} (see --help)\n")

        def format_help(self) -> str:
            import textwrap

            # the command list comes from the command table, read only when help is asked
            self.epilog = command_help() + "\n\n" + textwrap.fill(EPILOG, 79)
            return super().format_help()

    p = Parser(
        prog="pgoctl",
        description="Run COMMAND on service NAME at HOST through pgod's SSH interface.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-i", "--identity", metavar="IDENTITY", help="private key file")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT,
                   help="pgod's SSH port (%(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="say what happens")
    p.add_argument("target", metavar="HOST:NAME//COMMAND")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    return p


def command_help() -> str:
    """The commands, as pgod's command table has them."""
    from pgo.commands import COMMANDS

    width = max(len(name) for name in COMMANDS) + 2
    rows = [f"  {name:<{width}}{'(lock) ' if s.lock else ''}{s.summary}"
            for name, s in COMMANDS.items()]
    return ("commands (see pgoctl(1); (lock): waits for a deploy in progress):\n"
            + "\n".join(rows))


def quick_args(argv: list[str]) -> Args | None:
    """The usual command lines (`-i FILE`, `-p PORT`, `-v`, `--`, then the target and its
    arguments) as argparse reads them; None for anything else, which argparse then reads
    (and answers with help or an error)."""
    identity: str | None = None
    port, verbose, i = DEFAULT_PORT, False, 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if word in ("-v", "--verbose"):
            verbose, i = True, i + 1
            continue
        if word in ("-i", "--identity", "-p", "--port"):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            flag, value, i = word, argv[i + 1], i + 2
        elif word.startswith(("--identity=", "--port=")):
            flag, _, value = word.partition("=")
            i += 1
        elif word[:2] in ("-i", "-p") and len(word) > 2 and word[2] != "=":
            flag, value, i = word[:2], word[2:], i + 1
        elif word.startswith("-") and word != "-":
            return None
        else:
            break
        if flag in ("-i", "--identity"):
            identity = value
        elif value.isascii() and value.isdigit():
            port = int(value)
        else:
            return None
    if i >= len(argv) or "--" in argv[i + 1:]:  # (argparse drops some of those)
        return None
    return Args(identity, port, verbose, argv[i], argv[i + 1:])


def die(message: str, code: int) -> NoReturn:
    print(f"pgoctl: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        sys.exit(pgoctl(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        sys.exit(130)


def pgoctl(words: list[str]) -> int:
    from pgo.errors import UsageError
    from pgo.target import parse_target, request_line

    args = quick_args(words)
    if args is None:
        ns = parser().parse_args(words)
        args = Args(ns.identity, ns.port, ns.verbose, ns.target, ns.args)
    try:
        target = parse_target(args.target, host=True)
    except UsageError as e:
        die(f"target {e}", USAGE_EXIT)
    if not 0 < args.port < 65536:
        die(f"port {args.port} out of range", USAGE_EXIT)
    remote = request_line(target.name, target.command, args.args)
    key, where = read_key(args.identity)
    return connect(target.host, args.port, remote, key, where, args.verbose)


def read_key(identity: str | None) -> tuple[bytes, str | None]:
    """The private key's text, and the file it came from (None: $PGOCTL_ID)."""
    if identity:
        try:
            with open(identity, "rb") as f:
                return f.read(MAX_KEY), identity
        except OSError as e:
            die(f"can not read the key {identity}: {e.strerror or e}", USAGE_EXIT)
    text = os.environ.get("PGOCTL_ID", "")
    if not text.strip():
        die("no key: give -i IDENTITY, or put a private key's contents in $PGOCTL_ID",
            USAGE_EXIT)
    # CI variables may lose the final newline or carry literal \n
    return (text.replace("\\n", "\n").strip() + "\n").encode(), None


def connect(host: str, port: int, remote: str, key: bytes, where: str | None,
            verbose: bool) -> int:
    """Run the request with the OpenSSH client when it can take this key, else with the
    built-in one; the exit status."""
    from pgo import openssh

    ssh = openssh.find_ssh()
    pub = openssh.public_key(key) if ssh else None
    if ssh and pub:
        code = openssh.run(ssh, host, port, user(), remote, key, pub, verbose)
        # Nothing is left to clean up: leave without the interpreter's finalization, which
        # costs a tenth of pgoctl's own time.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    from pgo import sshclient

    return sshclient.main(host, port, user(), remote, key, where, verbose)


def user() -> str:
    """The SSH user name (pgod only logs it): the local user's, looked up as
    getpass.getuser() does (whose import costs 2 ms of pgoctl's start-up)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(name):
            return os.environ[name]
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "pgoctl"
