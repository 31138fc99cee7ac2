"""How a commit goes live: bring its model up, prove it through the health gate, record
the attempt, and roll back to the last good commit when it fails.

    _release(model, commit)   bring up (_deploy), then the gate (pgo.health); healthy: the
                              commit is the last good one (kept reachable under refs/pgo/);
                              failed: _failed
    _failed                   the commit is marked failed (VerdictKind.FAILED: not deployed
                              again until upstream moves or //up) and the last good commit
                              comes back, its files in the checkout and its model up the
                              same way, gated the same way; when there is none, or the
                              rollback fails too, what runs is left as it is
    rollback(commit)          //rollback: an earlier commit of the history, judged and gated
                              as any, then frozen there

Failures before anything running is touched (a hook, a registry login, a pull, a build, a
missing image) leave what runs as it is and are tried again next pass; from the down (or,
in place, the stop of a changed container) on, a failure is the commit's: `up` failing,
the model refused on real paths, the gate. Every attempt is recorded once (State.record)
and handed to the hooks of Hooks.after_attempt (notifications, the status page).

A mixin of TrackedService (pgo.service), which owns the state, the lock and the checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from pgo import config, drift, health, metrics, xpgo
from pgo.compose import UP_TIMEOUT, Model, Project, needs_down
from pgo.errors import CommandError, ComposeError, PgoError, UsageError
from pgo.gitrepo import Checkout
from pgo.state import Attempt, Outcome, State, Verdict, VerdictKind

if TYPE_CHECKING:
    from pgo.service import Hooks

# container states in which a container's processes run, or may at any moment
LIVE = frozenset({"running", "restarting", "paused", "removing"})
COMMIT_RE = re.compile(r"[0-9a-f]{4,64}")


class UpFailed(ComposeError):
    """A deploy failed after what ran was touched (down, stop, up, the last judgement)."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(message)
        self.verdict = verdict  # the refusal on real paths, when that is what it was


