"""The status page's data from the live daemon: a statuspage.Snapshot of every tracked
service, taken when the page is asked for (httpd.StatusProvider).

What a service shows, worst first:

    deploying   a deploy, its health gate, a rollback or a drift repair is under way
    held        the stop file, //down, //stop
    failed      a crash loop (of repairs, or of a swarm stack's tasks); the commit failed
                (its first deploy, or rolled back from); the last pass failed
    refused     upstream's commit was refused (policy, a model that does not load,
                secrets that do not decrypt)
    frozen      //freeze or //rollback
    stopped     nothing runs
    running     what runs is what upstream says (a swarm task that failed within the
                last minutes and was replaced by swarm is said)

Every reason is the service's own text with its secrets taken out (statuspage.reason_line);
nothing of its config (env, tokens, notify URLs) is read here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pgo import __version__
from pgo.engine import Container
from pgo.errors import PgoError
from pgo.rollout import LIVE
from pgo.state import Attempt, Outcome, VerdictKind
from pgo.statuspage import (
    Commit,
    Deploy,
    ServiceStatus,
    Snapshot,
    State,
    containers_of,
    reason_line,
)

if TYPE_CHECKING:
    from pgo.service import TrackedService

PARALLEL = 16  # services asked about at once (the engine's listing, git)


def state_of(svc: TrackedService, containers: Sequence[Container], stopfile: bool
             ) -> tuple[State, str]:
    """The state the page shows for `svc`, and why (one line, not yet redacted)."""
    st = svc.state
    verdict = st.verdict
    loop = svc.repairs.reason(svc.name)
    if svc.activity:
        return State.DEPLOYING, svc.activity
    if stopfile:
        return State.HELD, "held down by the operator's stop file"
    if st.hold:
        return State.HELD, f"held by //{st.hold} (until {st.hold.lifted_by()})"
    if loop:
        return State.FAILED, loop
    tasks = svc.task_failures.reason() if svc.cfg.is_swarm else ""
    if tasks:
        return State.FAILED, tasks
    if verdict is not None and verdict.kind is VerdictKind.FAILED:
        return State.FAILED, st.last_error or verdict.summary()
    if verdict is not None and verdict.refused:
        return State.REFUSED, verdict.summary()
    if svc.last_outcome is Outcome.FAILED and st.last_error:
        return State.FAILED, st.last_error
    if st.frozen:
        return State.FROZEN, "frozen: upstream is fetched, not followed, until //unfreeze"
    if not any(c.state in LIVE for c in containers if not c.oneoff):
        return State.STOPPED, st.last_error or ("nothing deployed yet" if not st.applied_commit
                                                else "no container runs")
    last = svc.task_failures.last() if svc.cfg.is_swarm else None
    if last is not None and not st.last_error:  # (swarm replaced it: told, still running)
        return State.RUNNING, f"{last.describe()} {_ago(last.at)}; swarm replaced it"
    return State.RUNNING, st.last_error


def _ago(at: float) -> str:
    s = max(int(time.time() - at), 0)
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago"


def deploy_of(a: Attempt, secrets: Sequence[str]) -> Deploy:
    return Deploy(a.commit, a.at, str(a.outcome), a.trigger, a.duration,
                  reason_line(a.reason, secrets))


class Overview:
    """Snapshots of the daemon's services; commit times and `behind` are asked of git once
    per commit (they never change)."""

    def __init__(self, services: Mapping[str, TrackedService] | None = None) -> None:
        self.services = services if services is not None else {}
        self.host = socket.gethostname()
        self._times: dict[tuple[str, str], float] = {}
        self._behind: dict[tuple[str, str, str], int] = {}
        self._slots = asyncio.Semaphore(PARALLEL)

    async def snapshot(self) -> Snapshot:
        now = time.time()
        found = await asyncio.gather(*(self.status(svc) for svc in
                                       list(self.services.values())))
        return Snapshot(self.host, now, tuple(found), __version__)

    async def status(self, svc: TrackedService) -> ServiceStatus:
        async with self._slots:
            try:
                containers = await svc.project.containers()
            except (PgoError, OSError):
                containers = []
            st = svc.state
            state, why = state_of(svc, containers, svc.paths.stopfile(svc.name).exists())
            secrets = list(svc.secrets)
            history = tuple(deploy_of(a, secrets) for a in reversed(st.history))
            desired = st.desired_commit
            return ServiceStatus(
                name=svc.name, state=state, reason=reason_line(why, secrets),
                desired=Commit(desired, await self.commit_time(svc, desired)),
                applied=Commit(st.applied_commit,
                               await self.commit_time(svc, st.applied_commit)),
                applied_at=st.applied_at,
                behind=await self.behind(svc) if st.frozen else 0,
                containers=containers_of(containers),
                last_deploy=history[0] if history else None,
                history=history)

    async def commit_time(self, svc: TrackedService, commit: str) -> float:
        if not commit:
            return 0.0
        key = (svc.name, commit)
        if key not in self._times:
            try:
                self._times[key] = float(await svc.checkout.commit_time(commit))
            except (PgoError, OSError, ValueError):
                return 0.0  # (not fetched yet: asked again next time)
        return self._times[key]

    async def behind(self, svc: TrackedService) -> int:
        key = (svc.name, svc.state.applied_commit, svc.state.desired_commit)
        if key not in self._behind:
            try:
                self._behind[key] = await svc.checkout.behind()
            except (PgoError, OSError, ValueError):
                return 0
        return self._behind[key]
