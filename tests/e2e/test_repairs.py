"""Engine events wired into pgod (issue 13), with the real engine, compose, Apprise and
Chromium: a container removed, stopped or killed by hand is repaired within seconds while
the poll is 5 minutes away; what a team or operator asked for is left alone; crash loops
are capped; a project brought up by hand with another file is brought back; every kind of
notification reaches a local HTTP receiver once; the status page of the live daemon in a
headless browser. The engine-restart test stops dockerd, which every test run on this
machine shares: it runs only with PGO_E2E_ENGINE_RESTART=1 (.ci/run sets it: CI's machine is
its own).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e.test_http import metrics, sample

GATE = "x-pgo:\n  health_timeout: 10s\n  settle: 1s\n"
WEB = h.WEB + GATE
# passes its gate (settle 1s), then ends: again and again
LOOP = h.WEB + ('    entrypoint: ["sh", "-c", "sleep 2; exit 1"]\n    restart: "no"\n'
                + GATE)
CRASH = h.WEB + ('    entrypoint: ["sh", "-c", "echo cannot start; exit 3"]\n'
                 '    restart: "no"\n' + GATE)
SECRET = "hunter2-Pgo-e2e-value"
CHROMIUM = shutil.which("chromium")


class Fleet:
    """Services tracked by one pgod (-t 5m unless said), each with its own upstream and a
    pgoctl key committed to it."""

    def __init__(self, base: Path, projects: list[str], pgods: list[h.Pgod],
                 composes: list[str], *, head: str = "", interval: str = "5m",
                 extra: list[str] | None = None, env: list[str] | None = None) -> None:
        self.base = base
        self.key = base / "id_team"
        h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "team", "-f", str(self.key))
        self.names: list[str] = []
        self.ups: dict[str, h.Upstream] = {}
        services = []
        for compose in composes:
            name = h.unique("ev")
            projects.append(name)
            up = h.Upstream(base, name)
            up.write("ssh/team.pub", Path(f"{self.key}.pub").read_text())
            up.write("compose.yaml", compose)
            up.commit("first")
            self.names.append(name)
            self.ups[name] = up
            services.append({"name": name, "user": h.USER, "repository": up.url,
                             **({"env": env} if env else {})})
        self.pgod = h.Pgod(base, head + "".join(h.toml_service(s) for s in services),
                           interval=interval, extra=extra)
        pgods.append(self.pgod)
        self.pgod.start()

    def push(self, name: str, compose: str) -> str:
        self.ups[name].write("compose.yaml", compose)
        return self.ups[name].commit("change")

    def pgoctl(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        return h.pgoctl(self.pgod, self.key, name, command)

    def log(self, name: str, pattern: str, count: int = 1, timeout: float = 120) -> str:
        return self.pgod.wait_log(rf"\[{name}\] {pattern}", timeout=timeout, count=count)

    def count(self, name: str, pattern: str) -> int:
        return self.pgod.count(rf"\[{name}\] {pattern}")


def web_of(name: str) -> list[dict[str, Any]]:
    return [c for c in h.containers(name, all=True)
            if "com.docker.compose.service=web" in c.get("Labels", "")]


def running_web(name: str) -> str:
    """The id of the running web container ("" when none runs)."""
    return next((c["ID"] for c in web_of(name) if c["State"] == "running"), "")


def deployed(fleet: Fleet, name: str) -> str:
    fleet.log(name, r"deployed commit \S+ in \S+s \(healthy\)")
    return str(h.wait_until(lambda: running_web(name), what="web running"))


def test_removed_stopped_and_killed_containers_are_repaired_at_once(base, projects, pgods):
    fleet = Fleet(base, projects, pgods, [WEB])
    (name,) = fleet.names
    first = deployed(fleet, name)

    h.run("docker", "rm", "-f", first)
    again = h.wait_until(lambda: running_web(name) not in ("", first) and running_web(name),
                         30, "a new web container")
    fleet.log(name, r"container \S+ (died|was removed).*: reconciling now")
    fleet.log(name, r"drift repaired in \S+s: web: (1 container missing|not running)")

    h.run("docker", "stop", again)
    h.wait_until(lambda: running_web(name) == again, 30, "the stopped container running")
    h.run("docker", "kill", again)
    h.wait_until(lambda: fleet.count(name, "drift repaired") >= 3 and running_web(name),
                 30, "the killed container running again")
    assert fleet.count(name, r"reconcile \(event\) done") >= 3
    assert sample(metrics(fleet.pgod), "pgo_drift_repairs_total", service=name) == 3
    assert fleet.count(name, r"reconcile \(poll\)") == 0  # (the poll is 5 minutes away)


def test_what_was_asked_for_is_not_repaired(base, projects, pgods):
    fleet = Fleet(base, projects, pgods, [WEB, CRASH])
    name, bad = fleet.names
    first = deployed(fleet, name)

    # //stop: held until //start
    assert fleet.pgoctl(name, "stop").returncode == 0
    # (its events come while //stop runs: the pass they ask for finds it held)
    fleet.log(name, r"reconcile \(event\) done: held")
    assert running_web(name) == "" and web_of(name)[0]["ID"] == first
    assert fleet.pgoctl(name, "start").returncode == 0

    # //freeze: what runs stays as it is, even when it is gone
    assert fleet.pgoctl(name, "freeze").returncode == 0
    h.run("docker", "rm", "-f", first)
    fleet.log(name, r"engine event: container \S+ was removed: frozen")
    assert web_of(name) == []
    assert fleet.pgoctl(name, "unfreeze").returncode == 0
    h.wait_until(lambda: running_web(name), 60, "web back after //unfreeze")

    # the operator's stop file: downed at the next pass, and left down
    fleet.pgod.stopfile(name).touch()
    fleet.pgoctl(name, "git pull")
    fleet.log(name, r"engine event: container \S+ was removed: held down by the stop file")
    assert web_of(name) == []

    # a first deploy that failed: its containers are left for the team to read
    fleet.log(bad, r"failed commit \S+ in \S+s: .*nothing to roll back to")
    (crashed,) = [c["ID"] for c in web_of(bad)]
    h.run("docker", "rm", "-f", crashed)
    fleet.log(bad, r"engine event: container \S+ was removed: the first deploy failed")
    assert web_of(bad) == []
    assert fleet.count(name, "drift repaired") + fleet.count(bad, "drift repaired") == 1


def test_a_crash_loop_is_capped_until_up(base, projects, pgods, receiver):
    fleet = Fleet(base, projects, pgods, [LOOP], head=f"notify = [{json.dumps(receiver.url)}]\n")
    (name,) = fleet.names
    deployed(fleet, name)
    line = fleet.log(name, r"drift: .*; crash loop: 5 repairs within 5m", timeout=180)
    assert "left alone until a new commit, //up, or" in line
    assert fleet.count(name, "drift repaired") == 5
    receiver.wait(name, "crash loop: left alone")

    # passes leave it alone, and say why
    status = fleet.pgoctl(name, "git pull")
    assert status.returncode != 0 and "crash loop" in status.stderr, status
    assert fleet.count(name, "drift repaired") == 5
    st = fleet.pgoctl(name, "status").stdout
    assert "crash loop: 5 repairs" in st, st

    # //up: tried again
    fleet.pgoctl(name, "up")
    fleet.log(name, "drift repaired", count=6, timeout=120)
    assert receiver.titles(name).count(f"{name}: crash loop: left alone (on "
                                       f"{os.uname().nodename})") <= 1


def test_drift_by_a_hand_run_compose_with_another_file(base, projects, pgods):
    fleet = Fleet(base, projects, pgods, [WEB])
    (name,) = fleet.names
    deployed(fleet, name)
    other = base / "other.yaml"
    other.write_text(h.WEB.replace("stop_grace_period: 1s", "stop_grace_period: 1s\n"
                                   "    environment: [BY_HAND=1]")
                     + h.WEB.split("services:\n", 1)[1].replace("  web:", "  debug:"))
    # (pgod may repair while this runs: compose then finds a container it did not expect)
    by_hand = h.run("docker", "compose", "-p", name, "-f", str(other), "up", "-d", check=False)
    assert by_hand.returncode == 0 or "Conflict" in by_hand.stderr or \
        "No such container" in by_hand.stderr, by_hand.stderr
    fleet.log(name, r"drift: .*repairing with up")

    def back() -> bool:
        cs = h.containers(name, all=True)
        if any("com.docker.compose.service=debug" in c["Labels"] for c in cs):
            return False
        webs = [c for c in cs if c["State"] == "running"]
        return len(cs) == 1 and len(webs) == 1 and \
            "BY_HAND=1" not in h.inspect(webs[0]["ID"])["Config"]["Env"]
    h.wait_until(back, 60, "the model's containers only")
    assert fleet.count(name, "drift repaired") >= 1


def test_notifications_reach_a_receiver_once_each(base, projects, pgods, receiver):
    failing = f"json://user:{SECRET}@127.0.0.1:{h.free_port()}/x"
    head = f"notify = [{json.dumps(receiver.url)}, {json.dumps(failing)}]\n"
    fleet = Fleet(base, projects, pgods, [WEB, CRASH], head=head)
    name, bad = fleet.names
    first = deployed(fleet, name)
    receiver.wait(name, "deployed")
    receiver.wait(bad, "failed")

    h.run("docker", "rm", "-f", first)
    receiver.wait(name, "drift repaired")

    fleet.push(name, WEB.replace("    expose:", "    privileged: true\n    expose:"))
    fleet.pgoctl(name, "git pull")
    receiver.wait(name, "refused by the policy")

    fleet.push(name, CRASH)
    fleet.pgoctl(name, "git pull")
    receiver.wait(name, "rolled back")

    # more passes tell nothing again
    fleet.pgoctl(name, "git pull")
    fleet.pgoctl(bad, "git pull")
    fleet.log(name, r"reconcile \(pgoctl\) done", count=3)
    titles = receiver.titles(name) + receiver.titles(bad)
    for title in titles:
        assert titles.count(title) == 1, titles
    kinds = {t.split(": ", 1)[1].split(" (on ")[0].split(" ")[0] for t in titles}
    assert {"deployed", "drift", "commit", "rolled"} <= kinds, titles
    # the failing URL: logged once per kind, its credentials never
    log = fleet.pgod.log()
    assert "notification (deployed) to json:// URL #2 failed" in log
    assert fleet.pgod.count(rf"\[{name}\] notification \(deployed\) to json:// URL #2") == 1
    assert SECRET not in log


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_live_status_page_in_chromium(base, projects, pgods, tmp_path):
    # a refusal whose reason holds an env value of pgo.toml (redacted everywhere)
    leaky = WEB.replace("    expose:", '    volumes: ["/etc/${DB_PASSWORD}:/x"]\n    expose:')
    fleet = Fleet(base, projects, pgods, [WEB, leaky], env=[f"DB_PASSWORD={SECRET}"])
    good, refused = fleet.names
    deployed(fleet, good)
    fleet.log(refused, "commit \\S+ refused")
    url = f"http://127.0.0.1:{fleet.pgod.metric_port}/"
    shot = tmp_path / "status.png"
    h.run(CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=390,844",
          f"--screenshot={shot}", url, timeout=120)
    assert shot.stat().st_size > 1000
    dom = h.run(CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url,
                timeout=120).stdout
    assert f'id="svc-{good}"' in dom and f'id="svc-{refused}"' in dom, dom[:2000]
    assert '<span class="st running">running</span>' in dom
    assert '<span class="st refused">refused</span>' in dom
    doc = json.loads(h.run("curl", "-sf", url + "status.json").stdout)
    states = {s["name"]: s["state"] for s in doc["services"]}
    assert states == {good: "running", refused: "refused"}
    assert SECRET not in dom and SECRET not in json.dumps(doc)


def test_status_page_false_turns_it_off(base, pgods):
    pgod = h.Pgod(base, [], extra=["--status-page=false"])
    pgods.append(pgod)
    pgod.start()
    pgod.wait_log("listening on")
    url = f"http://127.0.0.1:{pgod.metric_port}"
    assert h.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/").stdout \
        == "404"
    assert h.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                 url + "/status.json").stdout == "404"


@pytest.mark.skipif(os.environ.get("PGO_E2E_ENGINE_RESTART") != "1",
                    reason="stops the shared dockerd: PGO_E2E_ENGINE_RESTART=1")
def test_an_engine_restart_reconciles_every_service(base, projects, pgods):
    fleet = Fleet(base, projects, pgods, [WEB, WEB])
    for name in fleet.names:
        deployed(fleet, name)
    pid = int(h.run("pidof", "dockerd").stdout.split()[0])
    try:
        os.kill(pid, 15)
        h.wait_until(lambda: h.run("docker", "info", check=False).returncode != 0, 60,
                     "dockerd gone")
        fleet.pgod.wait_log(r"docker engine events at \S+: .*reconnecting")
    finally:
        if h.run("docker", "info", check=False).returncode != 0:
            h.wait_until(lambda: not Path(f"/proc/{pid}").exists(), 60, "dockerd exited")
            # (as scripts/setup.sh starts it where there is no systemd; by a shell that
            # exits at once, so no child of this process is left running)
            h.run("sh", "-c", "setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &")
            h.wait_until(lambda: h.run("docker", "info", check=False).returncode == 0, 120,
                         "dockerd back")
    fleet.pgod.wait_log(r"docker engine events at \S+: connected again")
    fleet.pgod.wait_log(r"reconciling every service once")
    for name in fleet.names:
        # (woken by the reconnect, or by an event of its containers, which the engine's
        # shutdown stopped: the pass says the latest)
        fleet.log(name, r"reconcile \((engine|event)\) done")
        h.wait_until(lambda n=name: running_web(n), 60, f"{name} running again")
