"""Drift repair within a pass: what runs is compared with the model brought up, and brought
back to it with `up -d --remove-orphans`; crash loops are capped; the intent an engine
event is judged against (pgo.drift.decide); upstream unreachable for an hour is told.

    intent()                 what pgod knows of this service, for drift.decide
    _drift(model, head)      a pass's check: None when nothing differs, else the repair's
                             outcome (STARTED repaired, FAILED crash loop)

The comparison is drift.compare's (config-hash labels, containers missing, too many, not
running, unhealthy); a repair is counted in pgo_drift_repairs_total{service}, logged with
what differed, told (Kind.DRIFT_REPAIRED), and spends one of the service's repairs
(drift.RepairBudget: REPAIRS_MAX in REPAIR_WINDOW, one budget for all of a service's
trackers). When the budget is spent the service is marked failed with the reason and left
alone until a new commit, //up, or the window passes.

A mixin of TrackedService (pgo.service), beside pgo.rollout's Rollout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING

from pgo import config, drift, metrics
from pgo.compose import Model, Project
from pgo.engine import Container
from pgo.notifications import Kind, Notice
from pgo.rollout import LIVE
from pgo.runner import redact
from pgo.state import Outcome, State, Verdict, VerdictKind
from pgo.swarm.drift import TaskFailure, TaskFailures

if TYPE_CHECKING:
    from pgo.secrets.inplace import Redactions
    from pgo.service import Hooks

UNREACHABLE_AFTER = 3600.0  # upstream unreachable this long: told once
REMOVAL_WAIT = 10.0  # a container the engine is removing: waited for before the up


def no_notice(notice: Notice) -> bool:
    return False


class Repairs:
    """The drift half of TrackedService (see the module)."""

    # what TrackedService has, for the type checker
    name: str
    state: State
    project: Project
    hooks: Hooks
    log: logging.LoggerAdapter[logging.Logger]
    judged: tuple[Verdict, Model | None] | None
    activity: str
    secrets: Redactions
    _stopfile: str
    repairs: drift.RepairBudget  # the daemon's, shared by a service's trackers
    tell: Callable[[Notice], bool]  # queue a notification (never blocks)
    quiet_until: float  # epoch seconds: events until then were pgod's own doing
    unreachable_since: float  # epoch seconds when upstream was first unreachable; 0: it is
    _hashes: tuple[str, dict[str, str]] | None  # (model digest, its config hashes)
    fleet_names: Callable[[], list[str]]
    suspects: set[str]  # ids of containers an engine event said ended (settled())
    cfg: config.Service
    task_failures: TaskFailures  # engine = "swarm": the stack's tasks that failed
    started_at: float  # epoch seconds: this tracker's start (older task failures: not told)

    if TYPE_CHECKING:
        def registries(self) -> AbstractAsyncContextManager[None]: ...
        async def judge_model(self, commit: str, model: Model) -> Verdict: ...
        async def _refuse(self, verdict: Verdict, *, record: bool = True) -> Outcome: ...
        async def _remove_strays(self, model: Model,
                                 hashes: asyncio.Task[dict[str, str]] | None, *,
                                 stop_changed: bool = True) -> None: ...
        async def _deploy_stack(self, model: Model) -> None: ...

    def intent(self) -> drift.Intent:
        """What an engine event of this service's project is judged against."""
        st = self.state
        model = self.judged[1] if self.judged is not None else None
        hashes = self._hashes[1] if self._hashes and self._hashes[0] == st.applied_model \
            else {}
        verdict = st.verdict
        return drift.Intent(
            stop_file=os.path.exists(self._stopfile),
            held=st.hold.value if st.hold else "",
            frozen=st.frozen,
            first_deploy_failed=verdict is not None and verdict.kind is VerdictKind.FAILED
            and verdict.commit == st.applied_commit,
            busy=bool(self.activity),
            quiet_until=self.quiet_until,
            crash_loop=self.repairs.reason(self.name),
            oneshot=drift.oneshot_services(model.data) if model is not None else frozenset(),
            hashes=hashes,
            deployed=bool(st.applied_model),
        )

    async def model_hashes(self, model: Model) -> dict[str, str]:
        """The config hashes of `model` (compose's `config --hash`), asked once per model."""
        if self._hashes is None or self._hashes[0] != model.digest:
            self._hashes = (model.digest, await self.project.config_hashes(model))
        return self._hashes[1]

    def _tell(self, kind: Kind, commit: str = "", detail: str = "", *,
              duration: float | None = None, key: str | None = None) -> None:
        self.tell(Notice(self.name, kind, commit, redact(detail, self.secrets),
                         duration=duration, key=key))

    # -- a pass's check ------------------------------------------------------------------

    async def differences(self, model: Model) -> list[drift.Difference]:
        """What differs between the project's containers and `model` (empty: nothing)."""
        if self.cfg.is_swarm:
            return await self._stack_differences(model)
        containers = await self.settled(await self.project.containers())
        hashes = await self.model_hashes(model)
        found = drift.compare(hashes, model.data, containers, self.fleet_names())
        found += [drift.Difference(c.service, "unhealthy", f"{c.name} unhealthy")
                  for c in containers if c.health == "unhealthy" and not c.oneoff
                  and c.state == "running" and c.config_hash == hashes.get(c.service)]
        return found

    async def _stack_differences(self, model: Model) -> list[drift.Difference]:
        """A swarm stack's drift (pgo.swarm.drift.compare); its tasks' new failures are
        logged and told on the way (swarm replaces them itself)."""
        from pgo.swarm import drift as stack_drift
        from pgo.swarm.stack import Stack

        assert isinstance(self.project, Stack)
        services, tasks = await self.project.look()
        self.observe_tasks(stack_drift.failures(services, tasks))
        if not self.state.stack_specs and services:  # (deployed by a pgod before the specs
            self.state.stack_specs = stack_drift.spec_digests(services)  # were recorded)
        return stack_drift.compare(self.name, list(model.data.get("services") or {}),
                                   services, self.state.stack_specs)

    def observe_tasks(self, found: list[TaskFailure]) -> None:
        """Log each new task failure once; tell the first of a spell, and a crash loop."""
        new, loop = self.task_failures.observe(found, max(self.started_at, self.quiet_until))
        for f in new:
            self.log.warning("swarm: %s", redact(f.describe(), self.secrets))
        commit = self.state.applied_commit
        if loop:
            why = self.task_failures.reason()
            self.log.error("swarm: %s", why)
            first = self.task_failures.recent[0]
            self._tell(Kind.CRASH_LOOP, commit, why, key=f"tasks {first.task}")
        elif self.task_failures.first_of_spell(new):
            self._tell(Kind.TASK_FAILED, commit, new[0].describe(), key=new[0].task)

    async def settled(self, containers: list[Container]) -> list[Container]:
        """`containers` with the state of those an event said ended (self.suspects) asked
        of the engine one by one: its listing may still say `running` just after a `die`
        event (the engine tells the event before it records the state), and an inspect
        waits until the container's state is recorded."""
        live = {c.id for c in containers if c.state in LIVE}
        ask = sorted(self.suspects & live)
        self.suspects.clear()
        if not ask:
            return containers
        docs = {str(d.get("Id")): d for d in await self.project.inspect(ask)}
        out = []
        for c in containers:
            if c.id not in ask:
                out.append(c)
            elif c.id in docs:  # (else: removed since it was listed)
                state = docs[c.id].get("State")
                status = state.get("Status") if isinstance(state, dict) else None
                out.append(replace(c, state=str(status or c.state)))
        return out

    async def _drift(self, model: Model, head: str) -> Outcome | None:
        """Bring the project back to `model` (what was brought up, of commit `head`) when
        its containers differ; None when nothing differs."""
        found = await self.differences(model)
        if not found:
            return None
        what = drift.describe(found)
        budget = self.repairs.take(self.name)
        if budget is not drift.Budget.REPAIR:
            why = self.repairs.reason(self.name)
            self.state.last_error = why
            if budget is drift.Budget.LOOP_STARTED:
                self.log.error("drift: %s; %s", what, why)
                self._tell(Kind.CRASH_LOOP, head, f"{what}; {why}")
            else:
                self.log.debug("drift: %s; %s", what, why)
            return Outcome.FAILED
        return await self._repair(model, head, found, what)

    async def _repair(self, model: Model, head: str, found: list[drift.Difference],
                      what: str) -> Outcome:
        t0 = time.monotonic()
        self.log.warning("drift: %s; repairing with %s", what,
                         "docker stack deploy" if self.cfg.is_swarm else "up")
        self.activity = f"repairing drift: {what}"
        try:
            await self._removed(found)
            for hook in self.hooks.before_up:
                await hook(self)  # type: ignore[arg-type]
            async with self.registries():
                # (nothing outside the model survives, and real paths are judged again,
                # as before any up: rollout._up)
                hashes = asyncio.create_task(self.model_hashes(model))
                await self._remove_strays(model, hashes)
                late = await self.judge_model(head, model)
                if late.refused:
                    self.judged = (late, model)
                    return await self._refuse(late)
                if self.cfg.is_swarm:  # (the stack as the model says: pgo.swarm.drift)
                    await self._deploy_stack(model)
                else:
                    await self.project.up(*sorted({d.service for d in found
                                                   if d.kind == "unhealthy"}))
        finally:
            self.activity = ""
            self.quiet_until = time.time()
        took = time.monotonic() - t0
        metrics.DRIFT_REPAIRS.labels(self.name).inc()
        self.log.info("drift repaired in %.1fs: %s", took, what)
        self._tell(Kind.DRIFT_REPAIRED, head, what)
        return Outcome.STARTED

    async def _removed(self, found: list[drift.Difference]) -> None:
        """Wait (a little) for containers the engine is removing: `up` refuses them."""
        if not any(d.kind == "stopped" for d in found):
            return
        deadline = time.monotonic() + REMOVAL_WAIT
        while time.monotonic() < deadline:
            containers: list[Container] = await self.project.containers()
            if not any(c.state == "removing" for c in containers):
                return
            await asyncio.sleep(0.1)

    # -- upstream ----------------------------------------------------------------------

    def _upstream(self, error: str, commit: str) -> None:
        """Note whether upstream could be read; told once when it could not for an hour."""
        if not error:
            if self.unreachable_since:
                self.log.info("upstream reachable again")
            self.unreachable_since = 0.0
            return
        now = time.time()
        if not self.unreachable_since:
            self.unreachable_since = now
        elif now - self.unreachable_since >= UNREACHABLE_AFTER:
            self._tell(Kind.UNREACHABLE, commit, error, key=str(self.unreachable_since))

