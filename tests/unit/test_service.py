"""The reconcile pass (TrackedService._converge) at the runner's edge: what pgod asks git,
compose and docker for, in what order, what it records, and the outcome of each pass.

A FakeRunner (tests/unit/fakes.py) plays upstream, the compose tool and the engine; the
policy, the state file and the checkout's files on disk are the real ones."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from pgo import config, xpgo
from pgo.runner import RunAs
from pgo.service import Paths, TrackedService
from pgo.state import Hold, Outcome, State, Verdict, VerdictKind
from tests.unit.fakes import FakeRunner

IMAGE = "local/busybox:1"


def web(**extra: Any) -> dict[str, Any]:
    return {"services": {"web": {"image": IMAGE, **extra}}}


def team_user(home: Path) -> RunAs:
    return RunAs(user="team", uid=4242, gid=4242, groups=(), home=str(home))


# the health gate's defaults here: the fake's containers are what they will be at once
GATE = xpgo.Settings(health_timeout=2.0, settle=0.0)


def tracked(tmp: Path, fake: FakeRunner, name: str = "svc") -> TrackedService:
    cfg = config.Service(name=name, user="team", repository="/srv/git/svc.git")
    svc = TrackedService(cfg, Paths(tmp / "pgo", tmp / "data"), fake, ("docker", "compose"),
                         as_user=team_user(tmp), defaults=GATE)
    svc.gate_poll = 0.02
    svc.prepare()
    return svc


def converge(svc: TrackedService) -> Outcome:
    return asyncio.run(svc.reconcile())


def head_of(svc: TrackedService) -> str:
    return (svc.checkout.path / ".git" / "HEAD").read_text().strip()


def on_disk(tmp: Path, name: str = "svc") -> dict[str, Any]:
    return dict(json.loads((tmp / "pgo" / ".pgo" / "services" / name / "state.json")
                           .read_text()))


@pytest.fixture
def fake() -> FakeRunner:
    return FakeRunner()


def test_first_pass_deploys_and_an_unchanged_commit_is_not_loaded_again(
        tmp_path: Path, fake: FakeRunner) -> None:
    first = fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    kinds = fake.kinds()
    assert kinds.index("compose config") < kinds.index("compose pull") < kinds.index(
        "compose up") and "compose down" not in kinds
    assert svc.state.applied_commit == first and on_disk(tmp_path)["applied_commit"] == first
    assert svc.state.verdict is None

    fake.calls.clear()
    assert converge(svc) is Outcome.UNCHANGED
    # the drift check: the project's containers, and the model's hashes once per model
    assert fake.kinds() == ["git remote", "git fetch", "docker ps", "docker ps",
                            "compose config"]
    fake.calls.clear()
    assert converge(svc) is Outcome.UNCHANGED
    assert fake.kinds() == ["git fetch", "docker ps", "docker ps"]


def test_a_refused_push_is_kept_out_of_the_checkout_and_judged_once(
        tmp_path: Path, fake: FakeRunner, caplog: pytest.LogCaptureFixture) -> None:
    good = fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    bad = fake.push(web(privileged=True))

    assert converge(svc) is Outcome.REFUSED
    assert head_of(svc) == good  # judged in a worktree beside it, never reset into it
    assert svc.state.desired_commit == bad and svc.state.applied_commit == good
    verdict = svc.state.verdict
    assert verdict is not None and verdict.commit == bad and verdict.kind is VerdictKind.POLICY
    assert any("privileged" in r for r in verdict.reasons)
    assert on_disk(tmp_path)["verdict"]["commit"] == bad
    assert svc.state.last_error.startswith(f"commit {bad[:8]} refused: ")
    assert "git worktree" in fake.kinds() and not list((tmp_path / "pgo" / ".pgo" / "services"
                                                        / "svc").glob("next-*"))

    # judged before: neither judged nor logged again, by this pgod or the next one
    fake.calls.clear()
    assert converge(svc) is Outcome.REFUSED
    again = tracked(tmp_path, fake)
    assert converge(again) is Outcome.REFUSED
    assert "git worktree" not in fake.kinds() and "compose up" not in fake.kinds()
    assert len([r for r in caplog.records if f"commit {bad[:8]} refused" in r.message]) == 1

    fixed = fake.push(web(environment={"A": "1"}))
    assert converge(again) is Outcome.DEPLOYED
    assert head_of(again) == fixed and again.state.verdict is None
    assert "verdict" not in on_disk(tmp_path) or on_disk(tmp_path)["verdict"] is None


def test_a_model_that_does_not_load_is_refused(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    fake.fail["compose config"] = (15, "service \"web\" has neither an image nor a build\n")
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.REFUSED
    assert svc.state.verdict is not None and svc.state.verdict.kind is VerdictKind.ERROR
    assert "compose up" not in fake.kinds()
    fake.calls.clear()
    assert converge(svc) is Outcome.REFUSED
    assert "compose config" not in fake.kinds()  # the same commit: not loaded again


def test_a_commit_that_can_not_be_judged_fails_the_pass_and_is_tried_again(
        tmp_path: Path, fake: FakeRunner) -> None:
    good = fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    new = fake.push(web(environment={"A": "1"}))
    fake.fail["git worktree"] = (128, "fatal: not a valid object name\n")
    assert converge(svc) is Outcome.FAILED
    assert head_of(svc) == good and svc.state.verdict is None
    assert svc.state.last_error.startswith(f"commit {new[:8]} could not be judged: ")
    del fake.fail["git worktree"]
    assert converge(svc) is Outcome.DEPLOYED and svc.state.applied_commit == new


def test_the_stop_file_downs_once_and_its_removal_brings_the_service_back(
        tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    stop = tmp_path / "pgo" / "svc.stop"
    stop.touch()
    assert converge(svc) is Outcome.STOP_FILE
    assert converge(svc) is Outcome.STOP_FILE
    assert fake.kinds().count("compose down") == 1 and fake.of("svc") == []
    assert svc.state.stop_file and on_disk(tmp_path)["stop_file"] is True
    stop.unlink()
    assert converge(svc) is Outcome.STARTED and not svc.state.stop_file


def test_a_hold_brings_nothing_up_until_up(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    svc.state.hold = Hold.DOWN
    fake.containers.clear()
    new = fake.push(web(environment={"A": "1"}))
    fake.calls.clear()
    assert converge(svc) is Outcome.HELD
    assert "compose up" not in fake.kinds() and fake.of("svc") == []
    assert on_disk(tmp_path)["hold"] == "down"
    asyncio.run(svc.apply())
    assert svc.state.hold is None and svc.state.applied_commit == new
    assert fake.of("svc")


def test_reload_false_waits_for_a_manual_up(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push({**web(), "x-pgo": {"reload": False}})
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    new = fake.push({**web(environment={"A": "1"}), "x-pgo": {"reload": False}})
    assert converge(svc) is Outcome.PENDING
    assert svc.state.awaiting_up and svc.state.applied_commit != new
    asyncio.run(svc.apply())
    assert not svc.state.awaiting_up and svc.state.applied_commit == new


def test_a_failed_up_rolls_back_and_the_commit_is_not_tried_again_until_up(
        tmp_path: Path, fake: FakeRunner) -> None:
    good = fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    bad = fake.push(web(environment={"A": "1"}))
    ups = []

    def no_space_once(call: Any) -> tuple[int, str]:
        ups.append(call)
        if len(ups) == 1:
            return 1, "Error response from daemon: no space left on device\n"
        return fake._compose(call)

    fake.on["compose up"] = no_space_once
    assert converge(svc) is Outcome.ROLLED_BACK
    assert svc.state.applied_commit == good == svc.state.last_good == head_of(svc)
    assert svc.state.last_error == (
        f"commit {bad[:8]} failed: compose up: exit status 1: Error response from daemon: "
        f"no space left on device; rolled back to commit {good[:8]}")
    verdict = svc.state.verdict
    assert verdict is not None and verdict.commit == bad and verdict.kind is VerdictKind.FAILED
    assert [c.service for c in fake.of("svc")] == ["web"]

    fake.calls.clear()  # not deployed again, by this pgod or the next
    assert converge(svc) is Outcome.FAILED
    assert converge(tracked(tmp_path, fake)) is Outcome.FAILED
    assert "compose up" not in fake.kinds() and "git worktree" not in fake.kinds()
    assert head_of(svc) == good

    assert asyncio.run(svc.apply()) is Outcome.DEPLOYED  # //up tries it again
    assert svc.state.applied_commit == bad == head_of(svc) and svc.state.verdict is None


def test_a_failed_up_and_a_failed_rollback_are_left_as_they_are(
        tmp_path: Path, fake: FakeRunner) -> None:
    good = fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    bad = fake.push(web(environment={"A": "1"}))
    fake.fail["compose up"] = (1, "Error response from daemon: no space left on device\n")
    assert converge(svc) is Outcome.FAILED
    assert svc.state.last_error == (
        f"commit {bad[:8]} failed: compose up: exit status 1: Error response from daemon: "
        f"no space left on device; the rollback to commit {good[:8]} failed too: compose up: "
        "exit status 1: Error response from daemon: no space left on device")
    fake.calls.clear()  # no loop: neither tried again
    assert converge(svc) is Outcome.FAILED and "compose up" not in fake.kinds()
    assert [a.outcome for a in svc.state.history] == [Outcome.DEPLOYED, Outcome.FAILED]


def test_a_missing_image_fails_before_anything_is_downed(tmp_path: Path,
                                                        fake: FakeRunner) -> None:
    fake.push(web())
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    fake.push(web(image="local/nothing:1"))
    fake.missing_images.add("local/nothing:1")
    fake.calls.clear()
    assert converge(svc) is Outcome.FAILED
    assert "compose down" not in fake.kinds() and fake.of("svc")


# -- nothing outside the judged model survives a deploy (issue 9, item 3) ---------------------

def data_mount(tmp: Path, sub: str = "", *, read_only: bool = False) -> dict[str, Any]:
    source = str(tmp / "data" / "svc") + (f"/{sub}" if sub else "")
    return {"type": "bind", "source": source, "target": f"/d{sub and '/' + sub}",
            "read_only": read_only}


def in_place(services: dict[str, Any]) -> dict[str, Any]:
    return {"services": services, "x-pgo": {"down": False}}


def test_a_service_moved_into_a_profile_is_removed_before_the_up(
        tmp_path: Path, fake: FakeRunner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fake.push(in_place({"w": {"image": IMAGE, "volumes": [data_mount(tmp_path)]}}))
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    (w,) = fake.of("svc")
    fake.push(in_place({"w": {"image": IMAGE, "volumes": [data_mount(tmp_path)],
                              "profiles": ["off"]},
                        "a": {"image": IMAGE, "volumes": [data_mount(tmp_path, "x")]}}))
    fake.calls.clear()
    assert converge(svc) is Outcome.DEPLOYED
    assert [c.service for c in fake.of("svc")] == ["a"]
    kinds = fake.kinds()
    assert kinds.index("docker stop") < kinds.index("docker rm") < kinds.index("compose up")
    assert fake.calls[kinds.index("docker rm")].argv[-1] == w.id
    assert fake.calls[kinds.index("docker rm")].as_user == svc.as_user
    assert any("removing container svc-w-1 (w, running): not in the model" in r.message
               for r in caplog.records)


def test_a_symlink_made_by_a_stray_before_its_removal_is_judged(
        tmp_path: Path, fake: FakeRunner) -> None:
    """The worst timing for the attack: `w`, judged out of the model, makes the data
    directory's `x` a symlink to `/` at the last moment it runs. The model is judged again
    after it is gone, so `a` never mounts the host's `/`."""
    fake.push(in_place({"w": {"image": IMAGE, "volumes": [data_mount(tmp_path)]}}))
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    good = svc.state.applied_commit
    (tmp_path / "data" / "svc" / "x").mkdir()
    bad = fake.push(in_place({"w": {"image": IMAGE, "volumes": [data_mount(tmp_path)],
                                    "profiles": ["off"]},
                              "a": {"image": IMAGE, "volumes": [data_mount(tmp_path, "x")]}}))

    def plant(call: Any) -> tuple[int, str]:
        x = tmp_path / "data" / "svc" / "x"
        x.rmdir()
        x.symlink_to("/")
        return fake._docker(call)

    fake.on["docker stop"] = plant
    fake.calls.clear()
    assert converge(svc) is Outcome.ROLLED_BACK  # refused at the last judgement
    # `a` never came up: the one up is the last good model's, `w` alone
    assert fake.kinds().count("compose up") == 1
    assert svc.state.applied_commit == good == head_of(svc)
    verdict = svc.state.verdict
    assert verdict is not None and verdict.commit == bad and verdict.kind is VerdictKind.POLICY
    assert [c.service for c in fake.of("svc")] == ["w"]


