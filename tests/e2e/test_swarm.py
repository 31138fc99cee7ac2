"""engine = "swarm" against the real engine (issue 15), on a single-node swarm that the
tests make when the engine is in none (`docker swarm init --advertise-addr 127.0.0.1`) and
leave as they found it. Each test has its own pgod, service user and stack; other
engineers' compose projects on the same engine are never touched."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import harness as h

GATE = "x-pgo:\n  health_timeout: 60s\n  settle: 1s\n"


def web(version: str, replicas: int = 2, extra: str = "", more: str = "") -> str:
    return f"""\
services:
  web:
    image: {h.IMAGE}
    command: ["sh", "-c", "echo hello from version $$VERSION; exec httpd -f -p 8080 -h /www"]
    expose: ["8080"]
    stop_grace_period: 1s
    environment: [VERSION={version}]
{extra}    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 2, monitor: 2s}}
{more}{GATE}"""


CRASH = '    entrypoint: ["sh", "-c", "echo cannot read /etc/app.conf; exit 3"]\n'
SIDE = f"""\
  side:
    image: {h.IMAGE}
    command: ["sleep", "1000"]
    stop_grace_period: 1s
"""


def docker(*args: str) -> str:
    return h.run("docker", *args).stdout


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    """A single-node swarm for the module: made when the engine is in none, and left
    afterwards; an engine already in one is left in it."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    made = state == "inactive"
    if made:
        h.run("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
    elif state != "active":
        pytest.skip(f"the engine's swarm state is {state!r}")
    yield
    if made:
        h.run("docker", "swarm", "leave", "--force", check=False)


def stack_services(name: str) -> dict[str, dict[str, object]]:
    """The stack's swarm services (docker service ls), by name."""
    out = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={name}",
                 "--format", "{{json .}}")
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {str(r["Name"]): r for r in rows}


