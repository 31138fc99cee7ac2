"""Safe deploys with the real engine (issue 11): a change goes live only when it is healthy,
and a bad one rolls back by itself; freeze, //rollback, //history; in place by default.

Each test runs its own pgod with a short poll (-t 2s) and keeps the health gate's deadlines
short in the compose file's x-pgo, so the suite stays fast; every wait is on a condition
with a generous deadline (the machine is shared)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import harness as h
from tests.e2e.test_http import metrics, sample

GATE = "x-pgo:\n  health_timeout: 10s\n  settle: 1s\n"


def web(version: str, extra: str = "", gate: str = GATE) -> str:
    """One web service (busybox httpd) whose environment says which version it is."""
    return (h.WEB + f"    environment: [VERSION={version}]\n" + extra + gate)


CRASH = ('    entrypoint: ["sh", "-c", "echo cannot read /etc/app.conf; exit 3"]\n'
         '    restart: "no"\n')


class Service:
    """A service tracked by its own pgod, with a pgoctl key committed to its repository."""

    def __init__(self, base: Path, projects: list[str], pgods: list[h.Pgod],
                 first: str, **kw: object) -> None:
        self.base = base
        self.name = h.unique("sd")
        projects.append(self.name)
        self.key = base / "id_team"
        h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "team", "-f", str(self.key))
        self.up = h.Upstream(base)
        self.up.write("ssh/team.pub", Path(f"{self.key}.pub").read_text())
        self.commits = [self.push(first)]
        self.pgod = h.Pgod(base, [{"name": self.name, "user": h.USER,
                                   "repository": self.up.url}], **kw)  # type: ignore[arg-type]
        pgods.append(self.pgod)
        self.pgod.start()

    def push(self, compose: str) -> str:
        """Commit and push `compose` (with @NAME@ as the service's name)."""
        self.up.write("compose.yaml", compose.replace("@NAME@", self.name))
        commit = self.up.commit(f"change {len(getattr(self, 'commits', []))}")
        if hasattr(self, "commits"):
            self.commits.append(commit)
        return commit

    def pgoctl(self, command: str, *args: str, timeout: float = 180
               ) -> subprocess.CompletedProcess[str]:
        return h.pgoctl(self.pgod, self.key, self.name, command, *args, timeout=timeout)

    def log(self, pattern: str, count: int = 1, timeout: float = 120) -> str:
        return self.pgod.wait_log(rf"\[{self.name}\] {pattern}", timeout=timeout, count=count)

    def version(self) -> str:
        """VERSION of the running web container ("" when none runs)."""
        for c in h.containers(self.name):
            if "com.docker.compose.service=web" in c.get("Labels", ""):
                env = h.inspect_existing([c["ID"]])
                for e in (env[0]["Config"]["Env"] if env else []):
                    if e.startswith("VERSION="):
                        return str(e.split("=", 1)[1])
        return ""

    def serves(self) -> bool:
        return h.http_get_in(self.name, "web").strip() == "hello from pgo"

    def state(self) -> dict[str, object]:
        return self.pgod.state(self.name)


@pytest.fixture
def make(base: Path, projects: list[str], pgods: list[h.Pgod]) -> Iterator[object]:
    def start(first: str, **kw: object) -> Service:
        return Service(base, projects, pgods, first, **kw)
    yield start


def healthy_v1(make: object) -> Service:
    svc: Service = make(web("1"))  # type: ignore[operator]
    svc.log(rf"deployed commit {svc.commits[0][:8]} in \S+s \(healthy\)")
    svc.pgod.wait_log(r"SSH listening")
    return svc


def test_a_crash_at_start_rolls_back_and_is_not_deployed_again(make):
    svc = healthy_v1(make)
    bad = svc.push(web("2", CRASH))
    line = svc.log(rf"commit {bad[:8]} failed: ")
    assert "exited with code 3: cannot read /etc/app.conf" in line, line
    svc.log(rf"rolled back commit {bad[:8]} in \S+s: .*; commit {svc.commits[0][:8]} runs "
            r"again \(healthy\)")
    h.wait_until(lambda: svc.version() == "1" and svc.serves(), what="v1 serving again")
    assert h.checkout_head(svc.pgod.dir / svc.name) == svc.commits[0]
    st = svc.state()
    assert st["applied_commit"] == st["last_good"] == svc.commits[0]
    assert st["verdict"]["commit"] == bad and st["verdict"]["kind"] == "failed"  # type: ignore[index]

    # no redeploy loop: several passes later it was tried once
    h.next_cycle(svc.pgod, svc.name, cycles=3)
    assert svc.pgod.count(rf"\[{svc.name}\] deploying commit {bad[:8]}") == 1
    status = svc.pgoctl("status")
    assert status.returncode == 0
    assert f"failed:     commit {bad[:8]}: container {svc.name}-web-1 exited with code 3" \
        in status.stdout, status.stdout
    assert f"last good:  {svc.commits[0][:8]}" in status.stdout
    assert re.search(rf"container:  {svc.name}-web-1 running", status.stdout), status.stdout

    history = svc.pgoctl("history")
    assert history.returncode == 0
    rows = history.stdout.splitlines()
    assert re.search(rf"  {bad[:8]}  rolled back  poll .* exited with code 3: cannot read "
                     rf"/etc/app.conf; rolled back to {svc.commits[0][:8]}$", rows[0]), rows
    assert re.search(rf"  {svc.commits[0][:8]}  deployed     start .* healthy$", rows[1]), rows

    text = metrics(svc.pgod)
    assert sample(text, "pgo_deploys_total", service=svc.name, outcome="rolled back") == 1
    assert sample(text, "pgo_deploys_total", service=svc.name, outcome="deployed") == 1
    assert sample(text, "pgo_rollbacks_total", service=svc.name) == 1
    assert sample(text, "pgo_deploy_duration_seconds_count", service=svc.name) == 2
    assert sample(text, "pgo_reconcile_total", service=svc.name, outcome="rolled back") == 1

    # //up tries it again, on request (and it fails again: rolled back again)
    up = svc.pgoctl("up")
    assert up.returncode == 1 and f"up: rolled back: commit {bad[:8]} failed" in up.stderr, up
    assert svc.pgod.count(rf"\[{svc.name}\] deploying commit {bad[:8]}") == 2
    assert svc.version() == "1"

    # the next upstream commit is tried normally
    fixed = svc.push(web("3"))
    svc.log(rf"deployed commit {fixed[:8]} in \S+s \(healthy\)")
    assert svc.version() == "3" and svc.state().get("verdict") is None


def test_a_healthcheck_that_never_passes_rolls_back(make):
    svc = healthy_v1(make)
    bad = svc.push(web("2", '    healthcheck:\n      test: ["CMD-SHELL", "echo db not '
                       'reachable; exit 1"]\n      interval: 1s\n      retries: 2\n'))
    line = svc.log(rf"commit {bad[:8]} failed: ")
    assert f"container {svc.name}-web-1 is unhealthy: db not reachable" in line, line
    svc.log(rf"rolled back commit {bad[:8]}")
    h.wait_until(lambda: svc.version() == "1" and svc.serves(), what="v1 serving again")


def test_a_restart_loop_rolls_back(make):
    svc = healthy_v1(make)
    bad = svc.push(web("2", '    entrypoint: ["sh", "-c", "echo crash; exit 1"]\n'
                       '    restart: always\n'))
    line = svc.log(rf"commit {bad[:8]} failed: ")
    assert re.search(rf"container {svc.name}-web-1 (restarted|exited) .*: crash", line), line
    svc.log(rf"rolled back commit {bad[:8]}")
    h.wait_until(lambda: svc.version() == "1" and svc.serves(), what="v1 serving again")


def test_a_healthcheck_with_a_start_period_and_a_migration_deploy(make):
    """A web service that is healthy only after a few seconds (failures in its start period
    do not count), behind a one-shot migration it waits for: deployed, not rolled back."""
    svc = healthy_v1(make)
    slow = svc.push(web("2", '    entrypoint: ["sh", "-c", "sleep 3; touch /tmp/ready; '
                        'exec httpd -f -p 8080 -h /www"]\n'
                        '    healthcheck:\n      test: ["CMD", "test", "-f", "/tmp/ready"]\n'
                        '      interval: 1s\n      retries: 1\n      start_period: 20s\n'
                        '    depends_on:\n      migrate: {condition: '
                        'service_completed_successfully}\n'
                        '  migrate:\n    image: pgoimg/busybox:1\n    pull_policy: if_not_present\n'
                        '    command: ["sh", "-c", "echo migrated"]\n',
                        gate="x-pgo:\n  health_timeout: 40s\n  settle: 1s\n"))
    svc.log(rf"deployed commit {slow[:8]} in \S+s \(healthy\)", timeout=150)
    assert svc.version() == "2" and svc.serves()
    assert svc.pgod.count(rf"\[{svc.name}\] rolled back") == 0
    migrate = [c for c in h.containers(svc.name, all=True)
               if "com.docker.compose.service=migrate" in c["Labels"]]
    assert len(migrate) == 1 and migrate[0]["State"] == "exited"


def test_a_failing_first_deploy_is_left_for_its_logs_until_up_or_a_new_commit(make):
    svc = make(web("1", CRASH))
    first = svc.commits[0]
    svc.log(rf"failed commit {first[:8]} in \S+s: container {svc.name}-web-1 exited with code "
            r"3: cannot read /etc/app.conf; nothing to roll back to")
    h.next_cycle(svc.pgod, svc.name, cycles=3)
    assert svc.pgod.count(rf"\[{svc.name}\] deploying commit {first[:8]}") == 1
    left = h.containers(svc.name, all=True)
    assert len(left) == 1 and left[0]["State"] == "exited"  # there, for its logs
    svc.pgod.wait_log(r"SSH listening")
    logs = svc.pgoctl("logs")
    assert "cannot read /etc/app.conf" in logs.stdout, logs
    status = svc.pgoctl("status").stdout
    assert f"failed:     commit {first[:8]}: container" in status and \
        "last good:  -" in status, status
    up = svc.pgoctl("up")  # tried again on request: it fails the same way
    assert up.returncode == 1 and "nothing to roll back to" in up.stderr, up
    assert svc.pgod.count(rf"\[{svc.name}\] deploying commit {first[:8]}") == 2
    fixed = svc.push(web("2"))  # a new commit is tried as any
    svc.log(rf"deployed commit {fixed[:8]} in \S+s \(healthy\)")
    assert svc.serves()


def test_freeze_holds_across_a_push_and_a_restart_until_unfreeze(make):
    svc = healthy_v1(make)
    frozen = svc.pgoctl("freeze")
    assert frozen.returncode == 0 and f"frozen at commit {svc.commits[0][:8]}" in frozen.stdout
    new = svc.push(web("2"))
    h.wait_until(lambda: svc.state().get("desired_commit") == new, what="the push fetched")
    h.next_cycle(svc.pgod, svc.name, cycles=2)
    assert svc.version() == "1" and h.checkout_head(svc.pgod.dir / svc.name) == svc.commits[0]
    status = svc.pgoctl("status").stdout
    assert re.search(rf"frozen: +at commit {svc.commits[0][:8]}; upstream is 1 commit ahead",
                     status), status
    assert svc.pgod.stop() == 0
    svc.pgod.start()
    svc.log(r"reconcile \(start\) done: frozen")
    # a config reload that changes the service: tracked anew, still frozen
    svc.pgod.write_config([{"name": svc.name, "user": h.USER, "repository": svc.up.url,
                            "env": ["RELOADED=1"]}])
    svc.pgod.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    svc.log(r"changed \(.*\): tracking it with the new settings")
    marks = svc.pgod.count(rf"\[{svc.name}\] reconcile \(.*\) done: frozen")
    svc.log(r"reconcile \(.*\) done: frozen", count=marks + 2)
    assert svc.version() == "1" and svc.pgod.count(rf"deploying commit {new[:8]}") == 0
    svc.pgod.wait_log(r"SSH listening", count=2)
    down, up = svc.pgoctl("down"), svc.pgoctl("up")  # a hold comes and goes; frozen stays
    assert down.returncode == 0 and up.returncode == 0, (down, up)
    assert "(frozen: //unfreeze follows upstream again)" in up.stdout
    h.wait_until(lambda: svc.version() == "1", what="v1 up again")
    unfrozen = svc.pgoctl("unfreeze")
    assert unfrozen.returncode == 0 and f"deployed: commit {new[:8]}" in unfrozen.stdout, \
        unfrozen
    assert svc.version() == "2"


def test_rollback_to_a_commit_of_the_history_freezes_there(make):
    svc = healthy_v1(make)
    v1 = svc.commits[0]
    v2 = svc.push(web("2"))
    svc.log(rf"deployed commit {v2[:8]} in \S+s \(healthy\)")
    assert svc.pgoctl("rollback", "feedbeef").returncode == 1  # not in the history
    back = svc.pgoctl("rollback")  # default: the last good one before what runs
    assert back.returncode == 0 and f"rollback: commit {v1[:8]} is up (frozen" in back.stdout, \
        back
    assert svc.version() == "1" and svc.state()["frozen"] is True
    v3 = svc.push(web("3"))  # the next push does not undo it
    h.wait_until(lambda: svc.state().get("desired_commit") == v3, what="the push fetched")
    h.next_cycle(svc.pgod, svc.name)
    assert svc.version() == "1"
    forward = svc.pgoctl("rollback", v2[:7])  # any commit of the history, by its prefix
    assert forward.returncode == 0 and svc.version() == "2", forward
    rows = svc.pgoctl("history").stdout.splitlines()
    assert [r.split()[1:4] for r in rows[:3]] == [
        [v2[:8], "deployed", "//rollback"], [v1[:8], "deployed", "//rollback"],
        [v2[:8], "deployed", "poll"]], rows


def test_in_place_keeps_an_unchanged_container_and_falls_back_to_down_when_needed(make):
    side = ("  side:\n    image: pgoimg/busybox:1\n    pull_policy: if_not_present\n"
            "    command: [sleep, '3600']\n    stop_grace_period: 1s\n")
    net = "    networks: [{key}]\n"
    nets = "networks:\n  {key}:\n    name: @NAME@_shared\n"
    svc: Service = make(web("1", side + net.format(key="a"), gate=nets.format(key="a") + GATE))
    svc.log(rf"deployed commit {svc.commits[0][:8]} in \S+s \(healthy\)")

    def ids() -> dict[str, str]:
        return {c["Labels"].split("com.docker.compose.service=")[1].split(",")[0]: c["ID"]
                for c in h.containers(svc.name)}

    before = ids()
    v2 = svc.push(web("2", side + net.format(key="a"), gate=nets.format(key="a") + GATE))
    svc.log(rf"deploying commit {v2[:8]} \(poll, in place\)$")
    svc.log(rf"deployed commit {v2[:8]} in \S+s \(healthy\)")
    after = ids()
    assert after["side"] == before["side"], "the unchanged container was not touched"
    assert after["web"] != before["web"] and svc.version() == "2"

    # the same network under another key: `up` refuses it in place; a down first does it
    v3 = svc.push(web("3", side + net.format(key="b"), gate=nets.format(key="b") + GATE))
    svc.log(r"up can not bring this change in place \(network \S+_shared was found but has "
            r"incorrect label com.docker.compose.network set to \"a\" \(expected: \"b\"\)\): "
            r"downing the project, then up")
    svc.log(rf"deployed commit {v3[:8]} in \S+s \(healthy\)")
    assert svc.version() == "3" and svc.serves()
