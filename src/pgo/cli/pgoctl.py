"""pgoctl: run a command on a service through pgod's SSH interface.

    pgoctl [-i IDENTITY] [-p PORT] [-v] [--] HOST:NAME//COMMAND [ARGS...]

Only the standard library is imported until the target has been parsed; asyncssh (the
expensive import) comes last, when there is something to connect to.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shlex
import sys
import textwrap
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import asyncssh

USAGE_EXIT = 2
CONNECT_EXIT = 255  # as OpenSSH's ssh: connection, host key or authentication trouble
# pgod answers a refused request with an HTTP-like status (400, 404, 406) on the wire;
# SSH clients keep its low 8 bits, so pgoctl (like ssh) exits 144, 148 or 150.


EPILOG = ("Without -i the private key is read from $PGOCTL_ID (the key's contents). "
          "Exit status: the remote command's; refusals 144 (400 bad request), 148 (404 no "
          "such service for this key), 150 (406 unknown command); 255 connection trouble; "
          "2 usage.")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"{self.prog}: {message} (see --help)\n")

    def format_help(self) -> str:
        # the command list comes from the command table, read only when help is asked for
        self.epilog = command_help() + "\n\n" + textwrap.fill(EPILOG, 79)
        return super().format_help()


def command_help() -> str:
    """The commands, as pgod's command table has them."""
    from pgo.commands import COMMANDS

    width = max(len(name) for name in COMMANDS) + 2
    rows = [f"  {name:<{width}}{'(lock) ' if s.lock else ''}{s.summary}"
            for name, s in COMMANDS.items()]
    return ("commands (see pgoctl(1); (lock): waits for a deploy in progress):\n"
            + "\n".join(rows))


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="pgoctl",
        description="Run COMMAND on service NAME at HOST through pgod's SSH interface.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-i", "--identity", metavar="IDENTITY", help="private key file")
    p.add_argument("-p", "--port", type=int, default=2222, help="pgod's SSH port (%(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="say what happens")
    p.add_argument("target", metavar="HOST:NAME//COMMAND")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    return p


def die(message: str, code: int) -> NoReturn:
    print(f"pgoctl: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    from pgo.errors import UsageError
    from pgo.request import parse_target

    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        target = parse_target(args.target, host=True)
    except UsageError as e:
        die(f"target {e}", USAGE_EXIT)
    host, name, command = target.host, target.name, target.command
    if not 0 < args.port < 65536:
        die(f"port {args.port} out of range", USAGE_EXIT)
    remote = shlex.join([f"{name}//{command}", *args.args])
    try:
        code = asyncio.run(run(host, args.port, remote, args.identity, args.verbose))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def load_key(identity: str | None) -> asyncssh.SSHKey:
    import asyncssh

    if identity:
        try:
            return asyncssh.read_private_key(identity)
        except (OSError, asyncssh.KeyImportError, ValueError) as e:
            die(f"can not read the key {identity}: {_why(e)}", USAGE_EXIT)
    text = os.environ.get("PGOCTL_ID", "")
    if not text.strip():
        die("no key: give -i IDENTITY, or put a private key's contents in $PGOCTL_ID",
            USAGE_EXIT)
    # CI variables may lose the final newline or carry literal \n
    text = text.replace("\\n", "\n").strip() + "\n"
    try:
        return asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError) as e:
        die(f"$PGOCTL_ID does not hold a usable private key: {_why(e)}", USAGE_EXIT)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    text = str(e)
    return "it needs a passphrase (pgoctl keys have none)" if "passphrase" in text else text


async def run(host: str, port: int, remote: str, identity: str | None, verbose: bool) -> int:
    import asyncssh

    from pgo import knownhosts

    key = load_key(identity)
    path = knownhosts.default_path()
    hid = knownhosts.host_id(host, port)
    refusal: list[str] = []

    class Client(asyncssh.SSHClient):
        def validate_host_public_key(self, h: str, addr: str, p: int,
                                     server_key: asyncssh.SSHKey) -> bool:
            text = server_key.export_public_key("openssh").decode().split()
            kstr = " ".join(text[:2])
            try:
                known = path.read_text()
            except FileNotFoundError:
                known = ""
            except OSError as e:
                refusal.append(f"can not read {path}: {e.strerror}")
                return False
            verdict = knownhosts.check(known, hid, kstr)
            if verdict.known:
                return True
            if not verdict.new:
                refusal.append(
                    f"the host key of {hid} has changed (it is now "
                    f"{server_key.get_fingerprint()}), which can mean that someone is "
                    f"intercepting the connection; if the server's key really changed, "
                    f"forget the old one (line {verdict.line} of {path}): "
                    f"ssh-keygen -R '{hid}' -f {path}")
                return False
            try:
                knownhosts.remember(path, hid, kstr)
                if verbose:
                    print(f"pgoctl: remembered {hid}'s host key "
                          f"{server_key.get_fingerprint()} in {path}", file=sys.stderr)
            except OSError as e:
                print(f"pgoctl: warning: could not remember the host key in {path}: "
                      f"{e.strerror}", file=sys.stderr)
            return True

    if verbose:
        print(f"pgoctl: {hid}: {remote} (key {key.get_fingerprint()})", file=sys.stderr)
    try:
        async with asyncssh.connect(
            host, port, client_factory=Client, known_hosts=([], [], []),
            username=_user(), client_keys=[key], agent_path=None, config=[],
            password_auth=False, kbdint_auth=False, gss_auth=False,
            host_based_auth=False, preferred_auth=["publickey"], connect_timeout=60,
        ) as conn:
            return await _exec(conn, remote)
    except asyncssh.PermissionDenied:
        die(f"{hid}: the server refused the key", CONNECT_EXIT)
    except (OSError, asyncssh.Error) as e:
        if refusal:
            die(refusal[0], CONNECT_EXIT)
        die(f"{hid}: {getattr(e, 'strerror', None) or getattr(e, 'reason', None) or e}",
            CONNECT_EXIT)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "pgoctl"


async def _exec(conn: asyncssh.SSHClientConnection, remote: str) -> int:
    import asyncssh

    proc = await conn.create_process(remote, encoding=None, stdin=asyncssh.DEVNULL)

    async def pump(reader: asyncssh.SSHReader[bytes], fd: int) -> None:
        while chunk := await reader.read(65536):
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]

    await asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
    await proc.wait_closed()
    status = proc.exit_status
    if status is None or status < 0:
        return CONNECT_EXIT
    return status & 0xFF