class Rollout:
    """The deploy half of TrackedService (see the module)."""

    # what TrackedService has, for the type checker
    name: str
    cfg: config.Service
    state: State
    lock: asyncio.Lock
    project: Project
    checkout: Checkout
    hooks: Hooks
    log: logging.LoggerAdapter[logging.Logger]
    defaults: xpgo.Settings
    judged: tuple[Verdict, Model | None] | None
    activity: str
    trigger: str
    fleet: Callable[[], config.Config] | None
    outside_slot: Callable[[], AbstractAsyncContextManager[None]]
    gate_poll: float  # how often the gate looks when it can only ask the docker CLI

    if TYPE_CHECKING:
        def save(self) -> None: ...
        def registries(self) -> AbstractAsyncContextManager[None]: ...
        async def judge_model(self, commit: str, model: Model) -> Verdict: ...
        async def judge_commit(self, commit: str) -> Verdict: ...
        async def _refuse(self, verdict: Verdict, *, record: bool = True) -> Outcome: ...

    # -- a commit goes live ------------------------------------------------------------

    async def _release(self, model: Model, head: str, trigger: str, *, restart: bool,
                       mark: bool = True) -> Outcome:
        """Bring up `model` of commit `head` and prove it (see the module): DEPLOYED,
        ROLLED_BACK, FAILED (or REFUSED on real paths). A failure before anything running
        was touched is raised (the pass fails and is tried again). `mark`: a failed
        commit is marked so (not //rollback's target, which is not upstream's)."""
        t0 = time.monotonic()
        since = time.time()
        self.activity = f"deploying commit {head[:8]}"
        try:
            await self._deploy(model, head, restart=restart, prove=True)
        except UpFailed as e:
            verdict = e.verdict or Verdict(head, model.digest, VerdictKind.FAILED, (str(e),))
            return await self._failed(model, head, trigger, t0, verdict, mark=mark)
        except PgoError as e:
            await self._attempt(head, trigger, Outcome.FAILED, t0,
                                f"{e}; what ran keeps running")
            self.log.error("failed commit %s in %.1fs: %s; what ran keeps running, tried "
                           "again next pass", head[:8], time.monotonic() - t0, e)
            raise
        return await self._prove(model, head, trigger, t0, since, mark=mark)

    async def _prove(self, model: Model, head: str, trigger: str, t0: float, since: float,
                     *, mark: bool = True) -> Outcome:
        """The health gate of `head`, brought up just now (or before a pgod that stopped
        during its gate), and what follows from it."""
        st = self.state
        result = await self._gate(model, head, since)
        st.proving, st.proving_since = "", 0.0
        if not result.healthy:
            verdict = Verdict(head, model.digest, VerdictKind.FAILED, (result.reason,))
            return await self._failed(model, head, trigger, t0, verdict, mark=mark)
        st.last_good = head
        self.judged = (Verdict(head, model.digest), model)
        if st.verdict is not None and st.verdict.commit == head:
            st.verdict = None
        took = time.monotonic() - t0
        await self._attempt(head, trigger, Outcome.DEPLOYED, t0, result.reason)
        await self._keep_good()
        self.log.info("deployed commit %s in %.1fs (%s)", head[:8], took, result.reason)
        return Outcome.DEPLOYED

    async def _gate(self, model: Model, head: str, since: float) -> health.Result:
        settings = model.settings(self.defaults)
        if not settings.gated:
            return health.Result(True, "no health gate: health_timeout is 0s", 0.0)
        names = [s.name for s in self.fleet().services] if self.fleet else [self.name]
        if self.name not in names:
            names.append(self.name)

        def progress(why: str) -> None:
            self.activity = f"health gate of commit {head[:8]}: {why}"

        if self.cfg.is_swarm:  # (the stack's services converged: pgo.swarm.converge)
            from pgo.swarm import converge
            from pgo.swarm.stack import Stack

            assert isinstance(self.project, Stack)
            progress(f"watching the stack for up to {settings.health_timeout:g}s")
            async with self.outside_slot():
                return await converge.watch(
                    self.name, sorted(model.data.get("services") or {}), self.project.look,
                    settings.health_timeout, settings.settle, since,
                    poll=self.gate_poll, progress=progress)

        gate = health.Gate(self.project, health.Expect.of(model, settings.settle),
                           settings.health_timeout,
                           belongs=lambda n: drift.belongs(self.name, n, names),
                           log=self.log, progress=progress, poll=self.gate_poll)
        progress(f"watching for up to {settings.health_timeout:g}s")
        async with self.outside_slot():  # (it waits on the engine: no slot needed)
            return await gate.watch(since)

    async def _failed(self, model: Model, head: str, trigger: str, t0: float,
                      verdict: Verdict, *, mark: bool = True) -> Outcome:
        """`head` failed after what ran was touched: mark it, bring the last good commit
        back (when there is one, and it is not `head`), record the attempt."""
        st = self.state
        why = "; ".join(verdict.reasons)
        if mark:
            st.verdict = verdict
            self.judged = (verdict, model)
        target = st.last_good if st.last_good != head else ""
        if not target:
            refused = verdict.kind is VerdictKind.POLICY
            st.last_error = verdict.summary() + ("" if refused else
                                                 "; nothing to roll back to")
            await self._attempt(head, trigger,
                                Outcome.REFUSED if refused else Outcome.FAILED, t0,
                                why if refused else f"{why}; nothing to roll back to")
            self.log.error("failed commit %s in %.1fs: %s; nothing to roll back to: the "
                           "containers are left as they are (//logs shows them)", head[:8],
                           time.monotonic() - t0, why)
            return Outcome.REFUSED if refused else Outcome.FAILED
        self.log.error("commit %s failed: %s; rolling back to commit %s", head[:8], why,
                       target[:8])
        metrics.ROLLBACKS.labels(self.name).inc()
        back = await self._back_to(target)
        took = time.monotonic() - t0
        if back.healthy:
            st.last_error = f"{verdict.summary()}; rolled back to commit {target[:8]}"
            await self._attempt(head, trigger, Outcome.ROLLED_BACK, t0,
                                f"{why}; rolled back to {target[:8]}")
            self.log.warning("rolled back commit %s in %.1fs: %s; commit %s runs again (%s)",
                             head[:8], took, why, target[:8], back.reason)
            return Outcome.ROLLED_BACK
        st.last_error = (f"{verdict.summary()}; the rollback to commit {target[:8]} failed "
                         f"too: {back.reason}")
        await self._attempt(head, trigger, Outcome.FAILED, t0,
                            f"{why}; the rollback to {target[:8]} failed too: {back.reason}")
        self.log.error("failed commit %s in %.1fs: %s; the rollback to commit %s failed too: "
                       "%s; left as it is", head[:8], took, why, target[:8], back.reason)
        return Outcome.FAILED

    async def _back_to(self, target: str) -> health.Result:
        """Commit `target` (the last good one) in the checkout and its model up, judged and
        gated as any deploy; not rolled back again when it fails."""
        t0 = time.monotonic()
        since = time.time()
        self.activity = f"rolling back to commit {target[:8]}"
        try:
            await self.checkout.reset(target)
            self.judged = None
            model = await self.project.config()
            verdict = await self.judge_model(target, model)
            if verdict.refused:
                return health.Result(False, verdict.summary(), time.monotonic() - t0)
            await self._deploy(model, target, restart=True, prove=True)
        except (PgoError, OSError) as e:
            return health.Result(False, str(e), time.monotonic() - t0)
        result = await self._gate(model, target, since)
        self.state.proving, self.state.proving_since = "", 0.0
        if result.healthy:
            self.judged = (verdict, model)
        return result

    async def _attempt(self, commit: str, trigger: str, outcome: Outcome, t0: float | None,
                       reason: str) -> None:
        """Record one attempt (unless it repeats the newest), count it, tell the hooks."""
        took = None if t0 is None else round(time.monotonic() - t0, 3)
        attempt = Attempt(commit, time.time(), trigger, outcome, took, reason)
        if not self.state.record(attempt):
            return
        metrics.DEPLOYS.labels(self.name, outcome).inc()
        if took is not None:
            metrics.DEPLOY_DURATION.labels(self.name).observe(took)
        self.save()
        for hook in self.hooks.after_attempt:
            try:
                await hook(self, attempt)  # type: ignore[arg-type]
            except (PgoError, OSError) as e:
                self.log.warning("after a deploy attempt: %s", e)

    async def _keep_good(self) -> None:
        """Keep the last good commit and every commit the history says was deployed in the
        checkout's repository (refs/pgo/), whatever upstream does to its history."""
        st = self.state
        keep = {"last-good": st.last_good} if st.last_good else {}
        keep |= {f"deployed/{a.commit}": a.commit for a in st.history
                 if a.outcome is Outcome.DEPLOYED}
        try:
            await self.checkout.keep(keep)
        except CommandError as e:
            self.log.warning("could not keep the deployed commits under refs/pgo/: %s", e)

    # -- bringing a model up -----------------------------------------------------------

    async def _deploy(self, model: Model, head: str, *, restart: bool,
                      prove: bool = False) -> None:
        """Bring up `model` and record it as applied. By default in place: `up -d
        --remove-orphans` recreates only the containers whose configuration changed; with
        `restart` (a changed model replaces a running one) and `x-pgo: {down: true}` the
        project is downed first, as the original pgo does. Everything that can fail
        without touching what runs (hooks, logins, pull, build, missing images) comes
        first; what fails after it raises UpFailed. Before the up, no container outside
        the model is left (_remove_strays) and the model is judged once more on real
        paths. When `up` says an in-place change needs a down (compose.needs_down), the
        project is downed and brought up again. `prove`: a health gate follows (State.proving
        says so until it ends)."""
        since = time.time()
        for hook in self.hooks.before_up:
            await hook(self)  # type: ignore[arg-type]
        down_first = restart and model.down_first
        in_place = restart and not down_first and not self.cfg.is_root \
            and not self.cfg.is_swarm
        # (what `config --hash` says is needed in place, where containers of the old
        # deployment run on: asked beside the pull rather than after it)
        hashes = asyncio.create_task(self.project.config_hashes(model)) if in_place else None
        try:
            async with self.registries():
                await self._prepare_images(model, head)
                try:
                    await self._up(model, head, hashes, down_first=down_first)
                except UpFailed:
                    raise
                except PgoError as e:
                    raise UpFailed(str(e)) from None
        finally:
            if hashes is not None:  # (not needed after all, or the deploy failed first)
                hashes.cancel()
                with contextlib.suppress(asyncio.CancelledError, PgoError, OSError):
                    await hashes
        st = self.state
        st.applied_commit, st.applied_model, st.applied_at = head, model.digest, time.time()
        st.awaiting_up = False
        st.proving, st.proving_since = (head, since) if prove else ("", 0.0)
        self.save()
        with contextlib.suppress(PgoError, ValueError):
            metrics.APPLIED_TIME.labels(self.name).set(await self.checkout.commit_time(head))
        metrics.APPLIED_AT.labels(self.name).set(st.applied_at)
        for hook in self.hooks.after_deploy:
            await hook(self)  # type: ignore[arg-type]

    async def _up(self, model: Model, head: str, hashes: asyncio.Task[dict[str, str]] | None,
                  *, down_first: bool) -> None:
        if down_first:
            await self.project.down()
        await self._remove_strays(model, hashes)
        # Real paths again, now that no container outside the judged model runs: one may
        # have left a symlink in the data directory since the commit was judged, and none
        # is left that could make one before the up.
        late = await self.judge_model(head, model)
        if late.refused:
            self.judged = (late, model)
            await self._refuse(late, record=False)
            raise UpFailed(late.summary(), late)
        if self.cfg.is_swarm:  # (a stack file of the model: pgo.swarm.stack)
            await self._deploy_stack(model)
            return
        try:
            await self.project.up()
        except CommandError as e:
            why = needs_down(e.output)
            if why is None or down_first:
                raise
            self.log.warning("up can not bring this change in place (%s): downing the "
                             "project, then up", why)
            await self.project.down(whole=True)
            await self.project.up()

    async def _deploy_stack(self, model: Model) -> None:
        """Deploy `model` as the swarm stack, and record its services' specs as deployed
        (what pgo.swarm.drift compares them with)."""
        from pgo.swarm import drift as stack_drift
        from pgo.swarm.stack import Stack

        assert isinstance(self.project, Stack)
        settings = model.settings(self.defaults)
        try:
            await self.project.deploy(model, timeout=settings.health_timeout or UP_TIMEOUT)
        finally:  # (a deploy that failed half-way changed some: those are pgod's too)
            with contextlib.suppress(PgoError, OSError):
                self.state.stack_specs = stack_drift.spec_digests(
                    await self.project.services())

    async def _prepare_images(self, model: Model, head: str) -> None:
        """Pull and build what the model runs; ComposeError when an image is missing."""
        try:
            await self.project.pull()
        except CommandError as e:  # e.g. an image that exists only locally
            self.log.warning("pull: %s (going on with the images on this machine)", e)
        if any(isinstance(s, dict) and s.get("build")
               for s in (model.data.get("services") or {}).values()):
            await self.project.build()
        missing = await self.project.missing_images(model)
        if missing:
            raise ComposeError(f"commit {head[:8]}: image(s) not available after pull: "
                               + ", ".join(missing))

    async def _remove_strays(self, model: Model, hashes: asyncio.Task[dict[str, str]] | None,
                             *, stop_changed: bool = True) -> None:
        """Nothing outside the judged model survives a deploy, nor runs at its up. Before
        the up, a container of a compose service the model does not have (one moved into a
        profile is left out of the model, yet `up --remove-orphans` keeps it) is stopped
        and removed, in any state; a running one whose configuration is not the model's
        (in place, the old deployment's: until `up` replaces it, it could still write
        where the new model mounts) is stopped, and `up` replaces it (not with
        `stop_changed` false). `hashes`: the model's configuration hashes, when already
        asked for. (A root service, which the policy does not judge, keeps compose's own
        behaviour; a swarm stack's are swarm's: `--prune`.)"""
        if self.cfg.is_root or self.cfg.is_swarm:
            return
        services = model.data.get("services") or {}
        containers = await self.project.containers()
        strays = [c for c in containers if c.service not in services]
        live = [c for c in containers if c.service in services and c.state in LIVE]
        changed = []
        if live and stop_changed:
            want = await (hashes if hashes is not None else self.project.config_hashes(model))
            changed = [c for c in live if c.config_hash != want.get(c.service)]
        for c in strays:
            self.log.info("removing container %s (%s, %s): not in the model",
                          c.name or c.id[:12], c.service or "no compose service", c.state)
        for c in changed:
            self.log.info("stopping container %s (%s): its configuration is not the model's",
                          c.name or c.id[:12], c.service)
        await self.project.retire(
            stop=[c.id for c in [*strays, *changed] if c.state in LIVE],
            remove=[c.id for c in strays])

    # -- //rollback ----------------------------------------------------------------------

    def rollback_target(self, prefix: str | None) -> str:
        """The commit //rollback deploys: the history's commit that `prefix` names, or by
        default the newest deployed one that is not what runs. UsageError when none is."""
        st = self.state
        if prefix is None:
            for a in reversed(st.history):
                if a.outcome is Outcome.DEPLOYED and a.commit != st.applied_commit:
                    return a.commit
            raise UsageError("no earlier deployed commit in the history (//history)")
        prefix = prefix.lower()
        if not COMMIT_RE.fullmatch(prefix):
            raise UsageError(f"{prefix[:80]!r} is not a commit (4 to 64 hexadecimal digits)")
        found = sorted({a.commit for a in st.history if a.commit.startswith(prefix)})
        if not found:
            raise UsageError(f"commit {prefix} is not in the history (//history lists it)")
        if len(found) > 1:
            raise UsageError(f"commit {prefix} is ambiguous: "
                             + ", ".join(c[:12] for c in found))
        return found[0]

    async def rollback(self, target: str) -> Outcome:
        """//rollback: deploy `target`, an earlier commit, through the policy and the
        health gate, and freeze there. Ends a hold; the stop file is the caller's to
        check. A failure rolls back to what ran (without marking `target`)."""
        async with self.lock:
            st = self.state
            self.trigger = "//rollback"
            try:
                if not await self.checkout.has(target):
                    raise ComposeError(f"commit {target[:8]} is no longer in the checkout's "
                                       "repository")
                if not self.cfg.is_root:  # judged beside the checkout before it reaches it
                    verdict = await self.judge_commit(target)
                    if verdict.refused:
                        await self._attempt(target, self.trigger, Outcome.REFUSED, None,
                                            "; ".join(verdict.reasons))
                        raise ComposeError(verdict.summary())
                    if verdict.kind is VerdictKind.UNJUDGED:
                        raise ComposeError(f"commit {target[:8]} could not be judged: "
                                           f"{verdict.reasons[0]}")
                self.log.info("deploying commit %s (//rollback)", target[:8])
                before = st.applied_commit
                await self.checkout.reset(target)
                self.judged = None
                try:
                    model = await self.project.config()
                    st.hold = None
                    running = await self.project.running()
                    outcome = await self._release(model, target, self.trigger,
                                                  restart=running and bool(st.applied_model),
                                                  mark=False)
                except PgoError:
                    if before and st.applied_commit == before:  # (nothing was touched)
                        with contextlib.suppress(PgoError):
                            await self.checkout.reset(before)
                    raise
                if outcome is Outcome.DEPLOYED:
                    st.frozen = True
                    self.log.info("frozen at commit %s (//rollback): upstream is fetched, not "
                                  "followed, until //unfreeze", target[:8])
                return outcome
            finally:
                self.activity = ""
                self.save()
