"""engine = "swarm": the key, the swarm policy (tests/policy-testdata/swarm, judged with the
real compose tool), what swarm ignores or refuses, the stack file, the convergence gate."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from pgo import compose, config
from pgo.errors import ConfigError
from pgo.policy import judge
from pgo.service import Paths, TrackedService
from pgo.state import Outcome
from pgo.swarm import converge, stackfile
from tests.unit.fakes import FakeRunner
from tests.unit.test_policy import (
    DATADIR,
    HAS_V2,
    NETS,
    SERVICE,
    allowed,
    assert_outcome,
    compose_model,
    expected,
)
from tests.unit.test_service import GATE, team_user

SWARM_DATA = Path(__file__).resolve().parents[1] / "policy-testdata" / "swarm"
CASES = sorted(SWARM_DATA.glob("*.yml"))


def parse(text: str) -> config.Config:
    return config.parse(text, "pgo.toml", known_user=lambda u: True)


BASE = '[[services]]\nname = "s"\nuser = "u"\nrepository = "r"\n'


def test_engine_defaults_to_compose_and_takes_swarm() -> None:
    assert parse(BASE).services[0].engine == "compose"
    svc = parse(BASE + 'engine = "swarm"\n').services[0]
    assert svc.engine == "swarm" and svc.is_swarm


@pytest.mark.parametrize("value", ['"kubernetes"', "1", '""'])
def test_engine_is_strict(value: str) -> None:
    with pytest.raises(ConfigError, match=r"pgo.toml: service s: key 'engine': must be"):
        parse(BASE + f"engine = {value}\n")


@pytest.mark.skipif(not HAS_V2, reason="needs `docker compose` (v2)")
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_swarm_testdata(path: Path) -> None:
    model = compose_model(path, compose.V2)
    found = judge(model, SERVICE, "team", NETS, SWARM_DATA, DATADIR, allow=allowed(path),
                  engine="swarm")
    assert_outcome(path.name, expected(path), found)


@pytest.mark.skipif(not HAS_V2, reason="needs `docker compose` (v2)")
def test_the_swarm_rules_are_swarms_only() -> None:
    """A bind of the checkout and an allowed port are fine for compose."""
    for name in ("refused_swarm-bind-checkout.yml", "refused_swarm-ports-allowed.yml"):
        path = SWARM_DATA / name
        model = compose_model(path, compose.V2)
        assert judge(model, SERVICE, "team", NETS, SWARM_DATA, DATADIR,
                     allow=allowed(path)) == []


def test_a_root_swarm_service_is_not_judged() -> None:
    model = compose.Model("", {"services": {"a": {"ports": ["80:80"]}}})
    assert judge(model, SERVICE, "root", NETS, SWARM_DATA, DATADIR, engine="swarm") == []


def test_unsupported_keys_are_one_entry_per_compose_service() -> None:
    model = {"services": {
        "web": {"image": "x", "build": {"context": "."}, "container_name": "w",
                "depends_on": {"db": {"condition": "service_healthy"},
                               "cache": {"condition": "service_started"}}},
        "db": {"image": "y", "restart": "always"},
        "ok": {"image": "z", "depends_on": {"db": {"condition": "service_started"}}}}}
    found = stackfile.unsupported(model)
    assert len(found) == 2
    assert found[0].startswith("compose service db: restart (")
    assert found[1].startswith("compose service web: build (swarm builds nothing")
    assert "container_name" in found[1] and "depends_on db condition service_healthy" \
        in found[1] and "cache" not in found[1]


def test_the_stack_file_translates_only_what_means_the_same() -> None:
    model: dict[str, Any] = {"name": "s", "services": {"web": {
        "image": "x", "entrypoint": None, "depends_on": {"db": {"condition": "service_started",
                                            "required": True}},
        "volumes": [{"type": "bind", "source": "/d", "target": "/t",
                     "bind": {"create_host_path": True}}],
        "ports": [{"target": 80, "published": "8080", "mode": "ingress"}]}}}
    doc = stackfile.to_stack(model)
    assert "name" not in doc and model["name"] == "s"
    assert "entrypoint" not in doc["services"]["web"]
    web = doc["services"]["web"]
    assert web["depends_on"] == ["db"]
    assert web["volumes"] == [{"type": "bind", "source": "/d", "target": "/t"}]
    assert web["ports"][0]["published"] == 8080
    assert model["services"]["web"]["volumes"][0]["bind"]  # (the model is left alone)


def _svc(name: str, replicas: int | None, update: str | None = None) -> dict[str, Any]:
    mode: dict[str, Any] = {"Replicated": {"Replicas": replicas}} if replicas is not None \
        else {"Global": {}}
    doc: dict[str, Any] = {"ID": name, "Spec": {"Name": f"st_{name}", "Mode": mode}}
    if update:
        doc["UpdateStatus"] = {"State": update, "Message": "update " + update}
    return doc


def _task(service: str, state: str, at: str = "2026-01-01T00:00:00Z", desired: str =
          "running", err: str = "", code: int = 0) -> dict[str, Any]:
    return {"ServiceID": service, "Slot": 1, "DesiredState": desired,
            "Status": {"State": state, "Timestamp": at, "Err": err,
                       "ContainerStatus": {"ExitCode": code}}}


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_converged_when_every_service_runs_its_tasks_settled() -> None:
    services = [_svc("web", 2), _svc("db", 1, "completed")]
    tasks = [_task("web", "running"), _task("web", "running"), _task("db", "running"),
             _task("db", "shutdown", desired="shutdown")]
    r = converge.assess("st", ["db", "web"], services, tasks, T0 - 5, T0 + 10, 5)
    assert r.healthy and r.why == "2 swarm service(s) converged"
    r = converge.assess("st", ["db", "web"], services, tasks, T0 - 5, T0 + 2, 5)
    assert not r.healthy and not r.failed and "web: 0 of 2 task(s) settled" in r.why


def test_waiting_for_tasks_services_and_updates() -> None:
    services = [_svc("web", 2, "updating")]
    tasks = [_task("web", "starting")]
    r = converge.assess("st", ["web", "db"], services, tasks, T0, T0 + 1, 0)
    assert not r.healthy and not r.failed
    assert r.why == "web: update updating; db: no swarm service yet"
    r = converge.assess("st", ["web"], [_svc("web", 2)], tasks, T0, T0 + 1, 0)
    assert r.why == "web: 0 of 2 task(s) running"


def test_a_task_failed_since_the_deploy_fails_at_once() -> None:
    tasks = [_task("web", "running"),
             _task("web", "failed", "2026-01-01T00:00:03Z", "shutdown",
                   "task: non-zero exit (3)", 3)]
    r = converge.assess("st", ["web"], [_svc("web", 1)], tasks, T0, T0 + 9, 0)
    assert r.failed and r.why == ("web: task st_web.1 failed: task: non-zero exit (3) "
                                  "(exit code 3)")
    # one that failed before this deploy is history
    r = converge.assess("st", ["web"], [_svc("web", 1)], tasks, T0 + 5, T0 + 9, 0)
    assert r.healthy


@pytest.mark.parametrize("state", ["paused", "rollback_completed"])
def test_an_update_swarm_gave_up_fails(state: str) -> None:
    r = converge.assess("st", ["web"], [_svc("web", 1, state)], [], T0, T0, 0)
    assert r.failed and r.why == f"web: swarm's update {state}: update {state}"


def test_a_global_service_wants_its_live_tasks_running() -> None:
    tasks = [_task("web", "running"), _task("web", "preparing")]
    r = converge.assess("st", ["web"], [_svc("web", None)], tasks, T0, T0 + 1, 0)
    assert not r.healthy and r.why == "web: 1 of 2 task(s) running"


def test_a_missing_bind_source_is_created_or_named_before_the_deploy(tmp_path: Path) -> None:
    """Short syntax (compose's create_host_path): Stack.up creates it; long syntax without:
    one entry naming the compose service and the path, before swarm rejects the tasks."""
    there = tmp_path / "there"
    there.mkdir()
    model = {"services": {
        "web": {"volumes": [
            {"type": "bind", "source": str(tmp_path / "short"), "target": "/a",
             "bind": {"create_host_path": True}},
            {"type": "bind", "source": str(tmp_path / "long"), "target": "/b"},
            {"type": "bind", "source": str(there), "target": "/c"},
            {"type": "volume", "source": "v", "target": "/d"}]},
        "db": {"volumes": [{"type": "bind", "source": str(tmp_path / "db"), "target": "/e",
                            "bind": {"create_host_path": False}}]}}}
    assert stackfile.bind_sources(model) == [
        ("db", str(tmp_path / "db"), False), ("web", str(tmp_path / "short"), True),
        ("web", str(tmp_path / "long"), False), ("web", str(there), False)]
    missing = stackfile.missing_sources(model, lambda p: Path(p).exists())
    assert missing == [
        f"compose service {svc}: bind mount source {tmp_path / svc_path} does not exist on "
        "this node, and swarm creates none (create it, or use the short syntax or "
        "bind.create_host_path: true and pgod creates it as the service's user)"
        for svc, svc_path in (("db", "db"), ("web", "long"))]


def tracked(tmp: Path, fake: FakeRunner, name: str, engine: str = "compose"
            ) -> TrackedService:
    """A tracked service as pgo.daemon makes one, the runner being `fake`."""
    cfg = config.Service(name=name, user="team", repository=f"/srv/git/{name}.git",
                         engine=engine)
    svc = TrackedService(cfg, Paths(tmp / "pgo", tmp / "data"), fake, ("docker", "compose"),
                         as_user=team_user(tmp), defaults=GATE)
    svc.gate_poll = 0.02
    svc.prepare()
    return svc


def _engine(state: str, manager: bool) -> Any:
    """`docker info --format {{json .}}` of an engine in swarm state `state`."""
    doc = {"Swarm": {"LocalNodeState": state, "ControlAvailable": manager}}
    return lambda call: (0, json.dumps(doc))


@pytest.mark.parametrize(("state", "manager", "why"), [
    ("inactive", False, "the docker engine is not in a swarm (its state: inactive); "
                        "engine = \"swarm\" needs pgod on a swarm manager (docker swarm init)"),
    ("active", False, "the docker engine is a swarm worker, not a manager; engine = "
                      "\"swarm\" needs pgod on a swarm manager"),
])
def test_not_a_manager_fails_the_swarm_service_in_one_line_and_no_other(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, state: str, manager: bool,
        why: str) -> None:
    """The engine is asked at the runner's edge (no engine socket here: `docker info`);
    the swarm service's pass fails before anything is fetched or deployed, the compose
    service beside it deploys, and the check is made again on the next pass."""
    fake = FakeRunner()
    fake.on["docker info"] = _engine(state, manager)
    fake.push({"services": {"web": {"image": "local/busybox:1"}}})
    swarm = tracked(tmp_path, fake, "sw", engine="swarm")
    compose_svc = tracked(tmp_path, fake, "web")
    with caplog.at_level(logging.INFO):
        assert asyncio.run(swarm.reconcile()) is Outcome.FAILED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"[sw] {why}"]
    assert swarm.state.last_error == why
    assert fake.kinds() == ["docker info"]  # (nothing fetched, nothing deployed)

    fake.calls.clear()
    assert asyncio.run(compose_svc.reconcile()) is Outcome.DEPLOYED
    assert "docker info" not in fake.kinds() and "compose up" in fake.kinds()

    # the engine made a manager: the next pass goes on past the check (to a fetch that
    # fails here, which shows it was reached)
    fake.calls.clear()
    fake.on["docker info"] = _engine("active", True)
    fake.fail["git clone"] = (128, "fatal: not today\n")
    assert asyncio.run(swarm.reconcile()) is Outcome.FAILED
    assert fake.kinds()[:2] == ["docker info", "git clone"]
    assert "swarm" not in (swarm.state.last_error or "")
