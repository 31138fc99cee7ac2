"""The health gate: after `up`, watch the project until it is healthy or a deadline passes.

Healthy: every container of every compose service of the model is running; those with a
healthcheck report `healthy`; none exited or restarted since the deploy began, and each has
run for the settle time since it (last) started. A one-shot container (drift.oneshot_services:
`restart: "no"`, or one another service waits for with `condition:
service_completed_successfully`) that exited with 0 is done. Failed, at once: a container
exited (but a one-shot with 0), restarted, died, or turned unhealthy; at the deadline:
whatever is still awaited.

    gate = Gate(project, Expect.of(model, settle), timeout, belongs=...)
    result = await gate.watch(since)      # since: the time the deploy began (epoch)

The engine is watched through its API socket: the project's events (die, start, health
status...) wake the gate, and each look is a listing and an inspect of every container
(State.Status, State.Health with its probes' output, RestartCount, ExitCode, StartedAt), so
nothing is polled in a tight loop. A look is also taken every FALLBACK seconds and when a
container's settle time ends. Without the API (a docker context of the service's own), the
docker CLI is asked every POLL seconds instead. `assess` is pure: the readings in, the
verdict out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgo import drift, engine, events
from pgo.errors import PgoError
from pgo.logtext import untrusted

if TYPE_CHECKING:
    from pgo.compose import Model, Project

FALLBACK = 2.0  # a look without an event, while the engine's events are watched
POLL = 1.0  # a look, when only the docker CLI can be asked
CONNECT_WAIT = 1.0  # how long the first look waits for the event stream to open
REASON = 240  # characters of a reason (a container's name, its exit, its last line)


@dataclass(frozen=True)
class Probe:
    """One container as inspected."""

    id: str
    name: str
    service: str  # compose service
    oneoff: bool  # a `compose run` container: not the project's
    status: str  # running, exited, restarting, created, paused, dead, removing
    health: str = ""  # starting, healthy, unhealthy; "" without a healthcheck
    probe_output: str = ""  # the health probe's last output, its last line
    restarts: int = 0  # RestartCount
    exit_code: int = 0
    oom: bool = False
    created: float = 0.0  # seconds since the epoch
    started: float = 0.0  # 0: never started


def _epoch(text: Any) -> float:
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def probe(doc: Mapping[str, Any]) -> Probe | None:
    """A Probe of what the engine's inspect says of one container; None when it is not a
    compose container."""
    config = doc.get("Config") if isinstance(doc.get("Config"), dict) else {}
    assert isinstance(config, dict)
    labels = config.get("Labels") if isinstance(config.get("Labels"), dict) else {}
    assert isinstance(labels, dict)
    state = doc.get("State") if isinstance(doc.get("State"), dict) else {}
    assert isinstance(state, dict)
    if engine.SERVICE_LABEL not in labels:
        return None
    health = state.get("Health") if isinstance(state.get("Health"), dict) else {}
    assert isinstance(health, dict)
    log = health.get("Log") if isinstance(health.get("Log"), list) else []
    assert isinstance(log, list)
    output = ""
    if log and isinstance(log[-1], dict):
        output = last_line(str(log[-1].get("Output") or ""))
    restarts, code = doc.get("RestartCount"), state.get("ExitCode")
    status = str(health.get("Status") or "")
    return Probe(
        id=str(doc.get("Id") or ""),
        name=str(doc.get("Name") or "").lstrip("/"),
        service=str(labels.get(engine.SERVICE_LABEL) or ""),
        oneoff=str(labels.get(engine.ONEOFF_LABEL, "")).lower() == "true",
        status=str(state.get("Status") or ""),
        health=status if status in ("starting", "healthy", "unhealthy") else "",
        probe_output=output,
        restarts=restarts if isinstance(restarts, int) else 0,
        exit_code=code if isinstance(code, int) else 0,
        oom=state.get("OOMKilled") is True,
        created=_epoch(doc.get("Created")),
        started=_epoch(state.get("StartedAt")),
    )


@dataclass(frozen=True)
class Expect:
    """What a healthy project has: containers per compose service, its one-shots."""

    scale: Mapping[str, int]
    oneshot: frozenset[str]
    settle: float

    @classmethod
    def of(cls, model: Model, settle: float) -> Expect:
        return cls(drift.expected_scale(model.data), drift.oneshot_services(model.data),
                   settle)


@dataclass(frozen=True)
class Reading:
    """One look at the project: healthy; failed (`failed` names the container, `why` says
    what happened); or neither yet (`why`: what is awaited, `settles_at`: when the last
    container's settle time ends, 0 when none is running towards it)."""

    healthy: bool
    why: str = ""
    failed: Probe | None = None
    settles_at: float = 0.0
    fetch_log: bool = False  # the container's last log line would say why


def assess(expect: Expect, probes: Sequence[Probe], base: Mapping[str, int], since: float,
           now: float) -> Reading:
    """The project's health from `probes` (its containers, inspected now). `base`: each
    container's RestartCount when the gate first saw it (one made since `since`, the
    deploy's start, is new: 0)."""
    mine = [p for p in probes if not p.oneoff and p.service in expect.scale]
    waiting: list[str] = []
    settles_at = 0.0
    count: dict[str, int] = {}
    for p in mine:
        count[p.service] = count.get(p.service, 0) + 1
        restarts = p.restarts - (0 if p.created >= since else base.get(p.id, p.restarts))
        if restarts > 0 or p.status == "restarting":
            times = f" {restarts} times" if restarts > 1 else ""
            return Reading(False, f"container {p.name} restarted{times} (exit code "
                           f"{p.exit_code}{', out of memory' if p.oom else ''})", p,
                           fetch_log=True)
        if p.status in ("exited", "dead"):
            if p.service in expect.oneshot and p.exit_code == 0 and p.status == "exited":
                continue  # a one-shot that is done
            if p.oom:
                return Reading(False, f"container {p.name} ran out of memory (exit code "
                               f"{p.exit_code})", p, fetch_log=True)
            return Reading(False, f"container {p.name} exited with code {p.exit_code}", p,
                           fetch_log=True)
        if p.health == "unhealthy":
            return Reading(False, f"container {p.name} is unhealthy"
                           + (f": {p.probe_output}" if p.probe_output else ""), p)
        if p.status != "running":
            waiting.append(f"container {p.name} is {p.status or 'in no known state'}")
            continue
        if p.health == "starting":
            waiting.append(f"container {p.name} is not healthy yet (health: starting"
                           + (f"; last probe: {p.probe_output}" if p.probe_output else "")
                           + ")")
            continue
        ends = p.started + expect.settle
        if ends > now:
            settles_at = max(settles_at, ends)
            waiting.append(f"container {p.name} has run {max(0.0, now - p.started):.1f}s of "
                           f"the settle time of {expect.settle:g}s")
    for service, want in sorted(expect.scale.items()):
        have = count.get(service, 0)
        if have < want:
            waiting.insert(0, f"compose service {service} has {have} of {want} container"
                           + ("s" if want > 1 else ""))
    if waiting:
        return Reading(False, waiting[0], settles_at=settles_at)
    return Reading(True)


@dataclass(frozen=True)
class Result:
    healthy: bool
    reason: str  # failed: one line, which container and why; healthy: "healthy"
    took: float  # seconds the gate watched


class Gate:
    """Watches one project after `up` (see the module)."""

    def __init__(self, project: Project, expect: Expect, timeout: float, *,
                 belongs: Callable[[str], bool] | None = None,
                 log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
                 poll: float = POLL, fallback: float = FALLBACK,
                 clock: Callable[[], float] = time.time,
                 progress: Callable[[str], None] | None = None) -> None:
        self.project = project
        self.expect = expect
        self.timeout = timeout
        self.belongs = belongs or (lambda name: True)
        self.log = log or logging.getLogger("pgo.health")
        self.poll = poll
        self.fallback = fallback
        self.clock = clock
        self.progress = progress or (lambda text: None)
        self.base: dict[str, int] = {}

    async def watch(self, since: float) -> Result:
        """Watch until healthy, failed, or `timeout` seconds from now."""
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        wake = asyncio.Event()
        socket = self.project.engine_socket
        connected = asyncio.Event()
        listener = asyncio.create_task(self._listen(socket, wake, connected)) if socket \
            else None
        try:
            if listener is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONNECT_WAIT):
                        await connected.wait()
            while True:
                wake.clear()
                reading = await self.look(since)
                if reading.healthy:
                    return Result(True, "healthy", time.monotonic() - t0)
                if reading.failed is not None:
                    return Result(False, await self._why(reading), time.monotonic() - t0)
                left = deadline - time.monotonic()
                if left <= 0:
                    return Result(False, f"not healthy after {self.timeout:g}s: "
                                  f"{reading.why}", time.monotonic() - t0)
                self.progress(reading.why)
                listening = listener is not None and not listener.done()
                delay = min(left, self.fallback if listening else self.poll)
                if reading.settles_at:
                    delay = min(delay, max(0.05, reading.settles_at - self.clock() + 0.01))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def look(self, since: float) -> Reading:
        listing = [c for c in await self.project.containers()
                   if not c.oneoff and self.belongs(c.name)]
        docs = await self.project.inspect([c.id for c in listing])
        probes = [p for p in (probe(d) for d in docs) if p is not None]
        for p in probes:
            self.base.setdefault(p.id, p.restarts)
        return assess(self.expect, probes, self.base, since, self.clock())

    async def _why(self, reading: Reading) -> str:
        why = reading.why
        failed = reading.failed
        if reading.fetch_log and failed is not None:
            try:
                line = last_line(await self.project.last_log_lines(failed.id))
            except (PgoError, OSError):
                line = ""
            if line:
                why += f": {line}"
        return untrusted(why, REASON)

    async def _listen(self, socket: str | None, wake: asyncio.Event,
                      connected: asyncio.Event) -> None:
        """Set `wake` on every event of the project; end (the gate falls back to looking
        every POLL seconds) when the stream breaks."""
        assert socket is not None
        target = engine.query("/events", {
            "type": ["container"], "event": list(events.WATCHED),
            "label": [f"{engine.PROJECT_LABEL}={self.project.name}"]})
        try:
            async with engine.open_request(socket, target) as (resp, reader):
                if resp.status != 200:
                    raise engine.EngineError("GET /events: "
                                             + await engine.error_message(resp, reader))
                connected.set()
                async for _line in engine.lines(engine.body(reader, resp)):
                    wake.set()
        except (PgoError, OSError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            self.log.debug("health gate: the engine's events: %s; looking every %gs", e,
                           self.poll)
        finally:
            connected.set()
            wake.set()
