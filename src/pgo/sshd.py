"""pgod's SSH server (-s, default :2222), on asyncssh.

It does three things and nothing else: it authenticates a connection by public key (a key
that some tracked service's repository holds, whose private half the client proves to
hold; pgo.sshkeys.Keyring), it authorizes each exec request
`NAME//COMMAND [ARGS...]` against the keys in NAME's checkout (pgo.sshkeys), and it hands
the checked request to the command table (pgo.commands), streaming stdout and stderr back
as they come. No passwords, shells, PTYs, forwarding of any kind, SFTP or SCP.

When the client goes away the command is cancelled, which ends its process group (the
runner's job), so `logs -f` and `journal -f` leave nothing behind. A connection that runs
no request for IDLE_TIMEOUT is closed; connections are limited in all and per source
address (Limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

import asyncssh

from pgo import commands, metrics, request, sshkeys
from pgo.logtext import untrusted
from pgo.request import Refused
from pgo.runner import Sink
from pgo.service import STATE_DIR, TrackedService

if TYPE_CHECKING:
    from pgo.daemon import Daemon

log = logging.getLogger("pgo.sshd")

LOGIN_TIMEOUT = 30.0
# A logged-in connection with no request running for this long is closed: every client
# sends its request at once, and an idle connection only holds a descriptor.
IDLE_TIMEOUT = 5.0
BACKLOG = 1024
KEY_INFO = "pgo_key"  # connection extra info: the key the client authenticated with
CONNECTION_INFO = "pgo_connection"  # connection extra info: its Connection
# Anyone who reaches the port can open connections and never log in; each holds a file
# descriptor and a key exchange for LOGIN_TIMEOUT, and pgod needs its descriptors for every
# git and compose it runs. Beyond these limits a new connection is closed at once (as
# OpenSSH's MaxStartups and MaxSessions do), so a flood costs the SSH interface, never
# the services. One source address (an IPv6 /64) may hold only part of them, so a flood
# from one place leaves room for everyone else. MAX_STARTUPS_PER_SOURCE stays above the
# 200 simultaneous logins pgod must serve (a CI fleet behind one address).
MAX_STARTUPS = 512  # connections not yet authenticated
MAX_CONNECTIONS = 2048  # connections in all
MAX_STARTUPS_PER_SOURCE = 256
MAX_CONNECTIONS_PER_SOURCE = 512
MAX_SESSIONS = 10  # sessions (requests) at once on one connection


def source(peer: object) -> str:
    """Whom a connection counts against: its IPv4 address, or the /64 of an IPv6 one."""
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    try:
        addr = ipaddress.ip_address(str(host).partition("%")[0])
    except ValueError:
        return str(host)
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class Limits:
    """Connection counts shared by every Connection of one server: in all, and per source
    address."""

    def __init__(self, startups: int = MAX_STARTUPS, connections: int = MAX_CONNECTIONS,
                 startups_per_source: int = MAX_STARTUPS_PER_SOURCE,
                 connections_per_source: int = MAX_CONNECTIONS_PER_SOURCE) -> None:
        self.max_startups = startups
        self.max_connections = connections
        self.max_source_startups = startups_per_source
        self.max_source_connections = connections_per_source
        self.unauthenticated = 0
        self.connections = 0
        self.by_source: dict[str, list[int]] = {}  # source -> [not logged in, in all]
        self.refused = 0  # connections closed at once since the last warning
        self._warned = -1e9

    def admit(self, src: str) -> bool:
        """Count a new connection from `src`; False when it must be closed at once."""
        unauth, total = self.by_source.get(src, (0, 0))
        if self.unauthenticated >= self.max_startups or \
                self.connections >= self.max_connections or \
                unauth >= self.max_source_startups or total >= self.max_source_connections:
            self.refused += 1
            now = time.monotonic()
            if now - self._warned > 60:
                log.warning("ssh: %d connection(s) closed at once: %d not logged in, %d in all "
                            "(limits %d and %d; from %s: %d and %d, limits %d and %d)",
                            self.refused, self.unauthenticated, self.connections,
                            self.max_startups, self.max_connections, src, unauth,
                            total, self.max_source_startups, self.max_source_connections)
                self._warned, self.refused = now, 0
            return False
        self.unauthenticated += 1
        self.connections += 1
        self.by_source[src] = [unauth + 1, total + 1]
        return True

    def logged_in(self, src: str) -> None:
        self.unauthenticated -= 1
        self.by_source[src][0] -= 1

    def closed(self, src: str, authenticated: bool) -> None:
        self.connections -= 1
        counts = self.by_source[src]
        counts[1] -= 1
        if not authenticated:
            self.unauthenticated -= 1
            counts[0] -= 1
        if counts[1] == 0:
            del self.by_source[src]


class Connection(asyncssh.SSHServer):
    """One client connection: public-key authentication only, with a key that some
    tracked service holds; no forwarding; closed when idle."""

    def __init__(self, limits: Limits, keyring: sshkeys.Keyring) -> None:
        self.conn: asyncssh.SSHServerConnection | None = None
        self.offered: asyncssh.SSHKey | None = None
        self.limits = limits
        self.keyring = keyring
        self.source = ""
        self.came = time.monotonic()
        self.counted = False  # admitted: counted in limits until the connection is lost
        self.authenticated = False
        self.sessions = 0
        self.idle: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.source = source(conn.get_extra_info("peername"))
        self.counted = self.limits.admit(self.source)
        if not self.counted:
            conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.idle is not None:
            self.idle.cancel()
        if self.counted:
            self.counted = False
            self.limits.closed(self.source, self.authenticated)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Only a key that some tracked service's repository holds is let in; which service
        # it opens is decided per request. asyncssh calls this for each key offered and
        # again for the signed attempt just before it checks the signature (a new attempt
        # cancels the one in progress), so the last key admitted when auth completes is
        # the one the client proved to hold.
        if not await self.keyring.holds(key, self.came):
            return False
        self.offered = key
        return True

    def auth_completed(self) -> None:
        if self.counted and not self.authenticated:
            self.limits.logged_in(self.source)
        self.authenticated = True
        if self.conn is not None:
            self.conn.set_extra_info(**{KEY_INFO: self.offered, CONNECTION_INFO: self})
        self.wait_for_a_session()

    def wait_for_a_session(self) -> None:
        """Close the connection if no request runs on it within IDLE_TIMEOUT."""
        if self.idle is not None:
            self.idle.cancel()
        if self.lost:
            return
        self.idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close_idle)

    def session_started(self) -> None:
        self.sessions += 1
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None

    def session_ended(self) -> None:
        self.sessions -= 1
        if self.sessions == 0:
            self.wait_for_a_session()

    def _close_idle(self) -> None:
        self.idle = None
        if self.sessions == 0 and self.conn is not None:
            log.debug("ssh: closing a connection from %s: no request within %.0fs",
                      self.source, IDLE_TIMEOUT)
            self.conn.close()

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False


class SshServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self.sessions: set[asyncio.Task[Any]] = set()
        self.limits = Limits()
        self.keyring = sshkeys.Keyring(
            lambda: {n: s.paths.checkout(n) for n, s in daemon.services.items()})

    async def start(self, host: str, port: int) -> None:
        key = sshkeys.load_host_key(self.daemon.opts.paths.root / STATE_DIR)
        await self.keyring.refresh()
        self.acceptor = await asyncssh.create_server(
            lambda: Connection(self.limits, self.keyring), host or None, port,
            server_host_keys=[key],
            process_factory=self.handle, encoding=None, allow_pty=False,
            x11_forwarding=False, agent_forwarding=False, allow_scp=False,
            sftp_factory=None, login_timeout=LOGIN_TIMEOUT, backlog=BACKLOG,
            reuse_address=True, keepalive_interval=60, keepalive_count_max=3)
        log.info("SSH listening on %s:%d (host key %s)", host or "*", port,
                 key.get_fingerprint())

    async def aclose(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
        for task in list(self.sessions):
            task.cancel()
        if self.sessions:
            await asyncio.wait(self.sessions, timeout=10)

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        assert task is not None
        owner = process.get_extra_info(CONNECTION_INFO)
        if isinstance(owner, Connection) and owner.sessions >= MAX_SESSIONS:
            with contextlib.suppress(BrokenPipeError, ConnectionError, asyncssh.Error):
                process.stderr.write(commands.line(
                    f"Bad Request: at most {MAX_SESSIONS} requests at once on one "
                    "connection"))
                send_exit(process, request.BAD_REQUEST)
            return
        if isinstance(owner, Connection):
            owner.session_started()
        self.sessions.add(task)
        try:
            status = await self.serve(process)
        except asyncio.CancelledError:
            status = 255
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            return  # the client left
        except Exception:  # a bug must not end pgod's other sessions: log it, answer 1
            log.exception("ssh: request %s failed", untrusted(process.command))
            status = 1
        finally:
            self.sessions.discard(task)
            if isinstance(owner, Connection):
                owner.session_ended()
        with contextlib.suppress(BrokenPipeError, ConnectionError, asyncssh.Error):
            send_exit(process, status)

    async def serve(self, process: asyncssh.SSHServerProcess[bytes]) -> int:
        user = str(process.get_extra_info("username") or "")
        command = process.command
        if command is None:
            process.stderr.write(b"Bad Request: only exec requests "
                                 b"(NAME//COMMAND [ARGS...]), no shells\n")
            return request.BAD_REQUEST

        async def out(data: bytes) -> None:
            process.stdout.write(data)
            await process.stdout.drain()

        async def err(data: bytes) -> None:
            process.stderr.write(data)
            await process.stderr.drain()

        name, what, allowed = "", "?", ""
        try:
            req = request.parse(command)
            name, what = req.name, req.command
            svc = self.daemon.services.get(req.name)
            key = process.get_extra_info(KEY_INFO)
            if svc is None or key is None or not await self.keyring.authorized(
                    key, req.name, svc.paths.checkout(req.name)):
                # One answer for both, as the webhook gives: a key learns nothing about
                # the names of services that are not its own.
                raise Refused(request.NOT_FOUND, f'Not Found: No service found with name '
                              f'"{req.name}" for this key',
                              why="no such service" if svc is None else "not its key")
            allowed = req.name
            spec, args = commands.find(req.command, req.args)
            checked = request.check_args(spec, args)
        except Refused as e:
            log.info("ssh: %s from %s (key %s): %s -> %d%s", untrusted(what), untrusted(user),
                     _fingerprint(process), untrusted(name or "?"), e.status,
                     f" ({e.why})" if e.why else "")
            # only a service the key may use is a label: no client makes up label values
            metrics.SSH_REQUESTS.labels(allowed, "", str(e.status)).inc()
            await err(commands.line(str(e)))
            return e.status
        svc.log.info("ssh: %s by %s (key %s)", spec.name, untrusted(user), _fingerprint(process))
        status = await self._run(process, svc, spec, checked, out, err)
        metrics.SSH_REQUESTS.labels(svc.name, spec.name, str(status)).inc()
        svc.log.debug("ssh: %s done: exit status %d", spec.name, status)
        return status

    async def _run(self, process: asyncssh.SSHServerProcess[bytes], svc: TrackedService,
                   spec: request.Spec, checked: request.Checked, out: Sink, err: Sink) -> int:
        """Run the command; cancel it when the client goes away before it ends."""
        work = asyncio.ensure_future(commands.run(svc, spec, checked, out, err))
        gone = asyncio.ensure_future(process.channel.wait_closed())
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
            gone.cancel()
        if work.cancelled():
            svc.log.info("ssh: %s: the client went away; ended it", spec.name)
            raise ConnectionError("client gone")
        return work.result()


def send_exit(process: asyncssh.SSHServerProcess[bytes], status: int) -> None:
    """Send the exit status and close. SSH's exit-status is a uint32 (RFC 4254 6.10) and
    pgod answers refusals with 400-406 as the original does, but asyncssh's exit() keeps
    only the low 8 bits: send those statuses with the channel's own request instead."""
    chan: Any = process.channel
    if status > 255 and hasattr(chan, "_send_request"):
        from asyncssh.packet import UInt32

        chan._send_request(b"exit-status", UInt32(status))
        chan.close()
        return
    process.exit(status)


def _fingerprint(process: asyncssh.SSHServerProcess[bytes]) -> str:
    key = process.get_extra_info(KEY_INFO)
    return str(key.get_fingerprint()) if key is not None else "-"


async def start(daemon: Daemon, host: str, port: int) -> SshServer:
    server = SshServer(daemon)
    await server.start(host, port)
    return server
