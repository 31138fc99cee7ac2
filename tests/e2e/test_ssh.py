"""The SSH interface end to end: a real pgod, real containers, the real pgoctl and OpenSSH's
ssh, keys committed to a real git repository."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.e2e import harness as h

TICKER = h.WEB + """\
  ticker:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    command: ["sh", "-c", "i=0; while true; do echo tick $$i; i=$$((i+1)); sleep 0.2; done"]
"""


class Team:
    """A service, its upstream with committed keys, and a pgod serving it over SSH."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.name = h.unique("ssh")
        self.keys = {k: self.keygen(k) for k in ("alice", "bob", "carol", "mallory", "nobody")}
        self.up = h.Upstream(base)
        self.up.write("compose.yaml", TICKER)
        self.up.write("ssh/alice.pub", self.pub("alice"))
        self.up.write("ssh/more.pub", "# CI and bob\n" + self.pub("bob"))
        self.up.commit("first")
        self.known = base / "known_hosts"
        self.pgod = h.Pgod(base, [{"name": self.name, "user": h.USER,
                                   "repository": self.up.url}], interval="1h")
        # the compose projects of services a test adds to this pgod: removed once it has
        # stopped (before, it would repair them: pgo.repair)
        self.projects = [self.name]

    def keygen(self, who: str) -> Path:
        path = self.base / f"id_{who}"
        h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(path))
        return path

    def pub(self, who: str) -> str:
        return Path(f"{self.keys[who]}.pub").read_text()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PGOCTL_ID"}
        return {**env, "PGOCTL_KNOWN_HOSTS": str(self.known), **extra}

    def pgoctl(self, command: str, *args: str, who: str = "alice", name: str = "",
               timeout: float = 120, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        return h.pgoctl(self.pgod, self.keys[who], name or self.name, command, *args,
                        timeout=timeout, env=env or self.env())

    def ssh_argv(self, remote: str, who: str = "alice") -> list[str]:
        return ["ssh", "-p", str(self.pgod.ssh_port), "-i", str(self.keys[who]),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.base / 'ssh_known_hosts'}",
                "-o", "StrictHostKeyChecking=accept-new", "127.0.0.1", remote]

    def ssh(self, remote: str, who: str = "alice") -> subprocess.CompletedProcess[str]:
        return h.run(*self.ssh_argv(remote, who), check=False)

    def pull(self) -> None:
        r = self.pgoctl("git", "pull")
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    t = Team(h.scratch(tmp_path_factory, "ssh"))
    t.pgod.start()
    try:
        t.pgod.wait_log(rf"\[{t.name}\] reconcile \(start\) done: deployed")
        t.pgod.wait_log(r"SSH listening")
        yield t
    finally:
        t.pgod.stop()
        for name in t.projects:
            h.down_project(name)


def test_ping_ps_and_status(team: Team) -> None:
    r = team.pgoctl("ping")
    assert r.returncode == 0 and r.stdout == f"pong! - {socket.gethostname()}\n"
    ps = team.pgoctl("ps")
    assert ps.returncode == 0 and f"{team.name}-web-1" in ps.stdout
    st = team.pgoctl("status")
    head = team.up.head()[:8]
    assert st.returncode == 0
    assert f"desired:    {head}" in st.stdout and f"applied:    {head}" in st.stdout
    assert "running:    yes" in st.stdout
    assert team.pgoctl("git", "hash").stdout.strip() == head


def test_openssh_client_works(team: Team) -> None:
    r = team.ssh(f"{team.name}//ps")
    assert r.returncode == 0, r.stderr
    assert f"{team.name}-ticker-1" in r.stdout
    r = team.ssh(f"{team.name}//exec web sh -c 'exit 7'")
    assert r.returncode == 7


def test_arguments_survive_the_trip(team: Team) -> None:
    words = ["a b", "", "c'd", '"e"', "$HOME", "--project-name", "x;y", "-T"]
    r = team.pgoctl("exec", "web", "sh", "-c", 'printf "%s|" "$@"', "sh", *words)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(f"{w}|" for w in words)
    assert team.pgoctl("exec", "web", "sh", "-c", "exit 3").returncode == 3
    err = team.pgoctl("exec", "web", "sh", "-c", "echo out; echo err >&2")
    assert err.stdout == "out\n" and err.stderr == "err\n"


