"""pgod keeps a compose project in line with its git repository (real dockerd, git)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from tests.e2e import harness as h


def service(name: str, up: h.Upstream, **kw: object) -> dict[str, object]:
    return {"name": name, "user": h.USER, "repository": up.url, **kw}


def start(base: Path, pgods: list[h.Pgod], services: list[dict[str, object]],
          **kw: object) -> h.Pgod:
    p = h.Pgod(base, services, **kw)  # type: ignore[arg-type]
    pgods.append(p)
    return p.start()


def test_first_deploy_runs_as_the_service_user(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream, env=["GREETING=s3cret-value"])])
    pgod.wait_log(rf"\[{name}\] deploying commit {upstream.head()[:8]}")
    ids = h.wait_until(lambda: h.container_ids(name), what="a running container")
    assert h.http_get_in(name, "web").strip() == "hello from pgo"
    # the checkout and data directory belong to the service user, not writable by others
    uid = pwd.getpwnam(h.USER).pw_uid
    for d in (pgod.dir / name, pgod.datadir / name):
        st = os.stat(d)
        assert st.st_uid == uid and not st.st_mode & 0o002, d
    assert (pgod.dir / name / "compose.yaml").exists()
    # the project is the service name; the environment value never reaches the log
    assert len(ids) == 1
    assert "s3cret-value" not in pgod.log()


def test_upstream_change_redeploys(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    upstream.write("compose.yaml", h.WEB.replace('"8080"]', '"8080"]\n    environment: [V=2]'))
    commit = upstream.commit("v2")
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]}")
    second = h.wait_until(lambda: (h.container_ids(name) - first), what="a new container")
    env = h.inspect(next(iter(second)))["Config"]["Env"]
    assert "V=2" in env
    h.wait_until(lambda: pgod.state(name).get("applied_commit") == commit, what="applied")


def test_change_outside_compose_model_restarts_nothing(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    upstream.write("README", "docs only\n")
    upstream.commit("docs")
    pgod.wait_log(rf"\[{name}\] upstream moved")
    h.next_cycle(pgod, name)
    assert h.container_ids(name) == first


def test_reload_false_takes_commit_but_waits_for_manual_up(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    upstream.write("compose.yaml", h.WEB + "x-pgo:\n  reload: false\n")
    upstream.commit("no reload")
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    upstream.write("compose.yaml", h.WEB.replace("8080\"]\n", "8080\"]\n    environment: [V=3]\n")
                   + "x-pgo:\n  reload: false\n")
    commit = upstream.commit("v3")
    pgod.wait_log(rf"\[{name}\] commit {commit[:8]} taken; x-pgo reload is false")
    assert h.container_ids(name) == first
    h.wait_until(lambda: pgod.state(name).get("awaiting_up") is True, what="pending state")
    assert h.checkout_head(pgod.dir / name) == commit


def test_down_false_recreates_only_what_changed(base, upstream, projects, pgods):
    """x-pgo: {down: false}: a change is deployed by `up` alone; the compose service that did
    not change keeps its container, the one that did is recreated, a removed one goes."""
    name = h.unique()
    projects.append(name)
    side = "  side:\n    image: pgoimg/busybox:1\n    pull_policy: if_not_present\n" \
           "    command: [sleep, '3600']\n"
    upstream.write("compose.yaml", h.WEB + side + side.replace("side", "gone")
                   + "x-pgo:\n  down: false\n")
    upstream.commit("three services")
    pgod = start(base, pgods, [service(name, upstream)])
    pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")

    def by_service() -> dict[str, str]:
        return {c["Labels"].split("com.docker.compose.service=")[1].split(",")[0]: c["ID"]
                for c in h.containers(name)}
    before = by_service()
    assert set(before) == {"web", "side", "gone"}
    upstream.write("compose.yaml", h.WEB + "    environment: [V=2]\n" + side
                   + "x-pgo:\n  down: false\n")
    commit = upstream.commit("web changes, gone goes")
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]} \(poll, in place")
    pgod.wait_log(rf"\[{name}\] reconcile \(poll\) done: deployed")
    after = by_service()
    assert set(after) == {"web", "side"}
    assert after["side"] == before["side"], "the unchanged container was not touched"
    assert after["web"] != before["web"]
    assert "V=2" in h.inspect(after["web"])["Config"]["Env"]


def test_restart_without_upstream_change_restarts_no_container(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    pgod.wait_log(rf"\[{name}\] deploying commit")
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    started = {c: h.inspect(c)["State"]["StartedAt"] for c in first}
    assert pgod.stop() == 0, "SIGTERM exits cleanly"
    assert h.container_ids(name) == first, "containers keep running after pgod exits"
    pgod.start()
    pgod.wait_log(rf"\[{name}\] tracking")
    h.next_cycle(pgod, name)
    assert h.container_ids(name) == first
    assert {c: h.inspect(c)["State"]["StartedAt"] for c in first} == started
    assert pgod.count(r"deploying commit") == 1


def test_stop_file_downs_and_removal_brings_back(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    h.wait_until(lambda: h.container_ids(name), what="first deploy")
    pgod.stopfile(name).touch()
    pgod.wait_log(rf"\[{name}\] stop file .* present: downing")
    h.wait_until(lambda: not h.container_ids(name), what="the project to be down")
    h.wait_until(lambda: pgod.state(name).get("stop_file") is True,
                 what="state: the stop file")
    pgod.stopfile(name).unlink()
    pgod.wait_log(rf"\[{name}\] stop file gone")
    h.wait_until(lambda: h.container_ids(name), what="the project to come back")


def test_stop_file_at_start_starts_nothing(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = h.Pgod(base, [service(name, upstream)])
    pgods.append(pgod)
    pgod.dir.mkdir(parents=True)
    pgod.stopfile(name).touch()
    pgod.start()
    pgod.wait_log(rf"\[{name}\] stop file .* present")
    assert not h.container_ids(name)


def test_stale_directory_is_downed_and_removed(base, upstream, projects, pgods):
    keep, gone = h.unique(), h.unique()
    projects += [keep, gone]
    pgod = start(base, pgods, [service(keep, upstream), service(gone, upstream)])
    h.wait_until(lambda: h.container_ids(gone) and h.container_ids(keep), what="both up")
    pgod.stop()
    pgod.write_config([service(keep, upstream)])
    pgod.start()
    pgod.wait_log(rf"\[{gone}\] stale")
    h.wait_until(lambda: not h.container_ids(gone), what="the stale project to be down")
    h.wait_until(lambda: not (pgod.dir / gone).exists(), what="the stale checkout to go")
    assert h.container_ids(keep)


def test_unreachable_upstream_keeps_running(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    moved = upstream.bare.with_name("moved.git")
    upstream.bare.rename(moved)
    pgod.wait_log(rf"\[{name}\] upstream unreachable, keeping what runs")
    assert h.container_ids(name) == first
    h.wait_until(lambda: "git fetch" in pgod.state(name).get("last_error", ""),
                 what="the fetch error in the state")
    moved.rename(upstream.bare)
    upstream.write("compose.yaml", h.WEB.replace('"8080"]', '"8080"]\n    environment: [V=4]'))
    commit = upstream.commit("after outage")
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]}")


def test_force_push_is_followed_without_downing(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    upstream.write("notes", "one\n")
    upstream.commit("extra")
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    pgod.wait_log(rf"\[{name}\] deploying commit")
    upstream.git("reset", "-q", "--hard", "HEAD~1")
    upstream.write("other", "rewritten history\n")
    rewritten = upstream.commit("rewrite", force=True)
    pgod.wait_log(rf"\[{name}\] upstream moved .* -> {rewritten[:8]}")
    assert h.container_ids(name) == first, "same compose model: nothing restarted"
    h.wait_until(lambda: h.checkout_head(pgod.dir / name) == rewritten,
                 what="checkout at the rewritten commit")


def test_damaged_checkout_is_recloned_without_downing(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    pgod.wait_log(rf"\[{name}\] deploying commit")
    h.cleanup_dir(pgod.dir / name / ".git" / "objects")
    pgod.wait_log(rf"\[{name}\] .*cloning it again")
    pgod.wait_log(rf"\[{name}\] cloning", count=2)
    h.next_cycle(pgod, name)
    assert h.container_ids(name) == first


def test_push_with_missing_image_keeps_old_containers(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    pgod.wait_log(rf"\[{name}\] deploying commit")
    upstream.write("compose.yaml", h.WEB.replace("pgoimg/busybox:1", "local/nonexistent:9"))
    commit = upstream.commit("bad image")
    pgod.wait_log(rf"\[{name}\] .*{commit[:8]}: image\(s\) not available after pull")
    assert h.container_ids(name) == first


def test_directories_pgod_did_not_make_are_left_alone(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = h.Pgod(base, [service(name, upstream)])
    pgods.append(pgod)
    other = pgod.dir / "someones-data"
    other.mkdir(parents=True)
    (other / "precious").write_text("keep me\n")
    pgod.start()
    pgod.wait_log(r"someones-data is not a service directory pgod made; leaving it alone")
    h.next_cycle(pgod, name)
    assert (other / "precious").read_text() == "keep me\n"


def test_project_downed_by_hand_comes_back(base, upstream, projects, pgods):
    # level-triggered: the engine's events wake a pass at once (else the next poll would);
    # the pass sees that no container of the project runs and brings the model back up
    # (as drift: the model's container is not running, or missing)
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    pgod.wait_log(rf"\[{name}\] deployed commit")  # (its health gate ended)
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    h.down_project(name)
    assert not h.container_ids(name)
    pgod.wait_log(rf"\[{name}\] (not running: bringing up commit {upstream.head()[:8]}"
                  r"|drift: web: )")
    second = h.wait_until(lambda: h.container_ids(name), what="the project to come back")
    assert second and not second & first
    assert "docker engine at" not in pgod.log()  # the engine's socket answered
