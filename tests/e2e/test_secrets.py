"""SOPS documents in a service's repository, end to end: a real pgod (with --debug), the real
engine, compose, git, age and pgoctl. A team asks //recipient, encrypts for it (the test's
encryptor, tests/sopsenc.py, wraps the data key with the real `age` command) and pushes; the
container sees the plaintext through `env_file` and a file-backed compose secret; a tampered
push or a symlinked secret is refused and the last good deployment keeps running; pgod's log
never holds a plaintext."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import sopsenc
from tests.e2e import harness as h

COMPOSE = f"""\
services:
  web:
    image: {h.IMAGE}
    pull_policy: if_not_present
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    env_file: [app.env]
    secrets: [db]
secrets:
  db:
    file: ./db.password
"""


def keygen(base: Path, who: str) -> Path:
    path = base / f"id_{who}"
    h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(path))
    return path


pgoctl = h.pgoctl


def in_container(name: str, *argv: str) -> str:
    ids = h.container_ids(name)
    assert len(ids) == 1, ids
    return h.run("docker", "exec", next(iter(ids)), *argv).stdout


def check(cfg: Path, pgod: h.Pgod, name: str, path: Path, user: str | None = None
          ) -> tuple[int, str, str]:
    argv = [h.PGOD, "check", "-c", str(cfg), "-d", str(pgod.dir), "--datadir",
            str(pgod.datadir), "--service", name, str(path)]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    r = h.run(*argv, check=False, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


class Team:
    """One service with committed SSH keys, a running pgod, and the values it encrypts."""

    def __init__(self, base: Path, **extra: object) -> None:
        self.base = base
        self.name = h.unique("sec")
        self.key = keygen(base, "alice")
        self.up = h.Upstream(base)
        self.up.write("compose.yaml", h.WEB)
        self.up.write("ssh/alice.pub", Path(f"{self.key}.pub").read_text())
        self.up.commit("first")
        self.pgod = h.Pgod(base, [{"name": self.name, "user": h.USER,
                                   "repository": self.up.url, **extra}], interval="1s")
        self.password = "pw-" + secrets.token_hex(12)
        self.db_password = "db-" + secrets.token_hex(12)

    def pgoctl(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return pgoctl(self.pgod, self.key, self.name, command, *args)

    def recipient(self) -> str:
        r = self.pgoctl("recipient")
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout.strip()

    def push_secrets(self, recipients: list[str], msg: str = "secrets") -> str:
        self.up.write("compose.yaml", COMPOSE)
        self.encrypt("app.env", f"DB_PASSWORD={self.password}\nMODE=prod\n", recipients)
        self.encrypt("db.password", self.db_password, recipients)
        return self.up.commit(msg)

    def encrypt(self, path: str, plaintext: str, recipients: list[str]) -> None:
        doc = sopsenc.encrypt(plaintext.encode(), path, recipients)
        self.up.write(path, doc.decode())

    def deployed(self, commit: str) -> None:
        # (the end of its health gate: applied_commit is recorded at the up, before it)
        self.pgod.wait_log(rf"\[{self.name}\] deployed commit {commit[:8]} in ")
        assert self.pgod.state(self.name).get("applied_commit") == commit


@pytest.fixture
def team(base: Path, projects: list[str], pgods: list[h.Pgod]) -> Iterator[Team]:
    t = Team(base)
    projects.append(t.name)
    pgods.append(t.pgod)
    t.pgod.start()
    t.pgod.wait_log(rf"\[{t.name}\] reconcile \(start\) done: deployed")
    t.pgod.wait_log(r"SSH listening")
    yield t


def test_a_container_sees_the_secrets_and_a_tampered_push_keeps_it_running(
        base: Path, team: Team) -> None:
    pgod, name = team.pgod, team.name
    # the service's own key: root's alone, in pgod's private directory
    key = pgod.dir / ".pgo" / "services" / name / "age.key"
    st = key.lstat()
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(st.st_mode) == 0o600
    r = h.run("setpriv", f"--reuid={h.USER}", f"--regid={h.USER}", "--clear-groups",
              "cat", str(key), check=False)
    assert r.returncode != 0 and "AGE-SECRET-KEY" not in r.stdout
    recipient = team.recipient()
    assert re.fullmatch(r"age1[0-9a-z]{58}", recipient), recipient
    assert f"public key: {recipient}" in key.read_text()
    status = team.pgoctl("status")
    assert f"recipient:  {recipient}" in status.stdout, status.stdout

    good = team.push_secrets([recipient])
    team.deployed(good)
    h.wait_until(lambda: len(h.container_ids(name)) == 1, what="the container")
    assert f"DB_PASSWORD={team.password}" in in_container(name, "env")
    assert in_container(name, "cat", "/run/secrets/db") == team.db_password
    checkout = pgod.dir / name
    uid = pwd.getpwnam(h.USER).pw_uid
    for rel in ("app.env", "db.password"):
        st = (checkout / rel).lstat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o600), rel
    assert "sops" not in (checkout / "app.env").read_text()
    running = h.container_ids(name)

    # a tampered value: the commit is refused naming the file, what runs keeps running
    text = (team.up.work / "app.env").read_text()
    at = text.index("data:", text.index("DB_PASSWORD=")) + 5
    flipped = "A" if text[at] != "A" else "B"
    team.up.write("app.env", text[:at] + flipped + text[at + 1:])
    bad = team.up.commit("tampered")
    line = pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(secrets\): app\.env: ")
    assert "can not be decrypted" in line, line
    h.next_cycle(pgod, name, 2)
    assert pgod.count(rf"commit {bad[:8]} refused") == 1, "a refusal is not retried every pass"
    assert h.container_ids(name) == running
    assert in_container(name, "cat", "/run/secrets/db") == team.db_password
    assert h.checkout_head(checkout) == good, "the refused commit stays out of the checkout"
    state = pgod.state(name)
    assert state["verdict"]["kind"] == "secrets" and state["verdict"]["commit"] == bad
    status = team.pgoctl("status").stdout
    assert f"refused:    commit {bad[:8]}" in status and "app.env: can not be decrypted" \
        in status, status
    load = team.pgoctl("load")
    assert load.returncode == 1 and f"refused: commit {bad[:8]}: app.env: can not be " \
        "decrypted" in load.stderr, load.stdout + load.stderr
    # pgod check, as root, says the same of the team's working copy, and writes nothing there
    before = (team.up.work / "app.env").read_bytes()
    rc, out, err = check(pgod.config, pgod, name, team.up.work)
    assert rc == 1 and out.startswith(f"{name}: app.env: can not be decrypted"), (out, err)
    assert (team.up.work / "app.env").read_bytes() == before

    # fixed: deployed again, and the plaintexts never reached pgod's log (--debug)
    team.password = "pw2-" + secrets.token_hex(12)
    fixed = team.push_secrets([recipient], "fixed")
    team.deployed(fixed)
    h.wait_until(lambda: f"DB_PASSWORD={team.password}" in in_container(name, "env"),
                 what="the new password in the container")
    rc, out, err = check(pgod.config, pgod, name, team.up.work)
    assert rc == 0 and out.strip() == f"{name}: accepted, 1 compose service(s)", (out, err)
    assert (team.up.work / "app.env").read_bytes() != (checkout / "app.env").read_bytes()
    assert "sops_mac=" in (team.up.work / "app.env").read_text(), "PATH keeps its ciphertext"
    assert not list(Path("/tmp").glob("pgod-check-*")), "the scratch copy is gone"
    # a team's CI can not read the key: the policy is judged, the secrets are said unchecked
    rc, out, err = check(pgod.config, pgod, name, team.up.work, user=h.USER)
    assert rc == 0 and f"{name}: SOPS documents not checked" in err, (out, err)
    log = pgod.log()
    assert "--debug" in " ".join(pgod.argv()) and "run as" in log
    for value in ("pw-", "pw2-", "db-"):
        assert not re.search(rf"\b{value}[0-9a-f]{{24}}", log), value
    assert "AGE-SECRET-KEY" not in log


def test_a_decrypted_value_is_redacted_after_a_restart_too(base: Path, team: Team) -> None:
    """A restarted pgod finds the checkout decrypted and restarts nothing; a compose error
    that quotes a value from an encrypted `.env` shows `***` in the log, //status, //load
    and the state file."""
    pgod, name = team.pgod, team.name
    recipient = team.recipient()
    team.encrypt(".env", f"PORT=8080\nDB_PASSWORD={team.password}\n", [recipient])
    good = team.push_secrets([recipient])
    team.deployed(good)
    running = h.wait_until(lambda: h.container_ids(name), what="the container")
    pgod.stop()
    pgod.start()
    pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: unchanged")
    assert h.container_ids(name) == running
    assert "sops" not in (pgod.dir / name / ".env").read_text()
    # compose quotes the interpolated value in its error: "invalid containerPort: VALUE"
    team.up.write("compose.yaml", COMPOSE.replace('    command:', '    ports: ["${DB_PASSWORD}"]'
                                                  '\n    command:', 1))
    bad = team.up.commit("a port that is a password")
    line = pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(error\)")
    assert "invalid containerPort: ***" in line, line
    status = team.pgoctl("status").stdout
    load = team.pgoctl("load")
    assert "invalid containerPort: ***" in status and "***" in load.stderr, (status, load)
    for text in (pgod.log(), status, load.stdout + load.stderr,
                 (pgod.dir / ".pgo" / "services" / name / "state.json").read_text()):
        assert team.password not in text
    assert h.container_ids(name) == running


def test_a_symlinked_secret_is_refused(base: Path, team: Team) -> None:
    """A secret file that is a symlink (to another service's plaintext, to /etc/shadow) is
    never followed: the policy refuses the compose file that names it."""
    pgod, name = team.pgod, team.name
    recipient = team.recipient()
    good = team.push_secrets([recipient])
    team.deployed(good)
    running = h.container_ids(name)
    team.up.remove("db.password")
    os.symlink("/etc/shadow", team.up.work / "db.password")
    bad = team.up.commit("symlinked secret")
    line = pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(policy\): .*db\.password")
    assert "/etc/shadow" in line, line
    assert h.container_ids(name) == running
    assert in_container(name, "cat", "/run/secrets/db") == team.db_password


def test_a_rotated_key_and_a_removed_service_keep_their_secrets(
        base: Path, projects: list[str], pgods: list[h.Pgod]) -> None:
    """The operator's age_identity file holds the old and the new identity: a document
    encrypted for either decrypts, and //recipient is the new one. Removing a service from
    pgo.toml keeps its own key."""
    keys = base / "keys"
    keys.mkdir(mode=0o700)
    ident = keys / "team.txt"
    old = h.run("age-keygen", "-o", str(ident)).stderr
    new = h.run("age-keygen").stdout
    with ident.open("a") as f:
        f.write(new)
    ident.chmod(0o600)
    old_recipient = old.split("Public key: ")[1].strip()
    new_recipient = new.split("# public key: ")[1].split()[0]
    t = Team(base, age_identity=str(ident))
    projects.append(t.name)
    pgods.append(t.pgod)
    t.pgod.start()
    t.pgod.wait_log(rf"\[{t.name}\] reconcile \(start\) done: deployed")
    assert t.recipient() == new_recipient
    t.up.write("compose.yaml", COMPOSE)
    t.encrypt("app.env", f"DB_PASSWORD={t.password}\n", [old_recipient])
    t.encrypt("db.password", t.db_password, [new_recipient])
    commit = t.up.commit("one for the old key, one for the new")
    t.deployed(commit)
    h.wait_until(lambda: len(h.container_ids(t.name)) == 1, what="the container")
    assert f"DB_PASSWORD={t.password}" in in_container(t.name, "env")
    assert in_container(t.name, "cat", "/run/secrets/db") == t.db_password
    assert not (t.pgod.dir / ".pgo" / "services" / t.name / "age.key").exists(), \
        "a service with age_identity gets no key of its own"

    # a second service, with its own key, removed from pgo.toml and added again
    other = h.unique("gone")
    projects.append(other)
    svc = {"name": t.name, "user": h.USER, "repository": t.up.url, "age_identity": str(ident)}
    gone = {"name": other, "user": h.USER, "repository": t.up.url}
    t.pgod.write_config([svc, gone])
    t.pgod.wait_log(rf"\[{other}\] reconcile \(start\) done")
    own = t.pgod.dir / ".pgo" / "services" / other / "age.key"
    kept = own.read_bytes()
    t.pgod.write_config([svc])
    t.pgod.wait_log(rf"\[{other}\] keeping its age identity")
    h.wait_until(lambda: not (t.pgod.dir / other).exists(), what="its checkout removed")
    assert own.read_bytes() == kept
    assert sorted(p.name for p in own.parent.iterdir()) == ["age.key"]
    t.pgod.write_config([svc, gone])
    t.pgod.wait_log(rf"\[{other}\] reconcile \(start\) done", count=2)
    assert own.read_bytes() == kept, "added again: the same key"
