"""The engine's event stream against the real engine: a compose project's containers are
created, turn unhealthy, are killed and removed, and the typed events arrive; a connection
cut in the middle (a proxy in front of the real socket, and a server of the test's own that
replays a stream captured from the real engine and hangs up) is opened again and reported;
an engine that is not there at first is waited for.

dockerd itself is never stopped here: other test runs share it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pgo import engine
from pgo.events import Action, Connected, ContainerEvent, EngineEvents, Event, parse_event
from tests.e2e import harness as h

CAPTURE = Path(__file__).resolve().parents[1] / "testdata" / "engine-events.http"

PROJECT = """\
services:
  web:
    image: pgoimg/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 1
  job:
    image: pgoimg/busybox:1
    command: ["true"]
"""


class Collector:
    """Runs an EngineEvents stream in a loop of its own (a thread) and keeps what arrives."""

    def __init__(self, socket: str = engine.ENGINE_SOCKET, **kw: Any) -> None:
        self.stream = EngineEvents(socket, **kw)
        self.got: list[Event] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Task[None] | None = None

    def _run(self) -> None:
        async def consume() -> None:
            async for event in self.stream:
                with self.lock:
                    self.got.append(event)

        self.task = self.loop.create_task(consume())
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())

    def start(self) -> Collector:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)
        self.loop.close()

    def events(self) -> list[Event]:
        with self.lock:
            return list(self.got)

    def of(self, project: str) -> list[ContainerEvent]:
        return [e for e in self.events() if isinstance(e, ContainerEvent)
                and e.project == project]

    def wait(self, cond: Callable[[], Any], what: str) -> Any:
        return h.wait_until(cond, 60, what)


@pytest.fixture
def collector() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(*args: Any, **kw: Any) -> Collector:
        c = Collector(*args, **kw).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def compose(base: Path, name: str, *args: str) -> None:
    (base / "compose.yaml").write_text(PROJECT)
    h.run("docker", "compose", "-p", name, "-f", str(base / "compose.yaml"), *args)


def test_typed_events_of_a_real_project(base, projects, collector):
    name = h.unique("ev")
    projects.append(name)
    c = collector()
    c.wait(lambda: c.events(), "the stream to open")
    assert c.events()[0] == Connected(reconnect=False)
    compose(base, name, "up", "-d")
    web = c.wait(lambda: next((e for e in c.of(name) if e.service == "web"
                               and e.action is Action.START), None), "web's start")
    assert web.name == f"{name}-web-1" and web.number == 1 and len(web.config_hash) == 64
    job = c.wait(lambda: next((e for e in c.of(name) if e.service == "job"
                               and e.action is Action.DIE), None), "job's end")
    assert job.exit_code == 0
    c.wait(lambda: any(e.action is Action.UNHEALTHY for e in c.of(name)), "unhealthy")

    h.run("docker", "kill", f"{name}-web-1")
    c.wait(lambda: any(e.action is Action.DIE and e.service == "web" for e in c.of(name)),
           "web's death")
    h.run("docker", "rm", "-f", f"{name}-web-1")
    c.wait(lambda: any(e.action is Action.DESTROY for e in c.of(name)), "web's removal")

    web_events = [e for e in c.of(name) if e.service == "web"]
    actions = [e.action for e in web_events]
    assert actions.index(Action.KILL) < actions.index(Action.DIE) < actions.index(
        Action.DESTROY)
    kill = next(e for e in web_events if e.action is Action.KILL)
    die = next(e for e in web_events if e.action is Action.DIE)
    assert (kill.signal, die.exit_code) == (9, 137)
    assert {e.container for e in web_events} == {web.container}
    # only the watched actions come (healthcheck probes, exec_*, are filtered by the engine)
    assert all(isinstance(e.action, Action) for e in c.of(name))
    assert c.stream.connects == 1


# -- a connection cut in the middle, through a proxy in front of the real engine -----------

class Proxy:
    """A unix socket that forwards each connection to the real engine; cut() ends them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.writers: list[asyncio.StreamWriter] = []
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        w.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        er, ew = await asyncio.open_unix_connection(engine.ENGINE_SOCKET)
        self.writers += [writer, ew]
        await asyncio.gather(self._pipe(reader, ew), self._pipe(er, writer))

    def start(self) -> Proxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._handle, str(self.path)), self.loop).result(10)
        return self

    def cut(self) -> None:
        def abort() -> None:
            for w in self.writers:
                w.transport.abort()
            self.writers.clear()
        self.loop.call_soon_threadsafe(abort)

    def close(self) -> None:
        async def shut() -> None:
            if self.server is not None:
                self.server.close()
                await self.server.wait_closed()
            for w in self.writers:
                w.transport.abort()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_a_cut_connection_is_opened_again_and_said(base, projects, collector, caplog):
    caplog.set_level(logging.INFO, "pgo.events")
    name = h.unique("ev")
    projects.append(name)
    proxy = Proxy(base / "engine.sock").start()
    try:
        c = collector(str(proxy.path))
        c.wait(lambda: c.events(), "the stream to open")
        compose(base, name, "up", "-d")
        c.wait(lambda: any(e.action is Action.START for e in c.of(name)), "a start")
        proxy.cut()
        c.wait(lambda: Connected(reconnect=True) in c.events(), "the reconnect")
        assert proxy.accepted == 2
        h.run("docker", "rm", "-f", f"{name}-web-1")
        c.wait(lambda: any(e.action is Action.DESTROY for e in c.of(name)),
               "the removal, seen on the new connection")
        lost = [r for r in caplog.records if "reconnecting" in r.getMessage()]
        back = [r for r in caplog.records if "connected again" in r.getMessage()]
        assert len(lost) == 1 and lost[0].levelno == logging.WARNING
        assert len(back) == 1
    finally:
        proxy.close()


