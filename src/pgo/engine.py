"""The Docker Engine's API over its unix socket: the little HTTP/1.1 pgod speaks to it.

Two kinds of request: a plain one (`GET /containers/json`: a whole JSON document back) and
a stream (`GET /events`: a body that never ends). Both are HTTP/1.1 on a connection of
their own (`Connection: close`); the answer is read as the engine sends it, with a
`Content-Length`, `Transfer-Encoding: chunked` (what the engine uses for streams and
most answers), or until the connection closes. Paths are unversioned: the engine answers
them with its own API version (a pinned old version is refused by newer engines).

    EngineError          the engine is not there, answered with an error, or broke the
                         protocol (one line; the caller retries or falls back)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgo.errors import PgoError

# The engine's own socket (also what compose.RunningProjects asks; one owner: here)
ENGINE_SOCKET = "/var/run/docker.sock"
PROJECT_LABEL = "com.docker.compose.project"
STACK_LABEL = "com.docker.stack.namespace"  # a swarm stack's, on its services and tasks
SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"  # on a swarm task's container
SERVICE_LABEL = "com.docker.compose.service"
HASH_LABEL = "com.docker.compose.config-hash"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"

HEAD_TIMEOUT = 10.0  # connect, send, and read the status line and headers
BODY_TIMEOUT = 60.0  # a whole plain answer (not a stream)
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024  # a plain answer: a listing of many containers
MAX_LINE = 1024 * 1024  # one line of a stream (one event)


class EngineError(PgoError):
    pass


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names


def query(path: str, filters: Mapping[str, Sequence[str]] | None = None,
          **params: str) -> str:
    """`path?filters=...&k=v` with the engine's JSON filter syntax ({"label": ["k=v"]})."""
    args = dict(params)
    if filters:
        args["filters"] = json.dumps({k: list(v) for k, v in filters.items()},
                                     separators=(",", ":"))
    return path + ("?" + urllib.parse.urlencode(args) if args else "")


def request_bytes(target: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: pgod\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n").encode("ascii")


def parse_head(head: bytes) -> Response:
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: .*)?", lines[0])
    if not m:
        raise EngineError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise EngineError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return Response(int(m.group(1)), headers)