@pytest.mark.parametrize(("args", "status", "message"), [
    (("nope//ps",), 148, 'Not Found: No service found with name "nope" for this key'),
    (("{name}//frob",), 150, "Not Acceptable: unknown command 'frob'"),
    (("{name}//ps", "--project-name", "other"), 144, "'--project-name' refused"),
    (("{name}//ps", "-p", "other"), 144, "'-p' refused"),
    (("{name}//exec", "--privileged", "web", "id"), 144, "'--privileged' refused"),
    (("{name}//logs", "--file", "/etc/passwd"), 144, "'--file' refused"),
    (("{name}//down", "--rmi", "all"), 144, "'--rmi' refused"),
    (("{name}//journal", "_UID=0"), 144, "'_UID=0' refused"),
    (("{name}//ps 'unbalanced",), 144, "Bad Request"),
])
def test_refusals(team: Team, args: tuple[str, ...], status: int, message: str) -> None:
    remote = args[0].format(name=team.name)
    target = f"127.0.0.1:{remote}" if "'" not in remote else None
    if target is None:  # not even pgoctl can send that: speak to the server with ssh
        r = team.ssh(remote)
    else:
        r = h.run(h.PGOCTL, "-i", str(team.keys["alice"]), "-p", str(team.pgod.ssh_port),
                  "--", target, *args[1:], check=False, env=team.env())
    assert r.returncode == status, (r.returncode, r.stderr)
    assert message in r.stderr
    assert r.stderr.count("\n") == 1  # one line
    assert h.container_ids(team.name)  # nothing happened to the service


def test_key_of_nobody_is_refused_at_login(team: Team) -> None:
    """A key that no tracked service's repository holds is not let in at all."""
    r = team.pgoctl("ps", who="mallory")
    assert r.returncode == 255 and r.stdout == ""
    assert r.stderr == f"pgoctl: [127.0.0.1]:{team.pgod.ssh_port}: the server refused the key\n"
    r = team.ssh(f"{team.name}//ping", who="mallory")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr


