"""pgoctl's built-in SSH client, on asyncssh: what carries a request when the system's
OpenSSH client can not (pgo.openssh), with the same key, known-hosts file, messages and
exit statuses. Imported only then: asyncssh's import alone takes about 200 ms.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import NoReturn

import asyncssh

from pgo import knownhosts

USAGE_EXIT = 2
CONNECT_EXIT = 255  # as OpenSSH's ssh: connection, host key or authentication trouble


def main(host: str, port: int, user: str, remote: str, key: bytes, where: str | None,
         verbose: bool) -> int:
    """One request; the exit status pgoctl exits with."""
    try:
        return asyncio.run(run(host, port, user, remote, key, where, verbose))
    except KeyboardInterrupt:
        return 130


def die(message: str, code: int) -> NoReturn:
    print(f"pgoctl: {message}", file=sys.stderr)
    sys.exit(code)


def load_key(key: bytes, where: str | None) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(key)
    except (asyncssh.KeyImportError, ValueError) as e:
        if where:
            die(f"can not read the key {where}: {_why(e)}", USAGE_EXIT)
        die(f"$PGOCTL_ID does not hold a usable private key: {_why(e)}", USAGE_EXIT)


def _why(e: BaseException) -> str:
    text = str(e)
    return "it needs a passphrase (pgoctl keys have none)" if "passphrase" in text else text


def reason(e: BaseException) -> str:
    """What went wrong with a connection, in the words OpenSSH's client uses."""
    if isinstance(e, TimeoutError):
        return "Connection timed out"
    errno = getattr(e, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno)
    return str(getattr(e, "strerror", None) or getattr(e, "reason", None) or e)


async def run(host: str, port: int, user: str, remote: str, key_text: bytes,
              where: str | None, verbose: bool) -> int:
    """The request over asyncssh, host keys checked against pgoctl's file."""
    key = load_key(key_text, where)
    path = knownhosts.default_path()
    hid = knownhosts.host_id(host, port)
    refusal: list[str] = []

    class Client(asyncssh.SSHClient):
        def validate_host_public_key(self, h: str, addr: str, p: int,
                                     server_key: asyncssh.SSHKey) -> bool:
            text = server_key.export_public_key("openssh").decode().split()
            kstr = " ".join(text[:2])
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    known = f.read()
            except FileNotFoundError:
                known = ""
            except OSError as e:
                refusal.append(f"can not read {path}: {e.strerror}")
                return False
            verdict = knownhosts.check(known, hid, kstr)
            if verdict.known:
                return True
            if not verdict.new:
                refusal.append(knownhosts.changed(hid, server_key.get_fingerprint(),
                                                  verdict.line, path))
                return False
            knownhosts.first_use(path, hid, kstr, verbose)
            return True

    if verbose:
        print(f"pgoctl: {hid}: {remote} (key {key.get_fingerprint()})", file=sys.stderr)
    try:
        async with asyncssh.connect(
            host, port, client_factory=Client, known_hosts=([], [], []),
            username=user, client_keys=[key], agent_path=None, config=[],
            password_auth=False, kbdint_auth=False, gss_auth=False,
            host_based_auth=False, preferred_auth=["publickey"], connect_timeout=60,
        ) as conn:
            return await _exec(conn, remote)
    except asyncssh.PermissionDenied:
        die(f"{hid}: the server refused the key", CONNECT_EXIT)
    except (OSError, asyncssh.Error) as e:
        if refusal:
            die(refusal[0], CONNECT_EXIT)
        die(f"{hid}: {reason(e)}", CONNECT_EXIT)


async def _exec(conn: asyncssh.SSHClientConnection, remote: str) -> int:
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
