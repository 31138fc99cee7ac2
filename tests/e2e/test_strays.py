"""Nothing outside the judged model survives a deploy (issue 9, item 3), with a real pgod,
compose and engine.

The attack: under `x-pgo: {down: false}` commit 1 runs `w` with ${PGO_DATA} mounted
writable; commit 2 moves `w` into a profile (so `docker compose config` leaves it out and
the policy never sees it, while `up --remove-orphans` keeps it running) and adds `a`
(`restart: always`) mounting ${PGO_DATA}/x. `w` then makes `x` a symlink to `/`, and `a`,
restarted, has the host's `/` mounted writable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pgo import engine
from pgo.compose import Project
from pgo.runner import Runner
from tests.e2e import harness as h

W = """\
x-pgo: {down: false}
services:
  w:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    command: ["sh", "-c", "%s"]
    volumes: ["${PGO_DATA}:/d"]
    stop_grace_period: 5s
"""
SLEEP = "while true; do sleep 0.2; done"
# the worst timing: the symlink is made at the last moment `w` runs, when it is stopped
SWAP_ON_STOP = ("trap 'rm -rf /d/x; ln -s / /d/x; exit 0' TERM; "
                "while true; do sleep 0.2; done")
W_IN_A_PROFILE_AND_A = """\
    profiles: [off]
  a:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    restart: always
    command: ["sh", "-c", "while true; do sleep 0.2; done"]
    volumes: ["${PGO_DATA}/x:/x"]
    stop_grace_period: 1s
"""


def service(name: str, up: h.Upstream) -> dict[str, object]:
    return {"name": name, "user": h.USER, "repository": up.url}


def services_of(project: str) -> list[str]:
    return sorted(c["Labels"].split("com.docker.compose.service=")[1].split(",")[0]
                  for c in h.containers(project, all=True))


def start(base: Path, upstream: h.Upstream, name: str, script: str,
          pgods: list[h.Pgod]) -> h.Pgod:
    upstream.write("compose.yaml", W % script)
    first = upstream.commit("w writes the data directory")
    pgod = h.Pgod(base, [service(name, upstream)], interval="1s")
    pgods.append(pgod.start())
    h.wait_until(lambda: pgod.state(name).get("applied_commit") == first, what="first deploy")
    assert services_of(name) == ["w"]
    return pgod


def test_a_service_moved_into_a_profile_does_not_survive_the_deploy(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    name = h.unique("stray")
    projects.append(name)
    pgod = start(base, upstream, name, SLEEP, pgods)
    upstream.write("compose.yaml", W % SLEEP + W_IN_A_PROFILE_AND_A)
    second = upstream.commit("w into a profile, a mounts x")
    h.wait_until(lambda: pgod.state(name).get("applied_commit") == second,
                 what="the second deploy")
    assert services_of(name) == ["a"]
    pgod.wait_log(rf"\[{name}\] removing container {name}-w-1 \(w, running\): not in the "
                  "model")
    data = pgod.datadir / name
    assert not (data / "x").is_symlink()


def test_a_symlink_made_as_the_stray_is_stopped_is_judged_before_the_up(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """The window between the judgement of commit 2 and the removal of `w`: whatever `w`
    does in it, up to its last moment, is seen by the judgement made after it is gone."""
    name = h.unique("strayswap")
    projects.append(name)
    pgod = start(base, upstream, name, SWAP_ON_STOP, pgods)
    upstream.write("compose.yaml", W % SWAP_ON_STOP + W_IN_A_PROFILE_AND_A)
    second = upstream.commit("w into a profile, a mounts x")
    pgod.wait_log(rf"\[{name}\] commit {second[:8]} refused \(policy\)")
    data = pgod.datadir / name
    assert (data / "x").is_symlink()  # w did make it
    assert services_of(name) == []  # w is gone, and a was never created
    assert pgod.state(name)["applied_commit"] != second


def test_docker_ps_and_the_engine_list_the_same_containers(
        base: Path, projects: list[str]) -> None:
    """Without the engine's socket the containers are listed by `docker ps --all`: labels a
    compose file chose (tabs, newlines, commas, a label's own syntax) split nothing."""
    name = h.unique("ps")
    projects.append(name)
    work = base / name
    work.mkdir()
    (work / "compose.yaml").write_text(
        "services:\n  w:\n    image: pgoimg/busybox:1\n    command: [sleep, '600']\n"
        "    init: true\n    labels:\n"
        "      x: \"a\\tb\\nc,com.docker.compose.service=z\"\n")
    h.run("docker", "compose", "-p", name, "up", "-d", cwd=work)
    h.run("docker", "compose", "-p", name, "run", "-d", "w", cwd=work)  # a one-off
    via_ps = asyncio.run(Project(name, work, Runner(), None).containers())
    via_api = asyncio.run(engine.containers(name))

    def seen(cs: list[engine.Container]) -> list[tuple[str, str, str, str, bool]]:
        return sorted((c.id, c.service, c.config_hash, c.state, c.oneoff) for c in cs)

    assert seen(via_ps) == seen(via_api)
    assert sorted((c.service, c.oneoff) for c in via_ps) == [("w", False), ("w", True)]
