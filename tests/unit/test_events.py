"""The engine's event stream, the pure parts: HTTP framing (chunked, Content-Length, until
close) whatever the read boundaries, typed events from a stream captured from the real
engine (Debian's docker.io 20.10), and the container listing. The stream against the real
engine, and its reconnects, are in tests/e2e/test_events.py."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from pgo import engine, events
from pgo.engine import EngineError
from pgo.events import Action, ContainerEvent, parse_event

CAPTURE = Path(__file__).resolve().parents[1] / "testdata" / "engine-events.http"


def feed(data: bytes, pieces: int = 1, seed: int = 0) -> asyncio.StreamReader:
    """A reader holding `data`, fed in `pieces` random slices, then the end."""
    reader = asyncio.StreamReader(limit=engine.MAX_LINE)
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(data)), pieces - 1)) if pieces > 1 else []
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        reader.feed_data(data[a:b])
    reader.feed_eof()
    return reader


async def read_lines(raw: bytes, pieces: int = 1, seed: int = 0) -> list[bytes]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    resp = engine.parse_head(head + sep)
    reader = feed(rest, pieces, seed)
    out = []
    with pytest.raises(asyncio.IncompleteReadError):  # the capture ends mid-stream
        async for line in engine.lines(engine.body(reader, resp)):
            out.append(line)
    return out


def test_capture_decodes_into_json_lines_whatever_the_read_boundaries() -> None:
    raw = CAPTURE.read_bytes()
    whole = asyncio.run(read_lines(raw))
    assert len(whole) > 20
    assert all(isinstance(json.loads(line), dict) for line in whole)
    for seed in range(5):
        assert asyncio.run(read_lines(raw, pieces=300, seed=seed)) == whole


def typed() -> list[ContainerEvent]:
    lines = asyncio.run(read_lines(CAPTURE.read_bytes()))
    return [e for e in (parse_event(json.loads(x)) for x in lines) if e is not None]


def test_typed_events_of_the_capture() -> None:
    evs = typed()
    seen = [(e.service, e.action) for e in evs]
    # exec_* (healthcheck probes) are not events pgod watches
    assert ("web", Action.UNHEALTHY) in seen and ("hog", Action.OOM) in seen
    assert seen.index(("web", Action.STOP)) > seen.index(("web", Action.UNHEALTHY))
    job_die = next(e for e in evs if e.service == "job" and e.action is Action.DIE)
    assert job_die.exit_code == 0 and job_die.signal is None
    hog_die = next(e for e in evs if e.service == "hog" and e.action is Action.DIE)
    assert hog_die.exit_code == 137
    kills = [e.signal for e in evs if e.action is Action.KILL]
    assert kills == [15, 9]  # docker stop: TERM, then KILL after the grace period
    web = next(e for e in evs if e.service == "web")
    assert web.project == "evcap2" and web.name == "evcap2-web-1" and web.number == 1
    assert len(web.container) == 64 and len(web.config_hash) == 64 and not web.oneoff
    assert 1.7e9 < web.time < 2e9 and web.time != int(web.time)  # from timeNano
    assert [e.action for e in evs if e.service == "web"][-1] is Action.DESTROY


@pytest.mark.parametrize("doc", [
    {"Type": "network", "Action": "connect", "Actor": {"Attributes": {
        "com.docker.compose.project": "p"}}},
    {"Type": "container", "Action": "exec_start: sh", "Actor": {"Attributes": {
        "com.docker.compose.project": "p"}}},
    {"Type": "container", "Action": "die", "Actor": {"Attributes": {"name": "x"}}},
    {"Type": "container", "Action": "health_status: starting",
     "Actor": {"Attributes": {"com.docker.compose.project": "p"}}},
    {"Type": "container", "Action": "die", "Actor": "nonsense"},
    [], "die", None,
])
def test_what_is_not_a_watched_compose_event(doc: object) -> None:
    assert parse_event(doc) is None


def test_event_with_odd_attributes() -> None:
    e = parse_event({"Type": "container", "Action": "die", "time": 1700000000,
                     "Actor": {"ID": "abc", "Attributes": {
                         "com.docker.compose.project": "p", "exitCode": "x1",
                         "com.docker.compose.oneoff": "True",
                         "com.docker.compose.container-number": "n"}}})
    assert e is not None
    assert (e.exit_code, e.number, e.oneoff, e.time, e.service) == (None, 0, True, 1.7e9, "")
    assert e.describe() == "container abc died"


def test_describe() -> None:
    base = dict(project="p", service="web", container="c" * 64, name="p-web-1", time=0.0)
    assert ContainerEvent(Action.DIE, exit_code=1, **base).describe() == \
        "container p-web-1 died (exit 1)"  # type: ignore[arg-type]
    assert ContainerEvent(Action.KILL, signal=9, **base).describe() == \
        "container p-web-1 was killed (signal 9)"  # type: ignore[arg-type]
    for action in Action:
        assert ContainerEvent(action, **base).describe()  # type: ignore[arg-type]


def test_the_request_asks_the_engine_to_filter() -> None:
    target = events.events_target()
    path, _, query = target.partition("?")
    assert path == "/events"  # unversioned: newer engines refuse old pinned versions
    from urllib.parse import parse_qs
    filters = json.loads(parse_qs(query)["filters"][0])
    assert filters["type"] == ["container", "service"]  # (a swarm stack's services)
    assert "label" not in filters  # (the engine ANDs labels: compose's or the stack's)
    assert {"remove", "update"} <= set(filters["event"])
    assert "health_status" in filters["event"] and "exec_start" not in filters["event"]
    assert b"HTTP/1.1\r\nHost: docker\r\n" in engine.request_bytes(target)


# -- framing ---------------------------------------------------------------------------

async def whole(head: bytes, body: bytes, pieces: int = 1) -> bytes:
    resp = engine.parse_head(head)
    out = b""
    async for piece in engine.body(feed(body, pieces) if body else feed(b"\n"), resp):
        out += piece
    return out


def test_content_length_and_until_close_bodies() -> None:
    doc = b'[{"Id": "x"}]'
    assert asyncio.run(whole(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", doc, 4)) == doc
    assert asyncio.run(whole(b"HTTP/1.0 200 OK\r\n\r\n", doc, 3)) == doc


def test_chunked_with_extensions_and_trailer() -> None:
    body = b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert asyncio.run(whole(head, body, 7)) == b"hello world"


@pytest.mark.parametrize("head, body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\nhello\r\n"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhelloXX"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", b"x"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", b"x"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"short"),
])
def test_broken_framing_is_an_engine_error(head: bytes, body: bytes) -> None:
    with pytest.raises(EngineError):
        asyncio.run(whole(head, body))


@pytest.mark.parametrize("head", [b"SSH-2.0-OpenSSH\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n"])
def test_not_http(head: bytes) -> None:
    with pytest.raises(EngineError):
        engine.parse_head(head)


def test_an_endless_line_is_refused() -> None:
    async def go() -> None:
        async def chunks():  # type: ignore[no-untyped-def]
            while True:
                yield b"x" * 65536

        async for _ in engine.lines(chunks(), limit=1 << 20):
            pass

    with pytest.raises(EngineError, match="longer than"):
        asyncio.run(go())


# -- containers ------------------------------------------------------------------------

def test_container_listing() -> None:
    rows = [
        {"Id": "b" * 64, "Names": ["/p-web-2"], "State": "running",
         "Status": "Up 3 minutes (healthy)", "Created": 1700000000,
         "Labels": {"com.docker.compose.project": "p", "com.docker.compose.service": "web",
                    "com.docker.compose.container-number": "2",
                    "com.docker.compose.config-hash": "h" * 64}},
        {"Id": "a" * 64, "Names": ["/p-web-1"], "State": "exited",
         "Status": "Exited (1) 2 seconds ago",
         "Labels": {"com.docker.compose.project": "p", "com.docker.compose.service": "web",
                    "com.docker.compose.container-number": "1",
                    "com.docker.compose.oneoff": "False"}},
        {"Id": "c", "Names": [], "State": "running", "Status": "Up (health: starting)",
         "Labels": None},
        "garbage",
    ]
    got = engine.containers_from_listing(rows)
    assert [c.name for c in got] == ["", "p-web-1", "p-web-2"]
    assert [c.health for c in got] == ["starting", "", "healthy"]
    assert got[2].number == 2 and got[2].config_hash == "h" * 64 and got[2].created == 1.7e9
    assert not got[1].oneoff and got[1].state == "exited"
    with pytest.raises(EngineError):
        engine.containers_from_listing({"message": "x"})


# -- reconnecting ----------------------------------------------------------------------

def test_backoff_doubles_up_to_its_cap_while_there_is_no_engine(tmp_path: Path) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) >= 10:
            raise asyncio.CancelledError

    async def go() -> None:
        stream = events.EngineEvents(str(tmp_path / "no-engine.sock"), sleep=sleep)
        async for _ in stream:
            raise AssertionError("no engine, no event")

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