def test_in_place_a_changed_container_stops_before_the_up_an_unchanged_one_runs(
        tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(in_place({"db": {"image": IMAGE},
                        "w": {"image": IMAGE, "volumes": [data_mount(tmp_path)]}}))
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    db, w = sorted(fake.of("svc"), key=lambda c: c.service)
    fake.push(in_place({"db": {"image": IMAGE},
                        "w": {"image": IMAGE, "volumes": [data_mount(tmp_path, "y")]},
                        "a": {"image": IMAGE, "volumes": [data_mount(tmp_path, "x")]}}))
    fake.calls.clear()
    assert converge(svc) is Outcome.DEPLOYED
    kinds = fake.kinds()
    assert "compose down" not in kinds and "docker rm" not in kinds  # up replaces it
    assert kinds.index("docker stop") < kinds.index("compose up")
    assert fake.calls[kinds.index("docker stop")].argv[-1] == w.id
    after = {c.service: c.id for c in fake.of("svc")}
    assert after["db"] == db.id and after["w"] != w.id and "a" in after


def test_an_exited_stray_goes_too(tmp_path: Path, fake: FakeRunner) -> None:
    """A stopped container outside the model is removed as well: with `restart: always`
    dockerd would start it again when it restarts."""
    fake.push({"services": {"w": {"image": IMAGE, "restart": "always",
                                  "volumes": [data_mount(tmp_path)]}}})
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    (w,) = fake.of("svc")
    w.state = "exited"
    fake.push({"services": {"w": {"image": IMAGE, "restart": "always", "profiles": ["off"],
                                  "volumes": [data_mount(tmp_path)]},
                            "a": {"image": IMAGE, "volumes": [data_mount(tmp_path, "x")]}}})
    fake.calls.clear()
    assert converge(svc) is Outcome.DEPLOYED
    assert [c.service for c in fake.of("svc")] == ["a"]
    assert not any("--hash" in c.argv for c in fake.calls)  # nothing of the model ran


def test_a_stray_left_by_an_older_pgod_goes_at_the_first_pass(tmp_path: Path,
                                                              fake: FakeRunner) -> None:
    """Deployed before strays were removed: the model did not change since, so no deploy
    comes; the first pass of a pgod removes the stray all the same, and leaves the rest."""
    fake.push(in_place({"w": {"image": IMAGE}, "a": {"image": IMAGE}}))
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    fake.push(in_place({"w": {"image": IMAGE, "profiles": ["off"]}, "a": {"image": IMAGE}}))
    listings = []

    def older_pgod(call: Any) -> tuple[int, str]:  # (no listing, no removal before the up)
        if "--all" in call.argv:
            listings.append(call)
            if len(listings) == 1:
                return 0, ""
        return fake._docker(call)

    fake.on["docker ps"] = older_pgod
    assert converge(svc) is Outcome.DEPLOYED
    del fake.on["docker ps"]
    (a,) = [c for c in fake.of("svc") if c.service == "a"]
    a.config_hash = "from another compose version"
    fake.calls.clear()
    # the stray goes; then `a`, whose configuration hash is not the model's, is drift and
    # made anew (pgo.repair)
    assert converge(tracked(tmp_path, fake)) is Outcome.STARTED
    (again,) = fake.of("svc")
    assert again.service == "a" and again.config_hash != a.config_hash
    assert "docker stop" in fake.kinds()
    fake.calls.clear()
    assert converge(svc) is Outcome.UNCHANGED  # (later passes find nothing to do)
    assert "docker stop" not in fake.kinds() and "compose up" not in fake.kinds()


def test_a_root_service_keeps_composes_own_behaviour(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push(in_place({"w": {"image": IMAGE}}))
    cfg = config.Service(name="svc", user="root", repository="/srv/git/svc.git")
    svc = TrackedService(cfg, Paths(tmp_path / "pgo", tmp_path / "data"), fake,
                         ("docker", "compose"), as_user=RunAs("root", 0, 0, (), str(tmp_path)))
    svc.prepare()
    assert converge(svc) is Outcome.DEPLOYED
    fake.push(in_place({"w": {"image": IMAGE, "profiles": ["tools"]}, "a": {"image": IMAGE}}))
    assert converge(svc) is Outcome.DEPLOYED
    assert sorted(c.service for c in fake.of("svc")) == ["a", "w"]
    assert "docker rm" not in fake.kinds() and not any("--hash" in c.argv for c in fake.calls)


def test_down_first_asks_for_no_hashes(tmp_path: Path, fake: FakeRunner) -> None:
    fake.push({**web(), "x-pgo": {"down": True}})
    svc = tracked(tmp_path, fake)
    assert converge(svc) is Outcome.DEPLOYED
    fake.push({**web(environment={"A": "1"}), "x-pgo": {"down": True}})
    fake.calls.clear()
    assert converge(svc) is Outcome.DEPLOYED
    kinds = fake.kinds()
    listing = next(i for i, c in enumerate(fake.calls) if "--all" in c.argv)
    assert kinds.index("compose down") < listing < kinds.index("compose up")
    assert not any("--hash" in c.argv for c in fake.calls) and "docker rm" not in kinds


# -- the state file ------------------------------------------------------------------------

def test_state_round_trip_and_an_older_pgods_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    st = State(applied_commit="a" * 40, hold=Hold.STOP, awaiting_up=True,
               verdict=Verdict("b" * 40, "d" * 64, VerdictKind.POLICY, ("privileged",)))
    st.save(path)
    assert State.load(path) == st
    assert State.load(path).durable_part() == st.durable_part()

    path.write_text(json.dumps({
        "applied_commit": "a" * 40, "applied_model": "m", "applied_at": 12,
        "desired_commit": "b" * 40, "last_error": "x", "refused_commit": "b" * 40,
        "refused_model": "", "violations": ["compose service app: privileged"],
        "pending_reload": True, "stopped": True, "held": "down", "unknown": 1}))
    old = State.load(path)
    assert old == State(applied_commit="a" * 40, last_good="a" * 40, applied_model="m",
                        applied_at=12.0,
                        desired_commit="b" * 40, last_error="x", awaiting_up=True,
                        stop_file=True, hold=Hold.DOWN,
                        verdict=Verdict("b" * 40, "", VerdictKind.POLICY,
                                        ("compose service app: privileged",)))
    path.write_text(json.dumps({"applied_commit": "a", "held": ""}))
    assert State.load(path) == State(applied_commit="a", last_good="a")


@pytest.mark.parametrize("bad", ["[]", "{", '{"hold": "sideways"}', '{"applied_at": "x"}',
                                 '{"verdict": {"commit": 1}}'])
def test_an_unreadable_state_file_is_a_fresh_state(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(bad)
    assert State.load(path) == State()