async def body(reader: asyncio.StreamReader, resp: Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, whatever its framing; ends with the body."""
    encoding = resp.headers.get("transfer-encoding", "").lower()
    if encoding:
        if encoding != "chunked":
            raise EngineError(f"unsupported Transfer-Encoding {encoding!r}")
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size_text = size_line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_text):
                raise EngineError(f"malformed chunk size {size_line[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers: none expected, ignored
                return
            data = await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise EngineError("chunk not followed by CRLF")
            yield data
    elif "content-length" in resp.headers:
        text = resp.headers["content-length"]
        if not text.isdigit():
            raise EngineError(f"malformed Content-Length {text[:20]!r}")
        left = int(text)
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise EngineError("connection closed inside the body")
            left -= len(data)
            yield data
    else:  # HTTP/1.0 style: the body ends with the connection
        while data := await reader.read(65536):
            yield data


async def lines(chunks: AsyncIterator[bytes], limit: int = MAX_LINE) -> AsyncIterator[bytes]:
    """Complete newline-terminated lines of a byte stream, whatever the chunk boundaries."""
    buf = b""
    async for data in chunks:
        buf += data
        *complete, buf = buf.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
        if len(buf) > limit:
            raise EngineError(f"a line of the stream is longer than {limit} bytes")
    if buf.strip():
        yield buf


@contextlib.asynccontextmanager
async def open_request(socket: str, target: str
                       ) -> AsyncIterator[tuple[Response, asyncio.StreamReader]]:
    """Send GET `target` on a new connection to `socket`; the answer's head and a reader
    positioned at its body. Connection problems are EngineError."""
    try:
        async with asyncio.timeout(HEAD_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(socket, limit=MAX_LINE)
    except (OSError, TimeoutError) as e:
        raise EngineError(f"can not connect to {socket}: {why(e)}") from None
    try:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                writer.write(request_bytes(target))
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise EngineError(f"{socket} closed the connection without an answer") from None
        except asyncio.LimitOverrunError:
            raise EngineError(f"{socket}: answer head too large") from None
        except (OSError, TimeoutError) as e:
            raise EngineError(f"{socket}: {why(e)}") from None
        if len(head) > MAX_HEAD:
            raise EngineError(f"{socket}: answer head too large")
        yield parse_head(head), reader
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()


async def error_message(resp: Response, reader: asyncio.StreamReader) -> str:
    """One line from an error answer's body ({"message": ...} from the engine)."""
    data = b""
    with contextlib.suppress(EngineError, OSError, asyncio.IncompleteReadError,
                             asyncio.LimitOverrunError, TimeoutError):
        async with asyncio.timeout(HEAD_TIMEOUT):
            async for piece in body(reader, resp):
                data += piece
                if len(data) > 4096:
                    break
    try:
        msg = json.loads(data).get("message", "")
    except (ValueError, AttributeError):
        msg = data.decode("utf-8", "replace")
    first = " ".join(str(msg).split())[:200]
    return f"HTTP {resp.status}" + (f": {first}" if first else "")


async def get_body(socket: str, target: str, limit: int, *, cut: bool = False,
                   what: str = "the answer") -> bytes:
    """GET `target` and return the body of a 200 answer: at most `limit` bytes, or
    EngineError when it is larger (with `cut`, what came until the limit was passed)."""
    async with open_request(socket, target) as (resp, reader):
        if resp.status != 200:
            raise EngineError(f"GET {target.split('?')[0]}: "
                              + await error_message(resp, reader))
        data = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                async for piece in body(reader, resp):
                    data += piece
                    if len(data) > limit:
                        if cut:
                            break
                        raise EngineError(f"answer larger than {limit} bytes")
        except (OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            raise EngineError(f"{socket}: reading {what}: {why(e)}") from None
    return bytes(data)


async def get_json(socket: str, target: str) -> Any:
    """GET `target` and return the JSON document of a 200 answer."""
    data = await get_body(socket, target, MAX_BODY)
    try:
        return json.loads(data)
    except ValueError:
        raise EngineError(f"GET {target.split('?')[0]}: not JSON") from None


# -- containers --------------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    """One container of a compose project, as the engine lists it."""

    id: str
    name: str
    project: str
    service: str  # compose service
    state: str  # created, running, paused, restarting, removing, exited, dead
    health: str  # healthy, unhealthy, starting, or "" (no healthcheck)
    status: str  # the engine's words: "Up 3 minutes (healthy)", "Exited (1) 2 seconds ago"
    config_hash: str
    number: int
    oneoff: bool  # made by `compose run`: not part of what `up` maintains
    created: float


def health_of(status: str) -> str:
    """The health the engine's status line shows (the listing has no field of its own)."""
    if status.endswith("(healthy)"):
        return "healthy"
    if status.endswith("(unhealthy)"):
        return "unhealthy"
    if status.endswith("(health: starting)"):
        return "starting"
    return ""


def containers_from_listing(rows: Any) -> list[Container]:
    if not isinstance(rows, list):
        raise EngineError("container listing is not a list")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        labels = row.get("Labels") if isinstance(row.get("Labels"), dict) else {}
        assert isinstance(labels, dict)
        names = row.get("Names") if isinstance(row.get("Names"), list) else []
        assert isinstance(names, list)
        status = str(row.get("Status") or "")
        number = str(labels.get(NUMBER_LABEL, ""))
        out.append(Container(
            id=str(row.get("Id") or ""),
            name=str(names[0]).lstrip("/") if names else "",
            project=str(labels.get(PROJECT_LABEL, "")),
            service=str(labels.get(SERVICE_LABEL, "")),
            state=str(row.get("State") or ""),
            health=health_of(status),
            status=status,
            config_hash=str(labels.get(HASH_LABEL, "")),
            number=int(number) if number.isdigit() else 0,
            oneoff=str(labels.get(ONEOFF_LABEL, "")).lower() == "true",
            created=float(row.get("Created") or 0),
        ))
    return sorted(out, key=lambda c: (c.service, c.number, c.name))


async def containers(project: str, socket: str = ENGINE_SOCKET) -> list[Container]:
    """Every container of compose project `project`, running or not."""
    target = query("/containers/json", {"label": [f"{PROJECT_LABEL}={project}"]}, all="1")
    return containers_from_listing(await get_json(socket, target))


def why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# -- one container ------------------------------------------------------------------------

ID_RE = re.compile(r"[0-9a-f]{12,64}")
LOG_BYTES = 64 * 1024  # of a container's last log lines


def _container_path(cid: str, what: str) -> str:
    if not ID_RE.fullmatch(cid):
        raise EngineError(f"not a container id: {cid[:80]!r}")
    return f"/containers/{cid}/{what}"


async def inspect(cid: str, socket: str = ENGINE_SOCKET) -> dict[str, Any]:
    """`GET /containers/ID/json`: what `docker inspect` prints for one container."""
    doc = await get_json(socket, _container_path(cid, "json"))
    if not isinstance(doc, dict):
        raise EngineError(f"inspect {cid[:12]}: not an object")
    return doc


async def last_log_lines(cid: str, socket: str = ENGINE_SOCKET, lines: int = 5) -> str:
    """The container's last `lines` lines of output (stdout and stderr, as they came),
    at most LOG_BYTES of them."""
    target = query(_container_path(cid, "logs"), stdout="1", stderr="1", tail=str(lines))
    data = await get_body(socket, target, LOG_BYTES, cut=True, what="the logs")
    return demux(data).decode("utf-8", "replace")


def demux(data: bytes) -> bytes:
    """The payload of the engine's multiplexed log stream (a container without a TTY: each
    frame an 8-byte header, stream 0-2 and a big-endian length); other data as it is."""
    out = bytearray()
    pos = 0
    while pos + 8 <= len(data) and data[pos] in (0, 1, 2) and data[pos + 1:pos + 4] == b"\0\0\0":
        size = int.from_bytes(data[pos + 4:pos + 8], "big")
        out += data[pos + 8:pos + 8 + size]
        pos += 8 + size
    if pos == 0:
        return data
    return bytes(out)