# -- a server of the test's own that replays a captured real stream and hangs up ------------

class Replay:
    """Answers GET /events on a unix socket with the captured stream, then closes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[str] = []
        self.capture = CAPTURE.read_bytes()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.decode().split("\r\n")[0])
        for i in range(0, len(self.capture), 700):  # in pieces, as a socket delivers
            writer.write(self.capture[i:i + 700])
            await writer.drain()
        writer.close()

    async def serve(self) -> asyncio.Server:
        return await asyncio.start_unix_server(self.handle, str(self.path))


async def take(stream: EngineEvents, n: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(60):
        async for event in stream:
            out.append(event)
            if len(out) == n:
                return out
    return out


def captured_events() -> list[ContainerEvent]:
    """The typed events in the capture, decoded here without the client."""
    _, _, body = CAPTURE.read_bytes().partition(b"\r\n\r\n")
    docs = [json.loads(line) for line in body.split(b"\r\n") if line.startswith(b"{")]
    return [e for e in map(parse_event, docs) if e is not None]


def test_a_replayed_stream_that_hangs_up(tmp_path):
    replay = Replay(tmp_path / "engine.sock")
    expected = captured_events()
    assert len(expected) > 10

    async def go() -> list[Event]:
        server = await replay.serve()
        try:
            return await take(EngineEvents(str(replay.path), backoff=0.05),
                              2 * (len(expected) + 1))
        finally:
            server.close()

    got = asyncio.run(go())
    assert got == [Connected(reconnect=False), *expected, Connected(reconnect=True), *expected]
    actions = [e.action for e in expected]
    assert Action.OOM in actions and Action.UNHEALTHY in actions and Action.STOP in actions
    method, target, _ = replay.requests[0].split(" ")
    filters = json.loads(parse_qs(urlsplit(target).query)["filters"][0])
    assert method == "GET" and urlsplit(target).path == "/events"
    assert filters["type"] == ["container", "service"] and "die" in filters["event"]


def test_an_engine_that_is_not_there_at_first(tmp_path, caplog):
    caplog.set_level(logging.INFO, "pgo.events")
    replay = Replay(tmp_path / "later.sock")

    async def go() -> list[Event]:
        stream = EngineEvents(str(replay.path), backoff=0.05, backoff_cap=0.2)
        first = asyncio.create_task(take(stream, 3))
        async with asyncio.timeout(60):  # the failed first attempt, logged
            while not any("reconnecting" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert not first.done()
        server = await replay.serve()
        try:
            return await first
        finally:
            server.close()

    got = asyncio.run(go())
    # events may have been missed while there was no engine: the caller reconciles all
    assert got[0] == Connected(reconnect=True)
    assert all(isinstance(e, ContainerEvent) for e in got[1:])
    assert sum("can not connect" in r.getMessage() for r in caplog.records) == 1
