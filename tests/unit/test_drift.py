"""Drift, the pure core: which events are repaired, which are intent, the crash-loop cap, and
what differs between a project's containers and its model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgo import drift
from pgo.drift import Budget, Difference, Intent, RepairBudget, decide
from pgo.engine import Container
from pgo.events import Action, ContainerEvent

H_WEB = "a" * 64
H_DB = "b" * 64
HASHES = {"web": H_WEB, "db": H_DB}


def ev(action: Action, service: str = "web", **kw: object) -> ContainerEvent:
    base = dict(project="shop", service=service, container="c" * 64,
                name=f"shop-{service}-1", time=1000.0, config_hash=HASHES.get(service, ""))
    base.update(kw)
    return ContainerEvent(action, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("event", [
    ev(Action.DIE, exit_code=137), ev(Action.DIE, exit_code=1), ev(Action.STOP),
    ev(Action.DESTROY), ev(Action.OOM), ev(Action.UNHEALTHY),
    ev(Action.DIE, exit_code=0),  # a long-running service that ended is not done
])
def test_a_container_that_ends_is_repaired(event: ContainerEvent) -> None:
    d = decide(event, Intent(hashes=HASHES))
    assert d.reconcile, d
    assert d.reason.startswith("container shop-web-1 ")


@pytest.mark.parametrize("event", [
    ev(Action.KILL, signal=1),  # a signal (HUP: reload); its end, if any, comes as die
    ev(Action.HEALTHY), ev(Action.PAUSE), ev(Action.UNPAUSE), ev(Action.RESTART),
    ev(Action.START), ev(Action.CREATE),  # as the model says
    ev(Action.DIE, exit_code=1, oneoff=True),  # `compose run`
])
def test_what_is_not_a_repair(event: ContainerEvent) -> None:
    assert not decide(event, Intent(hashes=HASHES)).reconcile


def test_a_one_shot_container_that_finished_is_done() -> None:
    intent = Intent(hashes=HASHES, oneshot=frozenset({"migrate"}))
    d = decide(ev(Action.DIE, "migrate", exit_code=0), intent)
    assert not d.reconcile and "one-shot" in d.reason
    assert decide(ev(Action.DIE, "migrate", exit_code=3), intent).reconcile


@pytest.mark.parametrize("intent, why", [
    (Intent(stop_file=True), "stop file"),
    (Intent(held="down"), "held by //down"),
    (Intent(held="stop"), "held by //stop"),
    (Intent(frozen=True), "frozen"),
    (Intent(first_deploy_failed=True), "first deploy failed"),
    (Intent(busy=True), "pgod's own doing"),
    (Intent(quiet_until=1000.0), "pgod's own doing"),
    (Intent(crash_loop="crash loop: 5 repairs"), "crash loop"),
    (Intent(deployed=False), "nothing deployed"),
])
def test_intent_is_respected(intent: Intent, why: str) -> None:
    for event in (ev(Action.DESTROY), ev(Action.CREATE, config_hash="f" * 64)):
        d = decide(event, replace(intent, hashes=HASHES))
        assert not d.reconcile
        assert why in d.reason


def test_an_event_after_pgods_own_action_is_repaired() -> None:
    assert decide(ev(Action.DESTROY, time=1000.5), Intent(quiet_until=1000.0)).reconcile


def test_a_container_not_of_the_model_is_drift() -> None:
    d = decide(ev(Action.CREATE, config_hash="f" * 64), Intent(hashes=HASHES))
    assert d.reconcile and "configuration is not the model's" in d.reason
    d = decide(ev(Action.START, "debug", config_hash="f" * 64), Intent(hashes=HASHES))
    assert d.reconcile and "not in the model" in d.reason
    # without the model's hashes a beginning is compared with the model by a pass
    d = decide(ev(Action.CREATE, config_hash="f" * 64), Intent())
    assert d.reconcile and "compared with the model" in d.reason
    assert not decide(ev(Action.CREATE), Intent(busy=True)).reconcile


@pytest.mark.parametrize(("project", "name", "ok"), [
    ("shop", "shop-web-1", True), ("shop", "shop_web_1", True),  # v2, v1 names
    ("web", "web-api-x-1", False),  # web-api's, whatever its label says
    ("web-api", "web-api-x-1", True),
    ("shop", "evil-web-1", False),  # a label set in another project's compose file (v1)
    ("shop", "shopping-1", False), ("nosuch", "nosuch-1", False),
])
def test_a_container_belongs_by_its_name(project: str, name: str, ok: bool) -> None:
    assert drift.belongs(project, name, ["shop", "web", "web-api", "evil"]) is ok


# -- crash-loop cap --------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_at_most_five_repairs_in_five_minutes() -> None:
    assert (drift.REPAIRS_MAX, drift.REPAIR_WINDOW) == (5, 300.0)
    clock = Clock()
    budget = RepairBudget(clock=clock)
    for _ in range(5):
        assert budget.take("web") is Budget.REPAIR
        clock.now += 10
    assert budget.reason("web") == ""
    assert budget.take("web") is Budget.LOOP_STARTED  # once: mark failed, notify
    assert budget.take("web") is Budget.LOOP
    assert budget.take("other") is Budget.REPAIR  # per service
    reason = budget.reason("web")
    assert reason.startswith("crash loop: 5 repairs within 5m; left alone until a new "
                             "commit, //up, or ")
    assert budget.looping("web")
    clock.now = 100.0 + 300.0  # the first repair leaves the window
    assert not budget.looping("web") and budget.reason("web") == ""
    assert budget.take("web") is Budget.REPAIR
    assert budget.take("web") is Budget.LOOP_STARTED


def test_a_new_commit_or_up_clears_the_loop() -> None:
    budget = RepairBudget(limit=2, window=60, clock=Clock())
    for _ in range(3):
        budget.take("web")
    assert budget.looping("web")
    budget.clear("web")
    assert not budget.looping("web") and budget.take("web") is Budget.REPAIR


# -- configuration drift ---------------------------------------------------------------

V2_OUTPUT = f"db {H_DB}\nweb {H_WEB}\n"


def test_parse_hashes() -> None:
    assert drift.parse_hashes(V2_OUTPUT) == {"db": H_DB, "web": H_WEB}
    assert drift.parse_hashes("\n") == {}
    with pytest.raises(ValueError, match="not a `SERVICE HASH` line"):
        drift.parse_hashes("WARN[0000] something\nweb " + H_WEB)


MODEL = {"services": {
    "web": {"image": "x", "deploy": {"replicas": 2}},
    "db": {"image": "y"},
    "migrate": {"image": "z"},
    "api": {"image": "z", "scale": 0},
    "worker": {"image": "z", "restart": "no", "depends_on": {
        "migrate": {"condition": "service_completed_successfully"},
        "db": {"condition": "service_started"}}},
}}
MODEL_HASHES = {**HASHES, "migrate": "c" * 64, "worker": "d" * 64, "api": "e" * 64}


def c(service: str, n: int = 1, *, state: str = "running", status: str = "Up 1 second",
      config_hash: str | None = None, oneoff: bool = False) -> Container:
    return Container(id=f"{service}{n}", name=f"shop-{service}-{n}", project="shop",
                     service=service, state=state, health="", status=status,
                     config_hash=MODEL_HASHES.get(service, "") if config_hash is None
                     else config_hash, number=n, oneoff=oneoff, created=0.0)


GOOD = [c("web", 1), c("web", 2), c("db"), c("migrate", state="exited",
                                                    status="Exited (0) 1 minute ago"),
        c("worker", state="exited", status="Exited (0) 5 seconds ago")]


def test_model_helpers() -> None:
    assert drift.expected_scale(MODEL) == {"web": 2, "db": 1, "migrate": 1, "api": 0,
                                           "worker": 1}
    assert drift.oneshot_services(MODEL) == {"migrate", "worker"}
    assert drift.expected_scale({"services": "x"}) == {}


def test_what_up_made_is_no_drift() -> None:
    assert drift.compare(MODEL_HASHES, MODEL, GOOD) == []
    # a finished one-shot's container may be removed (`docker container prune`): its job
    # is not run again for that
    assert drift.compare(MODEL_HASHES, MODEL, GOOD[:3]) == []
    assert drift.compare(MODEL_HASHES, MODEL, [*GOOD, c("web", 3, oneoff=True)]) == []
    impostor = replace(c("web", 3), name="evil-web-1")  # labelled shop by evil's file (v1)
    assert drift.compare(MODEL_HASHES, MODEL, [*GOOD, impostor], ["shop", "evil"]) == []
    assert drift.compare(MODEL_HASHES, MODEL, [*GOOD, impostor]) != []


@pytest.mark.parametrize("containers, expect", [
    ([x for x in GOOD if x.name != "shop-web-2"],
     [Difference("web", "missing", "1 container missing (1 of 2)")]),
    ([x for x in GOOD if x.service != "web"],
     [Difference("web", "missing", "2 containers missing (0 of 2)")]),
    ([*GOOD, c("web", 3)], [Difference("web", "extra", "1 container too many (3, the model "
                                                       "says 2)")]),
    ([*GOOD, c("debug")], [Difference("debug", "unknown", "not in the model (shop-debug-1)")]),
    ([x if x.service != "db" else c("db", config_hash="0" * 64) for x in GOOD],
     [Difference("db", "changed", "configuration is not the model's (shop-db-1)")]),
    ([x if x.service != "db" else c("db", state="exited", status="Exited (137) now")
      for x in GOOD], [Difference("db", "stopped", "not running (shop-db-1 exited)")]),
    ([x if x.service != "migrate" else c("migrate", state="exited", status="Exited (1) now")
      for x in GOOD], [Difference("migrate", "stopped", "not running (shop-migrate-1 exited)")]),
])
def test_drift(containers: list[Container], expect: list[Difference]) -> None:
    assert drift.compare(MODEL_HASHES, MODEL, containers) == expect


def test_describe_is_one_line() -> None:
    diffs = drift.compare(MODEL_HASHES, MODEL, [c("web", 1), c("debug")])
    assert drift.describe(diffs) == ("debug: not in the model (shop-debug-1); db: 1 container "
                                     "missing (0 of 1); web: 1 container missing (1 of 2)")