def version_of(name: str) -> str:
    env = json.loads(docker("service", "inspect", f"{name}_web", "--format",
                            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"))
    return next((e.split("=", 1)[1] for e in env or [] if e.startswith("VERSION=")), "")


class Stack:
    """A swarm service tracked by its own pgod, with a pgoctl key in its repository."""

    def __init__(self, base: Path, pgods: list[h.Pgod], first: str, *, interval: str = "2s",
                 head: str = "") -> None:
        self.base = base
        self.name = h.unique("sw")
        self.key = base / "id_team"
        h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "team", "-f", str(self.key))
        self.up = h.Upstream(base)
        self.up.write("ssh/team.pub", Path(f"{self.key}.pub").read_text())
        self.commits: list[str] = []
        self.push(first)
        self.pgod = h.Pgod(base, head + h.toml_service(
            {"name": self.name, "user": h.USER, "engine": "swarm",
             "repository": self.up.url}), interval=interval)
        pgods.append(self.pgod)
        self.pgod.start()

    def push(self, compose: str) -> str:
        self.up.write("compose.yaml", compose)
        self.commits.append(self.up.commit(f"change {len(self.commits)}"))
        return self.commits[-1]

    def pgoctl(self, command: str, *args: str, timeout: float = 180
               ) -> subprocess.CompletedProcess[str]:
        return h.pgoctl(self.pgod, self.key, self.name, command, *args, timeout=timeout)

    def log(self, pattern: str, count: int = 1, timeout: float = 180) -> str:
        return self.pgod.wait_log(rf"\[{self.name}\] {pattern}", timeout=timeout, count=count)

    def remove(self) -> None:
        """Remove the stack and wait until its services and networks are gone. `docker
        stack rm` removes a network once, and swarm refuses that while a task of a removed
        service still holds it; so it is asked again while anything is left."""
        def left() -> str:
            nets = docker("network", "ls", "-q", "--filter",
                          f"label=com.docker.stack.namespace={self.name}").split()
            return " ".join([*stack_services(self.name), *nets])

        asked = 0.0
        deadline = time.monotonic() + 120
        while (remains := left()) and time.monotonic() < deadline:
            if time.monotonic() - asked > 5:
                h.run("docker", "stack", "rm", self.name, check=False)
                asked = time.monotonic()
            time.sleep(0.5)
        if remains:
            tasks = docker("ps", "-a", "--filter",
                           f"label=com.docker.stack.namespace={self.name}")
            raise AssertionError(f"stack {self.name} not removed after 120s: {remains}\n"
                                 f"{tasks}")


@pytest.fixture
def make(swarm: None, base: Path, pgods: list[h.Pgod]) -> Iterator[object]:
    made: list[Stack] = []

    def start(first: str, **kw: str) -> Stack:
        made.append(Stack(base, pgods, first, **kw))
        return made[-1]
    yield start
    for p in pgods:
        p.stop()
    for s in made:
        s.remove()


def test_deploy_update_ps_logs_down_up_and_a_stale_service_pruned(make):
    svc: Stack = make(web("1", more=SIDE))
    first = svc.commits[0]
    svc.log(rf"deployed commit {first[:8]} in \S+s \(2 swarm service\(s\) converged\)")
    services = stack_services(svc.name)
    assert services[f"{svc.name}_web"]["Replicas"] == "2/2", services
    assert set(services) == {f"{svc.name}_web", f"{svc.name}_side"}
    svc.pgod.wait_log(r"SSH listening")

    ps = svc.pgoctl("ps")
    assert ps.returncode == 0, ps
    rows = [r for r in ps.stdout.splitlines() if f"{svc.name}_web." in r]
    assert len(rows) == 2 and all(" Running " in r for r in rows), ps.stdout
    node = docker("info", "--format", "{{.Name}}").strip()
    assert all(f" {node} " in r for r in rows), ps.stdout

    h.wait_until(lambda: "hello from version 1" in svc.pgoctl("logs", "web").stdout,
                 what="//logs shows the tasks' output")
    status = svc.pgoctl("status")
    assert f"container:  {svc.name}_web.1 running: node " in status.stdout, status.stdout

    # an update, and `side` gone from the model: swarm's --prune removes it
    second = svc.push(web("2"))
    svc.log(rf"deployed commit {second[:8]} in \S+s \(1 swarm service\(s\) converged\)")
    assert version_of(svc.name) == "2"
    assert set(stack_services(svc.name)) == {f"{svc.name}_web"}

    exec_ = svc.pgoctl("exec", "web", "sh", "-c", "echo in $VERSION")
    assert exec_.returncode == 0 and exec_.stdout.strip() == "in 2", exec_

    down = svc.pgoctl("down")
    assert down.returncode == 0 and "stays down until up" in down.stdout, down
    assert not stack_services(svc.name)
    h.next_cycle(svc.pgod, svc.name, cycles=2)
    assert not stack_services(svc.name)  # held
    up = svc.pgoctl("up")
    assert up.returncode == 0 and f"commit {second[:8]} is up" in up.stdout, up
    assert stack_services(svc.name)[f"{svc.name}_web"]["Replicas"] == "2/2"

    restart = svc.pgoctl("restart", "web")
    assert restart.returncode == 0, restart
    stop = svc.pgoctl("stop")
    assert stop.returncode == 1 and "not for a swarm service" in stop.stderr, stop
    history = svc.pgoctl("history")
    assert len([r for r in history.stdout.splitlines() if " deployed " in r]) >= 2, history


def test_refusals_before_anything_is_deployed_and_a_failing_update_rolled_back(make):
    svc: Stack = make(web("1", replicas=1))
    first = svc.commits[0]
    svc.log(rf"deployed commit {first[:8]} in \S+s")

    bind = svc.push(web("2", replicas=1, extra="    volumes: ['./www:/www:ro']\n"))
    line = svc.log(rf"commit {bind[:8]} refused \(policy\): ")
    assert "bind mount ./www" in line or "bind mount" in line, line
    assert "a swarm task may run on any node" in line and "[own-data]" in line, line
    assert version_of(svc.name) == "1"

    build = svc.push(web("3", replicas=1, extra="    build: .\n    container_name: web1\n"))
    line = svc.log(rf"commit {build[:8]} refused \(\w+\): swarm ignores or refuses: ")
    assert "compose service web: build (swarm builds nothing" in line, line
    assert "container_name (swarm names the tasks)" in line, line
    assert version_of(svc.name) == "1"

    bad = svc.push(web("4", replicas=1, extra=CRASH))
    line = svc.log(rf"commit {bad[:8]} failed: ")
    assert "update paused due to failure" in line, line
    svc.log(rf"rolled back commit {bad[:8]} in \S+s: .*; commit {first[:8]} runs again")
    h.wait_until(lambda: version_of(svc.name) == "1"
                 and stack_services(svc.name)[f"{svc.name}_web"]["Replicas"] == "1/1",
                 what="v1 running again")
    h.next_cycle(svc.pgod, svc.name, cycles=2)
    assert svc.pgod.count(rf"\[{svc.name}\] deploying commit {bad[:8]}") == 1
    svc.pgod.wait_log(r"SSH listening")
    history = svc.pgoctl("history").stdout.splitlines()
    assert f"  {bad[:8]}  rolled back  " in history[0], history


def test_a_missing_bind_source_is_created_for_the_short_syntax_and_named_for_the_long(make):
    """Swarm creates no bind source (its tasks are rejected): pgod creates a short-syntax
    one (compose's create_host_path) as the service's user, and refuses a long-syntax one
    that does not exist in one line, before anything is deployed."""
    import pwd

    svc: Stack = make(web("1", replicas=1,
                          extra="    volumes: ['${PGO_DATA}/state/db:/state']\n"))
    made = svc.pgod.datadir / svc.name / "state" / "db"
    svc.log(rf"created {made}, the bind mount source of compose service web \(as compose")
    svc.log(rf"deployed commit {svc.commits[0][:8]} in \S+s")
    assert made.is_dir() and made.stat().st_uid == pwd.getpwnam(h.USER).pw_uid

    long = svc.push(web("2", replicas=1, extra=(
        "    volumes: [{type: bind, source: '${PGO_DATA}/absent', target: /absent}]\n")))
    line = svc.log(rf"commit {long[:8]} refused \(\w+\): compose service web: bind mount "
                   rf"source {svc.pgod.datadir / svc.name / 'absent'} does not exist on this "
                   "node, and swarm creates none")
    assert version_of(svc.name) == "1", line
    assert not (svc.pgod.datadir / svc.name / "absent").exists()


def test_check_runs_the_stack_loader_pgod_runs_before_a_deploy(base: Path) -> None:
    """`pgod check` on a swarm service asks `docker stack config` (no engine needed), as
    pgod does before a deploy: CI sees what pgod would refuse."""
    cfg = base / "pgo.toml"
    cfg.write_text(h.toml_service({"name": "team", "user": h.USER, "repository": "/x",
                                   "engine": "swarm"}))
    good, bad = base / "good", base / "bad"
    for d, extra in ((good, ""), (bad, "    pull_policy: never\n")):
        d.mkdir()
        (d / "compose.yaml").write_text(web("1", extra=extra))
    for p in (base, good, bad, cfg):
        p.chmod(0o755)

    def check(path: Path) -> tuple[int, list[str]]:
        r = h.run(h.PGOD, "check", "-c", str(cfg), "--datadir", str(base / "data"),
                  "--service", "team", str(path), check=False, timeout=120)
        assert "Traceback" not in r.stderr, r.stderr
        return r.returncode, (r.stdout + r.stderr).splitlines()

    assert check(good) == (0, ["team: accepted, 1 compose service(s)"])
    rc, lines = check(bad)
    assert rc == 1 and lines == ["team: docker stack refuses the model: services.web "
                                 "Additional property pull_policy is not allowed"], lines


def test_drift_of_the_stack_is_repaired_and_a_failed_task_told(make, receiver):
    """Issue 15 item 6: the engine's events of a stack wake its pass (the interval here is
    an hour): a swarm service scaled or removed by hand is drift, repaired by deploying the
    model again; a task that fails is swarm's to replace, and pgod logs it, tells it, and
    the status page says it. pgod's own deploys are not drift."""
    svc: Stack = make(web("1", more=SIDE), interval="1h",
                      head=f"notify = [{json.dumps(receiver.url)}]\n")
    svc.log(rf"deployed commit {svc.commits[0][:8]} in \S+s")
    receiver.wait(svc.name, "deployed")

    def replicas() -> str:
        return docker("service", "inspect", f"{svc.name}_web", "--format",
                      "{{.Spec.Mode.Replicated.Replicas}}").strip()

    h.run("docker", "service", "scale", "--detach", f"{svc.name}_web=3")
    svc.log(rf"swarm service {svc.name}_web was updated: to be compared with the model: "
            "reconciling now")
    svc.log(rf"drift: web: the spec of swarm service {svc.name}_web was changed outside "
            r"pgo \(docker service update or scale\?\); repairing with docker stack deploy")
    svc.log("drift repaired in")
    assert replicas() == "2"
    receiver.wait(svc.name, "drift repaired")

    h.run("docker", "service", "rm", f"{svc.name}_side")
    svc.log(rf"drift: side: swarm service {svc.name}_side is gone; repairing")
    svc.log("drift repaired in", count=2)
    h.wait_until(lambda: f"{svc.name}_side" in stack_services(svc.name), 60, "side back")

    # a task killed: swarm replaces it; pgod says so once, and tells it
    task = docker("ps", "-q", "--filter",
                  f"label=com.docker.swarm.service.name={svc.name}_web").split()[0]
    h.run("docker", "kill", task)
    line = svc.log(rf"swarm: task {svc.name}_web\.\d+ failed: task: non-zero exit \(137\) "
                   r"\(exit code 137\) on node \w+")
    assert receiver.wait(svc.name, "a swarm task failed")
    url = f"http://127.0.0.1:{svc.pgod.metric_port}/status.json"

    def page() -> dict[str, object]:
        doc = json.loads(h.run("curl", "-sf", url).stdout)
        return next(s for s in doc["services"] if s["name"] == svc.name)

    shown = h.wait_until(lambda: (p := page())["state"] == "running"
                         and len(p["containers"]) == 3 and p, 60, "the status page")
    assert "failed: task: non-zero exit (137)" in shown["reason"], (shown, line)
    assert "swarm replaced it" in shown["reason"]
    assert {c["service"] for c in shown["containers"]} == {"web", "side"}
    assert all(c["status"].startswith("node ") for c in shown["containers"])

    # pgod's own update is no drift, and what was repaired stays repaired
    second = svc.push(web("2", more=SIDE))
    assert svc.pgoctl("up").returncode == 0
    svc.log(rf"deployed commit {second[:8]} in \S+s")
    assert version_of(svc.name) == "2"
    assert svc.pgod.count(r"drift: ") == 2, svc.pgod.log()
