"""The health gate of a stack: a deploy is good when every service of the stack has
converged within the deadline: its update completed (swarm's UpdateStatus, when the deploy
changed it), its desired number of tasks running (a task of a service with a healthcheck
runs only once it is healthy: swarm holds it in `starting` until then), each for the
settle time. Failed at once: a task of the stack that failed or was rejected since the
deploy began (its error says why), or an update swarm paused or rolled back by itself
(`update_config.failure_action`); at the deadline: whatever is still awaited.

`assess` is pure: the engine's documents of the stack's services and tasks in, the
verdict out. `watch` looks every `poll` seconds until healthy, failed or the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgo.health import Result
from pgo.health import _epoch as epoch  # (the engine's timestamps, read once)
from pgo.logtext import untrusted
from pgo.swarm.drift import dig, failures

FAILED_UPDATES = ("paused", "rollback_started", "rollback_paused", "rollback_completed")


@dataclass(frozen=True)
class Reading:
    healthy: bool
    why: str = ""
    failed: bool = False


def desired(service: Mapping[str, Any]) -> int | None:
    """The tasks a service wants running; None for a global service (one per node)."""
    n = dig(service, "Spec", "Mode", "Replicated", "Replicas")
    return n if isinstance(n, int) else None


def assess(stack: str, expected: Sequence[str], services: Sequence[Mapping[str, Any]],
           tasks: Sequence[Mapping[str, Any]], since: float, now: float, settle: float
           ) -> Reading:
    """The stack's health: `expected` are the compose services of the model, whose swarm
    services are STACK_SERVICE; `services` and `tasks` as the engine's API lists them."""
    by_name = {str(dig(s, "Spec", "Name")): s for s in services}
    waiting: list[str] = []
    for name in expected:
        full = f"{stack}_{name}"
        svc = by_name.get(full)
        if svc is None:
            waiting.append(f"{name}: no swarm service yet")
            continue
        update = dig(svc, "UpdateStatus", "State")
        message = str(dig(svc, "UpdateStatus", "Message") or "")
        if update in FAILED_UPDATES:
            return Reading(False, untrusted(f"{name}: swarm's update {update}"
                                            + (f": {message}" if message else ""), 240), True)
        mine = [t for t in tasks if t.get("ServiceID") == svc.get("ID")]
        failed = [f for f in failures([svc], mine) if f.at >= since]
        if failed:
            return Reading(False, untrusted(f"{name}: task {failed[0].name} {failed[0].why}",
                                            240), True)
        if update in ("updating", "rollback_started"):
            waiting.append(f"{name}: update {update}")
            continue
        running = [t for t in mine if t.get("DesiredState") == "running"
                   and dig(t, "Status", "State") == "running"]
        settled = [t for t in running
                   if now - epoch(dig(t, "Status", "Timestamp")) >= settle]
        want = desired(svc)
        live = [t for t in mine if t.get("DesiredState") == "running"]
        need = want if want is not None else max(len(live), 1)
        if len(settled) < need:
            what = "running" if len(running) < need else "settled"
            waiting.append(f"{name}: {len(running if what == 'running' else settled)} of "
                           f"{need} task(s) {what}")
    if waiting:
        return Reading(False, untrusted("; ".join(waiting), 240))
    return Reading(True, f"{len(expected)} swarm service(s) converged")


Look = Callable[[], Awaitable[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]


async def watch(stack: str, expected: Sequence[str], look: Look, timeout: float,
                settle: float, since: float, *, poll: float = 1.0,
                progress: Callable[[str], None] | None = None) -> Result:
    """Look at the stack until it is healthy, fails, or `timeout` seconds pass."""
    t0 = time.monotonic()
    reading = Reading(False, "not looked at yet")
    while True:
        services, tasks = await look()
        reading = assess(stack, expected, services, tasks, since, time.time(), settle)
        if reading.healthy or reading.failed:
            return Result(reading.healthy, reading.why, time.monotonic() - t0)
        if progress is not None:
            progress(reading.why)
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return Result(False, f"not converged within {timeout:g}s: {reading.why}",
                          time.monotonic() - t0)
        await asyncio.sleep(min(poll, left))
