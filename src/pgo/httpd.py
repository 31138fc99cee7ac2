"""pgod's HTTP listener (-m): `GET /metrics`, `POST /hooks/NAME`, and the status page
(`GET /`, `GET /status.json`) when a status provider is given.

A few fixed routes do not need a web framework: this is the standard library's asyncio
streams and a small, strict HTTP/1.1 reader. One request per connection (`Connection:
close`), and everything a client controls is bounded:

    request line + headers   16 KiB, 64 header lines             -> 431
    body                     1 MiB, Content-Length only          -> 413 / 411
    whole request            10 s from accept to the last byte   -> 408 (slowloris)
    open connections         64 at once                          -> 503

A webhook only sets the service's wake event: the service's own poll loop runs the
reconcile, so a burst of pushes while a pass runs leads to one more pass, not one each.
A service without `webhook_secret` has no webhook: 404, exactly as an unknown name, so
nobody can trigger it anonymously nor learn which names exist without a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST

from pgo import config, metrics, statuspage
from pgo.logtext import untrusted
from pgo.webhook import Verdict, verify

if TYPE_CHECKING:
    from pgo.daemon import Daemon

log = logging.getLogger("pgo.httpd")

# The status page's data, taken when a page is asked for (see statuspage.Snapshot)
StatusProvider = Callable[[], Awaitable[statuspage.Snapshot]]
STATUS_TIMEOUT = 5.0
PAGE_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"))

MAX_HEAD = 16 * 1024
MAX_HEADERS = 64
MAX_BODY = 1024 * 1024
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
LINGER = 1.0  # after the answer, how long to drain what the client still sends

REASONS = {
    100: "Continue", 200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
TARGET_RE = re.compile(rb"/[\x21-\x7e]*")
# a header value: visible ASCII, obs-text, spaces and tabs; no CR, LF, NUL or other controls
VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
SINGLE = ("content-length", "transfer-encoding", "host")  # may appear only once


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    version: str
    headers: dict[str, str]  # lower-case names


def parse_head(head: bytes) -> Request:
    """The request line and headers, up to and including the empty line."""
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    if not head.endswith(b"\r\n\r\n"):
        raise HttpError(400, "request head not terminated by an empty line")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not TOKEN_RE.fullmatch(parts[0]):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505 if version.startswith(b"HTTP/") else 400, "HTTP/1.1 only")
    if not TARGET_RE.fullmatch(target):
        raise HttpError(400, "malformed request target")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN_RE.fullmatch(name):  # also: obs-fold, space before ':'
            raise HttpError(400, "malformed header line")
        value = value.strip(b" \t")
        if not VALUE_RE.fullmatch(value):
            raise HttpError(400, "control character in a header value")
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        if key in headers:
            if key in SINGLE:
                raise HttpError(400, f"more than one {key} header")
            text = headers[key] + ", " + text
        headers[key] = text
    if version == b"HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "no Host header")
    path = target.split(b"?", 1)[0].decode("ascii")
    return Request(method.decode("ascii"), path, version.decode("ascii"), headers)


def body_length(req: Request) -> int:
    """How many body bytes to read; only Content-Length bodies, at most MAX_BODY."""
    if "transfer-encoding" in req.headers:
        raise HttpError(411, "send the body with a Content-Length")
    value = req.headers.get("content-length")
    if value is None:
        if req.method == "POST":
            raise HttpError(411, "send the body with a Content-Length")
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise HttpError(400, "malformed Content-Length")
    n = int(value)
    if n > MAX_BODY:
        raise HttpError(413, f"body larger than {MAX_BODY} bytes")
    return n


def route(method: str, path: str) -> tuple[str, str]:
    """(what, service name): ("metrics", ""), ("status", ""), ("status.json", "") or
    ("hook", NAME); HttpError otherwise."""
    pages = {"/metrics": "metrics", "/": "status", "/status.json": "status.json"}
    if path in pages:
        if method not in ("GET", "HEAD"):
            raise HttpError(405, "use GET", (("Allow", "GET, HEAD"),))
        return pages[path], ""
    if path.startswith("/hooks/"):
        name = path[len("/hooks/"):]
        if not config.NAME_RE.match(name):
            raise HttpError(404, "no such webhook")
        if method != "POST":
            raise HttpError(405, "use POST", (("Allow", "POST"),))
        return "hook", name
    raise HttpError(404, "not found")


def response(status: int, body: bytes, *, content_type: str = "text/plain; charset=utf-8",
             headers: tuple[tuple[str, str], ...] = (), head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


class HttpServer:
    def __init__(self, daemon: Daemon, *, timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 status: StatusProvider | None = None,
                 status_timeout: float = STATUS_TIMEOUT) -> None:
        self.daemon = daemon
        self.status = status  # None: no status page (404)
        self.status_timeout = status_timeout
        self._status_failed = False
        self.timeout = timeout
        self.max_connections = max_connections
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.active = 0  # connections being served (beyond the cap: 503 and closed)

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, host or None, port,
                                                 limit=MAX_HEAD, reuse_address=True)
        addrs = ", ".join(str(s.getsockname()[:2]) for s in self.server.sockets)
        log.info("metrics, webhooks%s listening on %s",
                 " and the status page" if self.status else "", addrs)

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self.writers):
            w.transport.abort()  # a handler waiting on the client sees the end and returns
        if self.handlers:
            _, pending = await asyncio.wait(self.handlers, timeout=5)
            for task in pending:
                task.cancel()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        busy = self.active >= self.max_connections
        self.handlers.add(task)
        self.writers.add(writer)
        if not busy:
            self.active += 1
        try:
            out = response(503, b"too many connections\n") if busy \
                else await self.answer(reader, writer)
            if out is None:
                return  # the client went away
            with contextlib.suppress(ConnectionError, TimeoutError):
                writer.write(out)
                async with asyncio.timeout(self.timeout):
                    await writer.drain()
                await self.linger(reader, writer)
        finally:
            if not busy:
                self.active -= 1
            self.handlers.discard(task)
            self.writers.discard(writer)
            writer.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> bytes | None:
        """The response to the one request of this connection; None if the client left."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self.serve(reader, writer)
        except HttpError as e:
            status, out = e.status, response(e.status, e.message.encode() + b"\n",
                                              headers=e.headers)
        except TimeoutError:
            status, out = 408, response(408, b"request took too long\n")
        except asyncio.LimitOverrunError:
            status, out = 431, response(431, b"request head too large\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        metrics.HTTP_REQUESTS.labels("error", str(status)).inc()
        return out

    @staticmethod
    async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then drop what the client still sends, for a moment: closing a socket
        with unread data in it resets the connection, and the client may lose the answer
        (e.g. a 413 sent before the body was read)."""
        if not writer.can_write_eof():
            return
        writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER):
                while await reader.read(65536):
                    pass

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        req = parse_head(await reader.readuntil(b"\r\n\r\n"))
        what, name = route(req.method, req.path)
        length = body_length(req)
        if length and req.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(length) if length else b""
        if what == "metrics":
            metrics.HTTP_REQUESTS.labels("metrics", "200").inc()
            return response(200, metrics.exposition(),
                            content_type=CONTENT_TYPE_LATEST, head_only=req.method == "HEAD")
        if what in ("status", "status.json"):
            return await self.status_page(what, head_only=req.method == "HEAD")
        return self.hook(name, req, body)

    async def status_page(self, what: str, *, head_only: bool) -> bytes:
        """The status page or its JSON, from a snapshot taken now."""
        if self.status is None:
            metrics.HTTP_REQUESTS.labels("status", "404").inc()
            return response(404, b"not found\n")
        try:
            async with asyncio.timeout(self.status_timeout):
                snapshot = await self.status()
        except TimeoutError:
            metrics.HTTP_REQUESTS.labels("status", "503").inc()
            return response(503, b"status not available now\n", headers=(("Retry-After", "5"),))
        except Exception as e:  # a bug in the provider must not take the listener down
            if not self._status_failed:
                log.exception("status page: %s", type(e).__name__)
            self._status_failed = True
            metrics.HTTP_REQUESTS.labels("status", "500").inc()
            return response(500, b"status not available\n")
        self._status_failed = False
        metrics.HTTP_REQUESTS.labels("status", "200").inc()
        if what == "status.json":
            return response(200, statuspage.render_json(snapshot),
                            content_type="application/json", headers=PAGE_HEADERS,
                            head_only=head_only)
        return response(200, statuspage.render_html(snapshot).encode(),
                        content_type="text/html; charset=utf-8",
                        headers=(*PAGE_HEADERS, ("Content-Security-Policy", statuspage.CSP)),
                        head_only=head_only)

    def hook(self, name: str, req: Request, body: bytes) -> bytes:
        svc = self.daemon.services.get(name)
        secret = svc.cfg.webhook_secret if svc is not None else None
        if svc is None or not secret:
            log.debug("webhook for %s: %s", untrusted(name),
                      "no such service" if svc is None else "no webhook_secret configured")
            metrics.WEBHOOKS.labels("" if svc is None else name, "not_found").inc()
            metrics.HTTP_REQUESTS.labels("hooks", "404").inc()
            return response(404, b"no such webhook\n")
        verdict = verify(secret, req.headers, body)
        if verdict is not Verdict.OK:
            svc.log.warning("webhook refused: signature %s",
                            "missing" if verdict is Verdict.MISSING else "does not match")
            metrics.WEBHOOKS.labels(name, "unauthorized").inc()
            metrics.HTTP_REQUESTS.labels("hooks", "401").inc()
            what = b"missing" if verdict is Verdict.MISSING else b"wrong"
            return response(401, b"signature " + what + b"\n",
                            headers=(("WWW-Authenticate", 'HMAC realm="pgo"'),))
        event = req.headers.get("x-github-event") or req.headers.get("x-gitea-event") \
            or req.headers.get("x-gitlab-event") or "push"
        svc.log.info("webhook (%s): reconciling now", untrusted(event, 40))
        svc.wake_for("webhook")
        metrics.WEBHOOKS.labels(name, "accepted").inc()
        metrics.HTTP_REQUESTS.labels("hooks", "202").inc()
        return response(202, f"reconcile of {name} queued\n".encode())


async def start(daemon: Daemon, host: str, port: int,
                status: StatusProvider | None = None) -> HttpServer:
    server = HttpServer(daemon, status=status)
    await server.start(host, port)
    return server
