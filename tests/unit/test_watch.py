"""The daemon's ears at the runner's edge: engine events routed to the pass of the service
they concern, drift repaired within a pass under the crash-loop cap, deploy attempts and
repairs told, and the status page's view of a service. A FakeRunner plays git, compose and
the engine (tests/unit/fakes.py); events are typed values, as pgo.events makes them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pgo import drift, watch
from pgo.events import Action, ContainerEvent
from pgo.notifications import Kind, Notice
from pgo.overview import state_of
from pgo.service import TrackedService
from pgo.state import Attempt, Hold, Outcome
from pgo.statuspage import State
from tests.unit.fakes import FakeRunner
from tests.unit.test_service import (
    IMAGE,
    converge,
    tracked,
    web,
)


@pytest.fixture
def fake() -> FakeRunner:
    return FakeRunner()


def event(svc: TrackedService, action: Action, **kw: object) -> ContainerEvent:
    base = dict(project=svc.name, service="web", container="c" * 64,
                name=f"{svc.name}-web-1", time=time.time() + 1)
    base.update(kw)
    return ContainerEvent(action, **base)  # type: ignore[arg-type]


def told(svc: TrackedService) -> list[Notice]:
    notices: list[Notice] = []
    svc.tell = lambda n: notices.append(n) is None  # type: ignore[method-assign]
    return notices


def dispatch_for(svc: TrackedService) -> watch.Dispatch:
    return watch.Dispatch(lambda: {svc.name: svc}, lambda: [svc.name])


def test_an_ended_container_wakes_its_service_and_the_pass_repairs(
        tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    notices = told(svc)
    assert converge(svc) is Outcome.DEPLOYED
    d = dispatch_for(svc)

    fake.containers = [c for c in fake.containers if c.project != svc.name]  # docker rm -f
    decision = d.dispatch(event(svc, Action.DESTROY))
    assert decision is not None and decision.reconcile
    assert svc.wake.is_set() and svc.woken_by == "event"
    fake.calls.clear()
    assert asyncio.run(svc.reconcile("event")) is Outcome.STARTED
    assert "compose up" in fake.kinds()
    assert [c.service for c in fake.of(svc.name)] == ["web"]
    assert [n.kind for n in notices] == [Kind.DRIFT_REPAIRED]
    assert "web: 1 container missing (0 of 1)" in notices[0].detail

    # an event of another project, or of a container whose name is not the project's
    svc.wake.clear()
    assert d.dispatch(event(svc, Action.DIE, project="other")) is None
    assert d.dispatch(event(svc, Action.DIE, name="evil-web-1")) is None
    assert not svc.wake.is_set()


def test_intent_keeps_events_from_waking_the_pass(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    d = dispatch_for(svc)
    for setup in (lambda: setattr(svc.state, "hold", Hold.STOP),
                  lambda: setattr(svc.state, "frozen", True),
                  lambda: Path(svc._stopfile).touch()):
        svc.state.hold, svc.state.frozen = None, False
        Path(svc._stopfile).unlink(missing_ok=True)
        setup()
        svc.wake.clear()
        decision = d.dispatch(event(svc, Action.DIE, exit_code=1))
        assert decision is not None and not decision.reconcile
        assert not svc.wake.is_set()


def test_an_event_during_pgods_own_change_asks_for_one_pass_after_it(
        tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    svc.activity = "deploying commit 12345678"
    decision = dispatch_for(svc).dispatch(event(svc, Action.DIE, exit_code=137))
    assert decision is not None and not decision.reconcile
    assert svc.wake.is_set() and svc.suspects == {"c" * 64}


def test_the_crash_loop_cap(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    notices = told(svc)
    assert converge(svc) is Outcome.DEPLOYED
    for _ in range(drift.REPAIRS_MAX):
        fake.containers = [c for c in fake.containers if c.project != svc.name]
        assert asyncio.run(svc.reconcile("event")) is Outcome.STARTED
    fake.containers = [c for c in fake.containers if c.project != svc.name]
    fake.calls.clear()
    assert asyncio.run(svc.reconcile("event")) is Outcome.FAILED
    assert "compose up" not in fake.kinds()
    assert svc.state.last_error.startswith("crash loop: 5 repairs within 5m")
    assert [n.kind for n in notices].count(Kind.CRASH_LOOP) == 1
    assert state_of(svc, [], stopfile=False)[0] is State.FAILED
    assert asyncio.run(svc.reconcile("poll")) is Outcome.FAILED  # (left alone)
    assert asyncio.run(svc.apply()).ok  # //up ends it
    assert not svc.repairs.looping(svc.name)


def test_a_frozen_service_is_not_repaired_by_a_pass(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push({"services": {"web": {"image": IMAGE}, "db": {"image": IMAGE}}})
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    (db,) = [c for c in fake.of(svc.name) if c.service == "db"]
    db.state = "exited"
    svc.state.frozen = True
    fake.calls.clear()
    assert converge(svc) is Outcome.FROZEN and "compose up" not in fake.kinds()
    svc.state.frozen = False
    assert converge(svc) is Outcome.STARTED and "compose up" in fake.kinds()


def test_attempts_become_notices_with_secrets_taken_out() -> None:
    ok = Attempt("a" * 40, 1.0, "webhook", Outcome.DEPLOYED, 4.2, "healthy")
    n = watch.notice_of("shop", ok)
    assert n is not None and n.kind is Kind.DEPLOYED and n.duration == 4.2
    bad = Attempt("b" * 40, 1.0, "poll", Outcome.FAILED, 1.0, "pull: token s3cret denied")
    n = watch.notice_of("shop", bad, ["s3cret"])
    assert n is not None and n.kind is Kind.FAILED and "s3cret" not in n.detail
    assert watch.notice_of("shop", Attempt("c" * 40, 1.0, "poll", Outcome.UNCHANGED)) is None


def test_upstream_unreachable_for_an_hour_is_told_once(tmp_path: Path,
                                                       fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    notices = told(svc)
    svc._upstream("fatal: could not read from remote", "a" * 40)
    assert notices == []
    svc.unreachable_since -= 3601
    svc._upstream("fatal: could not read from remote", "a" * 40)
    assert [n.kind for n in notices] == [Kind.UNREACHABLE]
    svc._upstream("", "a" * 40)
    assert svc.unreachable_since == 0.0


def test_what_the_status_page_says(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    assert state_of(svc, [], stopfile=False)[0] is State.STOPPED
    assert converge(svc) is Outcome.DEPLOYED
    containers = asyncio.run(svc.project.containers())
    assert state_of(svc, containers, stopfile=False) == (State.RUNNING, "")
    assert state_of(svc, containers, stopfile=True)[0] is State.HELD
    svc.state.frozen = True
    assert state_of(svc, containers, stopfile=False)[0] is State.FROZEN
    svc.activity = "repairing drift: web: 1 container missing"
    assert state_of(svc, containers, stopfile=False)[0] is State.DEPLOYING
