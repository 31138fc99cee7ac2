"""The engine's event stream: one connection for every service, typed container events.

    stream = EngineEvents()                       # the engine's socket by default
    async for event in stream:                    # forever; cancel the task to end it
        if isinstance(event, Connected):          # the stream (re)opened
            if event.reconnect: ...               # events may have been missed: reconcile all
        else: ...                                 # a ContainerEvent of a compose project
                                                  # or a swarm stack (swarm=True)

The request is `GET /events` with filters type=container and type=service (a swarm
stack's services) and the actions below, so the engine sends nothing else (no exec_*, no
network or image events); a container of neither a compose project nor a swarm stack is
dropped as it is read. While nothing happens nothing runs: the task waits in one read on the socket.
When the connection breaks (the engine restarts, a proxy drops it) or can not be made (no
engine yet), it is opened again after a delay that doubles from BACKOFF to BACKOFF_CAP; the
delay starts over once a connection has stayed up for STABLE seconds. Each outage is
logged once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pgo import engine
from pgo.engine import EngineError

log = logging.getLogger("pgo.events")

BACKOFF = 0.5
BACKOFF_CAP = 30.0
STABLE = 10.0  # a connection up this long resets the backoff


class Action(enum.StrEnum):
    """What happened to a container (the engine's action names; health as two actions)."""

    CREATE = "create"
    START = "start"
    RESTART = "restart"
    DIE = "die"
    STOP = "stop"
    KILL = "kill"
    OOM = "oom"
    DESTROY = "destroy"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    HEALTHY = "health_status: healthy"
    UNHEALTHY = "health_status: unhealthy"
    UPDATE = "update"  # a swarm service's spec or update state
    REMOVE = "remove"  # a swarm service


# The engine's event filter: action names, `health_status` matching every health action
WATCHED = ("create", "start", "restart", "die", "stop", "kill", "oom", "destroy", "pause",
           "unpause", "health_status")
# ... and of swarm services (type service): created, updated, removed
SERVICE_ACTIONS = ("create", "update", "remove")


@dataclass(frozen=True)
class ContainerEvent:
    action: Action
    project: str  # compose project (= pgo service name for the projects pgod runs)
    service: str  # compose service ("" when the container has no such label)
    container: str  # full container id
    name: str  # container name
    time: float  # when the engine saw it, seconds since the epoch
    exit_code: int | None = None  # die
    signal: int | None = None  # kill
    config_hash: str = ""  # compose's com.docker.compose.config-hash
    number: int = 0  # compose's container number
    oneoff: bool = False  # a `compose run` container
    # a swarm stack's: a task's container (project: the stack, service: the compose
    # service), or with `container` "" a swarm service itself (named `name`; its stack,
    # `project`, is the configured service whose name it starts with: watch.Dispatch)
    swarm: bool = False

    def describe(self) -> str:
        """One line: `container web-1 died (exit 137)`."""
        what = {
            Action.DIE: "died" + (f" (exit {self.exit_code})" if self.exit_code is not None
                                  else ""),
            Action.KILL: "was killed" + (f" (signal {self.signal})" if self.signal else ""),
            Action.OOM: "ran out of memory", Action.DESTROY: "was removed",
            Action.STOP: "was stopped", Action.UNHEALTHY: "turned unhealthy",
            Action.HEALTHY: "turned healthy", Action.START: "started",
            Action.CREATE: "was created", Action.RESTART: "was restarted",
            Action.PAUSE: "was paused", Action.UNPAUSE: "was unpaused",
            Action.UPDATE: "was updated", Action.REMOVE: "was removed",
        }[self.action]
        if self.swarm and not self.container:
            return f"swarm service {self.name} {what}"
        return f"{'task container' if self.swarm else 'container'} " \
               f"{self.name or self.container[:12]} {what}"


@dataclass(frozen=True)
class Connected:
    """The stream is open. `reconnect`: it had been lost (or never opened), so events may
    have been missed: reconcile every service once. False only for the first connection
    made without an outage before it (start-up reconciles every service anyway)."""

    reconnect: bool


Event = ContainerEvent | Connected


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.lstrip("-").isdigit() else None


def parse_event(doc: Any) -> ContainerEvent | None:
    """A typed event from one JSON object of the stream; None for anything else (another
    type, an action not watched, a container of neither a compose project nor a stack)."""
    if not isinstance(doc, dict):
        return None
    kind = doc.get("Type", "container")
    try:
        action = Action(str(doc.get("Action") or doc.get("status") or ""))
    except ValueError:
        return None
    actor = _table(doc.get("Actor"))
    attrs = _table(actor.get("Attributes"))
    nano = doc.get("timeNano")
    at = nano / 1e9 if isinstance(nano, int) else float(doc.get("time") or 0)
    if kind == "service":
        name = str(attrs.get("name") or "")
        if action.value not in SERVICE_ACTIONS or not name:
            return None
        return ContainerEvent(action=action, project="", service="", container="",
                              name=name, time=at, swarm=True)
    if kind != "container" or action in (Action.UPDATE, Action.REMOVE):
        return None
    project = str(attrs.get(engine.PROJECT_LABEL) or "")
    service = str(attrs.get(engine.SERVICE_LABEL) or "")
    swarm = False
    if not project:  # (a swarm task's container: its stack, and its service in the stack)
        project = str(attrs.get(engine.STACK_LABEL) or "")
        service = str(attrs.get(engine.SWARM_SERVICE_LABEL) or "").removeprefix(project + "_")
        swarm = True
        if not project:
            return None
    number = _int(attrs.get(engine.NUMBER_LABEL))
    return ContainerEvent(
        action=action,
        project=project,
        service=service,
        container=str(actor.get("ID") or doc.get("id") or ""),
        name=str(attrs.get("name") or ""),
        time=at,
        exit_code=_int(attrs.get("exitCode")) if action is Action.DIE else None,
        signal=_int(attrs.get("signal")) if action is Action.KILL else None,
        config_hash=str(attrs.get(engine.HASH_LABEL) or ""),
        number=number or 0,
        oneoff=str(attrs.get(engine.ONEOFF_LABEL) or "").lower() == "true",
        swarm=swarm,
    )


def events_target() -> str:
    """Container events (those of neither a compose project nor a stack are dropped when
    read: the engine's label filters all have to match, and containers carry one label or
    the other) and swarm services' (none when the engine is in no swarm)."""
    return engine.query("/events", {"type": ["container", "service"],
                                    "event": sorted({*WATCHED, *SERVICE_ACTIONS})})


class EngineEvents:
    """The engine's container events, forever, across engine restarts (see the module)."""

    def __init__(self, socket: str = engine.ENGINE_SOCKET, *, backoff: float = BACKOFF,
                 backoff_cap: float = BACKOFF_CAP, stable: float = STABLE,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.socket = socket
        self.sleep = sleep
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.stable = stable
        self.connects = 0  # connections that got the stream (for tests and status)
        self.connected = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.stream()

    async def stream(self) -> AsyncIterator[Event]:
        delay = self.backoff
        lost_at: float | None = None  # monotonic time of the outage's start
        missed = False  # an outage (or a failed first attempt) came before this connection
        while True:
            opened = time.monotonic()
            try:
                async with engine.open_request(self.socket, events_target()) as (resp, reader):
                    if resp.status != 200:
                        raise EngineError("GET /events: "
                                          + await engine.error_message(resp, reader))
                    self.connects += 1
                    self.connected = True
                    if lost_at is not None:
                        log.info("docker engine events at %s: connected again after %.1fs",
                                 self.socket, time.monotonic() - lost_at)
                        lost_at = None
                    else:
                        log.debug("docker engine events at %s: connected", self.socket)
                    yield Connected(reconnect=missed)
                    missed = True
                    async for line in engine.lines(engine.body(reader, resp)):
                        event = self._decode(line)
                        if event is not None:
                            yield event
                    raise EngineError("the engine ended the event stream")
            except (EngineError, OSError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError) as e:
                self.connected = False
                missed = True
                why = str(e) if isinstance(e, EngineError) else engine.why(e)
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("docker engine events at %s: %s; reconnecting (every %gs "
                                "at most)", self.socket, why, self.backoff_cap)
                else:
                    log.debug("docker engine events at %s: %s", self.socket, why)
            if time.monotonic() - opened >= self.stable:
                delay = self.backoff
            await self.sleep(delay)
            delay = min(delay * 2, self.backoff_cap)

    @staticmethod
    def _decode(line: bytes) -> ContainerEvent | None:
        try:
            doc = json.loads(line)
        except ValueError:
            log.debug("docker engine events: a line that is not JSON, skipped")
            return None
        return parse_event(doc)
