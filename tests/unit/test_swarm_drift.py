"""A swarm stack's drift, its tasks' failures, and its engine events (issue 15 item 6):
the pure parts (pgo.swarm.drift, pgo.events.parse_event, pgo.drift.decide,
pgo.watch.Dispatch's routing). The whole of it runs on a real swarm in
tests/e2e/test_swarm.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgo import drift, watch
from pgo.events import parse_event
from pgo.state import State
from pgo.swarm import drift as stack_drift
from tests.unit.test_swarm import T0, _svc, _task


def _failed(service: str, tid: str, at: str, code: int = 3) -> dict[str, Any]:
    t = _task(service, "failed", at, "shutdown", "task: non-zero exit (3)", code)
    t["ID"] = tid
    t["NodeID"] = "n" * 25
    return t


def test_a_spec_digest_leaves_the_force_update_counter_out() -> None:
    a = _svc("web", 2)
    a["Spec"]["TaskTemplate"] = {"ContainerSpec": {"Image": "x"}, "ForceUpdate": 1}
    b = {**a, "Spec": {**a["Spec"], "TaskTemplate": {"ContainerSpec": {"Image": "x"},
                                                     "ForceUpdate": 7}}}
    assert stack_drift.spec_digest(a) == stack_drift.spec_digest(b)
    c = {**a, "Spec": {**a["Spec"], "Mode": {"Replicated": {"Replicas": 5}}}}
    assert stack_drift.spec_digest(a) != stack_drift.spec_digest(c)
    assert stack_drift.spec_digests([a]) == {"st_web": stack_drift.spec_digest(a)}


def test_a_service_gone_unknown_or_changed_by_hand_is_drift() -> None:
    web, db = _svc("web", 2), _svc("db", 1)
    deployed = stack_drift.spec_digests([web, db])
    assert stack_drift.compare("st", ["web", "db"], [web, db], deployed) == []
    # scaled by hand
    scaled = {**web, "Spec": {**web["Spec"], "Mode": {"Replicated": {"Replicas": 5}}}}
    found = stack_drift.compare("st", ["web", "db"], [scaled, db], deployed)
    assert [(d.service, d.kind) for d in found] == [("web", "changed")]
    assert "st_web was changed outside pgo" in found[0].detail
    # removed by hand, and one made by hand with the stack's label
    extra = _svc("miner", 1)
    found = stack_drift.compare("st", ["web", "db"], [web, extra], deployed)
    assert [(d.service, d.kind) for d in found] == [("db", "missing"), ("miner", "unknown")]
    assert drift.describe(found) == ("db: swarm service st_db is gone; miner: swarm service "
                                     "st_miner is not in the model")
    # specs not recorded (deployed by a pgod before they were): not compared
    assert stack_drift.compare("st", ["web", "db"], [scaled, db], {}) == []


def test_task_failures_are_new_once_and_a_spell_of_them_is_a_crash_loop() -> None:
    services = [_svc("web", 1)]
    t = [_failed("web", f"t{i}", f"2026-01-01T00:00:{10 + i:02d}Z") for i in range(6)]
    found = stack_drift.failures(services, [_task("web", "running"), *t])
    assert [f.task for f in found] == [f"t{i}" for i in range(6)]
    assert found[0].describe() == ("task st_web.1 failed: task: non-zero exit (3) (exit code "
                                   "3) on node nnnnnnnnnnnn")
    now = [T0 + 60]
    seen = stack_drift.TaskFailures(limit=3, window=300, clock=lambda: now[0])
    # failures before `since` (pgod's own deploy, or before pgod looked) are not new
    new, loop = seen.observe(found[:1], since=T0 + 10)
    assert new == [] and not loop and seen.last() is None
    new, loop = seen.observe(found[:2], since=T0)
    assert [f.task for f in new] == ["t1"] and not loop and seen.first_of_spell(new)
    new, loop = seen.observe(found[:2], since=T0)
    assert new == [] and not loop
    new, loop = seen.observe(found[:4], since=T0)
    assert [f.task for f in new] == ["t2", "t3"] and loop and not seen.first_of_spell(new)
    assert seen.reason().startswith("crash loop: 3 task failures within 5m (last: task "
                                    "st_web.1 failed")
    new, loop = seen.observe(found, since=T0)
    assert len(new) == 2 and not loop  # (told once)
    now[0] = T0 + 1000
    assert seen.reason() == "" and seen.last() is None


def test_the_stack_specs_survive_a_restart(tmp_path: Path) -> None:
    st = State(stack_specs={"st_web": "a" * 64})
    st.save(tmp_path / "state.json")
    assert State.load(tmp_path / "state.json").stack_specs == {"st_web": "a" * 64}


def _doc(kind: str, action: str, attrs: dict[str, str], cid: str = "c" * 64
         ) -> dict[str, Any]:
    return {"Type": kind, "Action": action, "timeNano": int(T0 * 1e9),
            "Actor": {"ID": cid, "Attributes": attrs}}


def test_a_task_container_and_a_swarm_service_are_events_of_the_stack() -> None:
    task = parse_event(_doc("container", "die", {
        "name": "st_web.1.abc", "exitCode": "3", "com.docker.stack.namespace": "st",
        "com.docker.swarm.service.name": "st_web"}))
    assert task is not None and task.swarm and task.exit_code == 3
    assert (task.project, task.service, task.name) == ("st", "web", "st_web.1.abc")
    assert task.describe() == "task container st_web.1.abc died (exit 3)"
    svc = parse_event(_doc("service", "remove", {"name": "st_web"}, cid="s" * 25))
    assert svc is not None and svc.swarm and svc.container == "" and svc.project == ""
    assert svc.describe() == "swarm service st_web was removed"
    assert parse_event(_doc("service", "die", {"name": "st_web"})) is None
    assert parse_event(_doc("container", "update", {"com.docker.stack.namespace": "st"})) \
        is None
    assert parse_event(_doc("container", "die", {"name": "lonely"})) is None


def test_what_a_stack_event_asks_for() -> None:
    intent = drift.Intent()
    task = parse_event(_doc("container", "die", {
        "name": "st_web.1.abc", "exitCode": "3", "com.docker.stack.namespace": "st",
        "com.docker.swarm.service.name": "st_web"}))
    assert task is not None and drift.decide(task, intent).reconcile
    ok = parse_event(_doc("container", "die", {
        "name": "st_web.1.abc", "exitCode": "0", "com.docker.stack.namespace": "st",
        "com.docker.swarm.service.name": "st_web"}))
    assert ok is not None and not drift.decide(ok, intent).reconcile
    started = parse_event(_doc("container", "start", {
        "name": "st_web.1.abc", "com.docker.stack.namespace": "st",
        "com.docker.swarm.service.name": "st_web"}))
    assert started is not None and drift.decide(started, intent).reconcile
    assert not drift.decide(started, drift.Intent(busy=True)).reconcile
    created = parse_event(_doc("container", "create", {
        "name": "st_web.1.abc", "com.docker.stack.namespace": "st",
        "com.docker.swarm.service.name": "st_web"}))
    assert created is not None and not drift.decide(created, intent).reconcile
    removed = parse_event(_doc("service", "remove", {"name": "st_web"}))
    assert removed is not None
    assert drift.decide(removed, intent).reconcile
    assert not drift.decide(removed, drift.Intent(busy=True)).reconcile
    assert not drift.decide(removed, drift.Intent(held="down")).reconcile
    assert drift.owner("st_web", ["st", "s", "st_w"]) == "st"
    assert drift.owner("st_web", ["x"]) == ""


class _Svc:
    """As much of a TrackedService as Dispatch asks of it."""

    def __init__(self, name: str, swarm: bool) -> None:
        import asyncio
        import logging

        from pgo import config

        self.name = name
        self.cfg = config.Service(name=name, user="u", repository="r",
                                  engine="swarm" if swarm else "compose")
        self.wake = asyncio.Event()
        self.woken_by = ""
        self.suspects: set[str] = set()
        self.log = logging.LoggerAdapter(logging.getLogger("t"), {})

    def intent(self) -> drift.Intent:
        return drift.Intent()

    def wake_for(self, reason: str) -> None:
        self.woken_by = reason
        self.wake.set()


def test_stack_events_wake_the_stacks_service_only() -> None:
    st, other = _Svc("st", True), _Svc("st_web", False)  # (a compose service named so)
    services: dict[str, Any] = {"st": st, "st_web": other}
    d = watch.Dispatch(lambda: services, lambda: list(services))
    removed = parse_event(_doc("service", "remove", {"name": "st_web"}))
    assert removed is not None
    # swarm service st_web is stack st's (its name is STACK_SERVICE), not the compose
    # project st_web's
    decision = d.dispatch(removed)
    assert decision is not None and decision.reconcile and st.woken_by == "event"
    assert not other.wake.is_set()
    mine = parse_event(_doc("service", "remove", {"name": "st_web_web"}))
    assert mine is not None and d.dispatch(mine) is None  # (st_web is not a stack)
    # a compose project's container is not the stack's, nor the other way round
    st.wake.clear()
    fake = parse_event(_doc("container", "die", {
        "name": "st-web-1", "exitCode": "1", "com.docker.compose.project": "st",
        "com.docker.compose.service": "web"}))
    assert fake is not None and d.dispatch(fake) is None and not st.wake.is_set()