def test_key_of_another_service_grants_nothing(team: Team, base: Path) -> None:
    other = h.Upstream(base, "other")
    other.write("compose.yaml", h.WEB)
    other.write("ssh/mallory.pub", team.pub("mallory"))
    other.commit("other team")
    name = h.unique("other")
    team.projects.append(name)
    cfg = team.pgod.config.read_text() + h.toml_service(
        {"name": name, "user": h.USER, "repository": other.url})
    team.pgod.config.write_text(cfg)
    os.kill(team.pgod.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
    team.pgod.wait_log(rf"\[{name}\] reconcile \(start\) done")
    assert team.pgoctl("ping", who="mallory", name=name).returncode == 0
    assert team.pgoctl("ping", who="mallory").returncode == 148
    # a key that is not a service's learns nothing of it: answered as a name that is not
    r = team.pgoctl("ping", who="alice", name=name)
    nope = team.pgoctl("ping", who="alice", name="nope" + name[5:])
    assert r.returncode == nope.returncode == 148 and r.stdout == nope.stdout == ""
    assert r.stderr.replace(name, "N") == nope.stderr.replace("nope" + name[5:], "N") == \
        'Not Found: No service found with name "N" for this key\n'
    team.pgod.wait_log(rf"ping from \S+ \(key SHA256:\S+\): {name} -> 404 \(not its key\)")
    team.pgod.wait_log(r"ping from \S+ \(key SHA256:\S+\): nope\S+ -> 404 \(no such service\)")


def test_what_a_client_sends_can_not_forge_a_log_line(team: Team) -> None:
    """A newline in a request is logged escaped: one request, one log line."""
    r = team.ssh(f"{team.name}//'x\n[ERROR] forged\x1b[2J' \u2028y")
    assert r.returncode == 150 and "unknown command" in r.stderr
    line = team.pgod.wait_log(r"ssh: x\\n\[ERROR\] forged\\x1b\[2J from ")
    assert f"{team.name} -> 406" in line
    assert not team.pgod.count(r"^\[ERROR\] forged")
    assert not team.pgod.count("\x1b")


def test_keys_follow_the_repository(team: Team) -> None:
    assert team.pgoctl("ping", who="carol").returncode == 255  # in no repository
    team.up.write("ssh/carol.pub", team.pub("carol"))
    team.up.write("ssh/more.pub", "# bob left\n")
    team.up.commit("carol in, bob out")
    team.pull()
    assert team.pgoctl("ping", who="carol").returncode == 0
    assert team.pgoctl("ping", who="bob").returncode == 255
    # a key file that is a symlink out of the checkout grants nothing
    outside = team.base / "planted.pub"
    outside.write_text(team.pub("mallory"))
    outside.chmod(0o644)
    os.symlink(outside, team.up.work / "ssh" / "planted.pub")
    team.up.commit("symlinked key")
    team.pull()
    r = team.pgoctl("ping", who="mallory")  # (mallory's key may be another service's)
    assert r.returncode != 0 and r.stdout == ""


def test_logs_follow_streams_and_ends_with_the_client(team: Team) -> None:
    argv = [h.PGOCTL, "-i", str(team.keys["alice"]), "-p", str(team.pgod.ssh_port), "--",
            f"127.0.0.1:{team.name}//logs", "-f", "--tail", "1", "ticker"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=team.env(), text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # lines arrive while the command still runs
            seen.append(line)
            if len(seen) >= 3:
                break
        assert all("tick" in ln for ln in seen), seen
        assert proc.poll() is None

        def followers() -> list[str]:
            out = h.run("ps", "-eww", "-o", "pid,args", check=False).stdout
            return [ln for ln in out.splitlines()
                    if f"--project-name {team.name}" in ln and " logs " in ln]

        assert followers()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        h.wait_until(lambda: not followers(), 30, "the remote logs -f to end")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    team.pgod.wait_log(rf"\[{team.name}\] ssh: logs: the client went away")


def test_down_holds_until_up(team: Team) -> None:
    r = team.pgoctl("down")
    assert r.returncode == 0, r.stderr
    assert not h.container_ids(team.name)
    assert "held:       by pgoctl down" in team.pgoctl("status").stdout
    team.pull()  # a reconcile pass does not undo the down
    assert team.pgod.count(rf"\[{team.name}\] reconcile \(pgoctl\) done: held")
    assert not h.container_ids(team.name)
    r = team.pgoctl("up")
    assert r.returncode == 0 and "is up" in r.stdout, r.stderr
    assert len(h.container_ids(team.name)) == 2
    assert "held" not in team.pgoctl("status").stdout


def test_stop_start_restart(team: Team) -> None:
    assert team.pgoctl("stop", "-t", "1", "ticker").returncode == 0
    assert len(h.container_ids(team.name)) == 1
    team.pull()
    assert len(h.container_ids(team.name)) == 1  # held by the stop
    assert team.pgoctl("start").returncode == 0
    assert len(h.container_ids(team.name)) == 2
    [web] = [c for c in h.containers(team.name) if "service=web" in c["Labels"]]
    before = h.inspect(web["ID"])["State"]["StartedAt"]
    assert team.pgoctl("restart", "-t", "1", "web").returncode == 0
    after = h.inspect(web["ID"])["State"]["StartedAt"]
    assert after != before  # the same container, really restarted


def test_pull_load_and_journal(team: Team) -> None:
    r = team.pgoctl("pull", "--ignore-pull-failures")
    assert r.returncode == 0, r.stderr
    r = team.pgoctl("load")
    assert r.returncode == 0 and r.stdout.startswith("accepted: commit ")
    r = team.pgoctl("journal", "-n", "5")
    assert r.returncode not in (144, 145, 148, 150), r.stderr  # ran (the journal may be empty)


def test_git_pull_deploys_and_refusals_show(team: Team) -> None:
    team.up.write("compose.yaml", TICKER.replace("8080\"]\n", "8080\"]\n    privileged: true\n",
                                                 1))
    bad = team.up.commit("privileged")
    r = team.pgoctl("git", "pull")
    assert r.returncode == 1 and r.stdout.startswith("refused: commit " + bad[:8])
    assert "privileged" in r.stderr
    load = team.pgoctl("load")
    assert load.returncode == 1 and "privileged" in load.stdout
    st = team.pgoctl("status").stdout
    assert f"refused:    commit {bad[:8]}" in st and "violation:" in st
    assert len(h.container_ids(team.name)) == 2  # the old deployment runs on
    team.up.write("compose.yaml", TICKER + "x-pgo-version: 2\n")
    good = team.up.commit("fixed")
    r = team.pgoctl("git", "pull")
    assert r.returncode == 0 and r.stdout.startswith("deployed: commit " + good[:8]), r.stderr
    assert team.pgoctl("git", "hash").stdout.strip() == good[:8]


def test_read_only_commands_do_not_wait_behind_a_deploy(team: Team) -> None:
    slow = TICKER + """\
  slow:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    command: ["sleep", "3600"]
    healthcheck:
      test: ["CMD", "sh", "-c", "test -e /tmp/ok || { sleep 4; touch /tmp/ok; false; }"]
      interval: 1s
      retries: 30
  after:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    command: ["sleep", "3600"]
    depends_on:
      slow: {condition: service_healthy}
"""
    team.up.write("compose.yaml", slow)
    team.up.commit("slow to come up")
    deploying = subprocess.Popen(
        [h.PGOCTL, "-i", str(team.keys["alice"]), "-p", str(team.pgod.ssh_port),
         f"127.0.0.1:{team.name}//git", "pull"], env=team.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        team.pgod.wait_log(rf"\[{team.name}\] deploying commit")
        for command in ("ps", "status", "ping"):
            r = team.pgoctl(command)
            assert r.returncode == 0
            assert deploying.poll() is None, f"{command} waited for the deploy"
        out, err = deploying.communicate(timeout=300)
        assert deploying.returncode == 0, out + err
    finally:
        if deploying.poll() is None:
            deploying.kill()
            deploying.communicate()


def test_two_hundred_sessions_at_once(team: Team) -> None:
    procs = [subprocess.Popen(team.ssh_argv(f"{team.name}//ping"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(200)]
    results = [(p.wait(120), p.communicate()) for p in procs]
    failed = [(rc, err) for rc, (_, err) in results if rc != 0]
    assert not failed, failed[:3]
    assert all(out.startswith("pong! - ") for _, (out, _) in results)


def test_pgoctl_id_and_client_errors(team: Team) -> None:
    key = team.keys["alice"].read_text()
    env = team.env(PGOCTL_ID=key.strip())  # as a CI variable may hold it
    r = h.run(h.PGOCTL, "-p", str(team.pgod.ssh_port), f"127.0.0.1:{team.name}//ping",
              check=False, env=env)
    assert r.returncode == 0 and r.stdout.startswith("pong!"), r.stderr
    r = h.run(h.PGOCTL, f"127.0.0.1:{team.name}//ping", check=False, env=team.env())
    assert r.returncode == 2 and "no key" in r.stderr and r.stderr.count("\n") == 1
    r = h.run(h.PGOCTL, "-i", str(team.base / "missing"), f"127.0.0.1:{team.name}//ping",
              check=False, env=team.env())
    assert r.returncode == 2 and "can not read the key" in r.stderr
    assert r.stderr.count("\n") == 1
    r = h.run(h.PGOCTL, "-i", str(team.keys["alice"]), "no-target", check=False,
              env=team.env())
    assert r.returncode == 2 and "HOST:NAME//COMMAND" in r.stderr
    r = h.run(h.PGOCTL, "-i", str(team.keys["alice"]), "-p", str(h.free_port()),
              f"127.0.0.1:{team.name}//ping", check=False, env=team.env())
    assert r.returncode == 255 and r.stderr.startswith("pgoctl: [127.0.0.1]:")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_changed_host_key_is_refused(team: Team, tmp_path: Path) -> None:
    known = tmp_path / "kh"
    env = team.env(PGOCTL_KNOWN_HOSTS=str(known))
    assert team.pgoctl("ping", env=env).returncode == 0  # first use: remembered
    line = known.read_text()
    assert line.startswith(f"[127.0.0.1]:{team.pgod.ssh_port} ssh-ed25519 ")
    assert team.pgoctl("ping", env=env).returncode == 0
    other = team.keygen("imposter")
    known.write_text(f"[127.0.0.1]:{team.pgod.ssh_port} "
                     + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n")
    r = team.pgoctl("ping", env=env)
    assert r.returncode == 255 and r.stdout == ""
    assert "has changed" in r.stderr and f"ssh-keygen -R '[127.0.0.1]:{team.pgod.ssh_port}'" \
        in r.stderr
    h.run("ssh-keygen", "-R", f"[127.0.0.1]:{team.pgod.ssh_port}", "-f", str(known))
    assert team.pgoctl("ping", env=env).returncode == 0


def test_host_key_survives_a_restart(team: Team) -> None:
    key = team.pgod.dir / ".pgo" / "ssh_host_ed25519_key"
    assert os.stat(key).st_mode & 0o777 == 0o600
    before = key.read_bytes()
    team.pgod.stop()
    team.pgod.start()
    team.pgod.wait_log(r"SSH listening", count=2)
    assert key.read_bytes() == before
    # the remembered host key is still good once pgod listens again
    h.wait_until(lambda: team.pgoctl("ping").returncode == 0, 60, "pgoctl ping after restart")


# -- pgoctl's two clients: the system's OpenSSH (by default) and the built-in one ----------

CLIENTS = {"openssh": "/usr/bin/ssh", "built-in": "none"}


def both(team: Team, *argv: str, known: Path | None = None, **env: str
         ) -> list[tuple[int, str, str]]:
    """`pgoctl ARGV` with each client; (exit status, stdout, stderr) of each, in order."""
    out = []
    for ssh in CLIENTS.values():
        extra = {"PGOCTL_SSH": ssh, **env}
        if known is not None:
            extra["PGOCTL_KNOWN_HOSTS"] = str(known)
        r = h.run(h.PGOCTL, *argv, check=False, env=team.env(**extra), timeout=120)
        out.append((r.returncode, r.stdout, r.stderr))
    return out


@pytest.mark.parametrize(("args", "who", "status"), [
    (("{name}//ping",), "alice", 0),
    (("{name}//exec", "web", "sh", "-c", "echo out; echo err >&2; exit 3"), "alice", 3),
    (("{name}//exec", "web", "sh", "-c", "echo last; exit 255"), "alice", 255),
    (("{name}//exec", "web", "printf", "%s|", "a b", "", "c'd", "$HOME"), "alice", 0),
    (("nope//ping",), "alice", 148),
    (("{name}//frob",), "alice", 150),
    (("{name}//ps", "--project-name", "other"), "alice", 144),
    (("{name}//ping",), "nobody", 255),  # a key no service holds
])
def test_both_clients_answer_alike(team: Team, args: tuple[str, ...], who: str,
                                   status: int) -> None:
    target = f"127.0.0.1:{args[0].format(name=team.name)}"
    results = both(team, "-i", str(team.keys[who]), "-p", str(team.pgod.ssh_port), "--",
                   target, *args[1:])
    assert results[0][0] == status, results
    assert results[0] == results[1]


def test_both_clients_fail_alike(team: Team, tmp_path: Path) -> None:
    port = str(team.pgod.ssh_port)
    target = f"127.0.0.1:{team.name}//ping"
    h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f",
          str(tmp_path / "encrypted"))
    cases = [
        (["-i", str(team.keys["alice"]), "-p", str(h.free_port()), target], {}, 255),
        (["-i", str(team.keys["alice"]), "-p", port, f"no-such-host.invalid:{team.name}//ping"],
         {}, 255),
        (["-p", port, target], {}, 2),  # no key
        (["-i", str(tmp_path / "missing"), "-p", port, target], {}, 2),
        (["-i", f"{team.keys['alice']}.pub", "-p", port, target], {}, 2),
        (["-i", str(tmp_path / "encrypted"), "-p", port, target], {}, 2),
        (["-p", port, target], {"PGOCTL_ID": team.keys["alice"].read_text().strip()}, 0),
        (["-p", port, target], {"PGOCTL_ID": "garbage"}, 2),
    ]
    for argv, env, status in cases:
        results = both(team, *argv, **env)
        assert results[0][0] == status, (argv, results)
        assert results[0] == results[1], argv
        if status:
            assert results[0][2].count("\n") == 1 and results[0][1] == ""


def test_both_clients_trust_on_first_use_alike(team: Team, tmp_path: Path) -> None:
    """The first contact remembers the host key in pgoctl's file, the same line with the
    same mode either way; a changed key is then refused by both with the same words."""
    argv = ["-i", str(team.keys["alice"]), "-p", str(team.pgod.ssh_port),
            f"127.0.0.1:{team.name}//ping"]
    files = []
    for name, ssh in CLIENTS.items():
        known = tmp_path / name / "known_hosts"  # its directory is made too
        r = h.run(h.PGOCTL, "-v", *argv, check=False,
                  env=team.env(PGOCTL_SSH=ssh, PGOCTL_KNOWN_HOSTS=str(known)))
        assert r.returncode == 0 and r.stdout.startswith("pong!"), r.stderr
        assert f"pgoctl: remembered [127.0.0.1]:{team.pgod.ssh_port}'s host key SHA256:" \
            in r.stderr and r.stderr.count("\n") == 2
        assert os.stat(known).st_mode & 0o777 == 0o600
        files.append(known.read_text())
    assert files[0] == files[1] and files[0].startswith(f"[127.0.0.1]:{team.pgod.ssh_port} ")
    known = tmp_path / "known"
    quiet = both(team, *argv, known=known)
    assert quiet[0] == quiet[1] and quiet[0][0] == 0 and quiet[0][2] == ""
    imposter = team.keygen("imposter2")
    forged = (f"# comment\n[127.0.0.1]:{team.pgod.ssh_port} "
              + " ".join(Path(f"{imposter}.pub").read_text().split()[:2]) + "\n")
    known.write_text(forged)
    refused = both(team, *argv, known=known)
    assert refused[0] == refused[1], refused
    assert refused[0][0] == 255 and "has changed" in refused[0][2] and "(line 2 of" in \
        refused[0][2]
    assert known.read_text() == forged  # nothing added by either


def test_pgoctl_runs_the_system_ssh_when_it_can(team: Team, tmp_path: Path) -> None:
    """By default the ssh on PATH carries the request; a key it could read otherwise
    (PEM) goes to the built-in client."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "ssh").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec /usr/bin/ssh "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    env = team.env(PATH=f"{bin_dir}:/usr/bin:/bin")
    env.pop("PGOCTL_SSH", None)
    r = h.run(h.PGOCTL, "-i", str(team.keys["alice"]), "-p", str(team.pgod.ssh_port),
              f"127.0.0.1:{team.name}//ping", check=False, env=env)
    assert r.returncode == 0 and r.stdout.startswith("pong!"), r.stderr
    assert "-F /dev/null" in calls.read_text() and "IdentityAgent=none" in calls.read_text()
    pem = tmp_path / "id_pem"
    pem.write_bytes(asyncssh.read_private_key(str(team.keys["alice"]))
                    .export_private_key("pkcs8-pem"))
    calls.unlink()
    r = h.run(h.PGOCTL, "-i", str(pem), "-p", str(team.pgod.ssh_port),
              f"127.0.0.1:{team.name}//ping", check=False, env=env)
    assert r.returncode == 0 and r.stdout.startswith("pong!"), r.stderr
    assert not calls.exists()
