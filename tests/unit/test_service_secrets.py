"""A service's SOPS documents in the reconcile pass, at the runner's edge: every commit
checked out (clone, reset, the worktree a new commit is judged in) is decrypted there before
compose reads it; a document that does not decrypt refuses its commit once, as a policy
refusal does; a restarted tracker learns the values decrypted before it; the values reach
one shared redaction list. The documents are real (tests/sopsenc.py, the `age` command);
git is the FakeRunner's, which also plays `git ls-files`."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from pgo import config
from pgo.daemon import Daemon, Options
from pgo.runner import RunAs
from pgo.secrets import inplace
from pgo.service import Paths, TrackedService
from pgo.state import Outcome, VerdictKind
from tests import sopsenc
from tests.unit.fakes import Answer, Call, FakeRunner

COMPOSE = {"services": {"web": {"image": "local/busybox:1", "env_file": ["app.env"]}}}
PLAIN = b"DB_PASSWORD=hunter2-correct-horse\n"


class Repo:
    """The files of each upstream commit beside its compose file, written where the fake
    git checks a commit out, and `git ls-files` (--modified too) answered from them."""

    def __init__(self, fake: FakeRunner) -> None:
        self.fake = fake
        self.files: dict[str, dict[str, bytes]] = {}
        for kind in ("git clone", "git reset", "git worktree", "git ls-files"):
            fake.on[kind] = self.answer

    def push(self, files: dict[str, bytes], compose: dict[str, Any] = COMPOSE) -> str:
        commit = self.fake.push(compose)
        self.files[commit] = files
        return commit

    @staticmethod
    def head(work: Path) -> str:
        return (work / ".git" / "HEAD").read_text().strip()

    def answer(self, call: Call) -> Answer:
        argv, work = call.argv, Path(call.cwd or ".")
        if argv[1] == "ls-files":
            files = self.files.get(self.head(work), {})
            names = sorted(files) if "--modified" not in argv else sorted(
                n for n, data in files.items() if (work / n).read_bytes() != data)
            return 0, "".join(f"{n}\0" for n in ["compose.yaml", *names]
                              if "--modified" not in argv or n != "compose.yaml")
        rc, out = self.fake._git(call)
        if argv[1] == "clone" and "--no-checkout" in argv:
            return rc, out
        target = Path(argv[-2]) if argv[1] == "worktree" else work
        if argv[1] == "worktree" and argv[2] != "add":
            return rc, out
        for name, data in self.files.get(self.head(target), {}).items():
            (target / name).write_bytes(data)
        return rc, out


def me(home: Path) -> RunAs:
    return RunAs(user="team", uid=os.getuid(), gid=os.getgid(), groups=(), home=str(home))


def tracked(tmp: Path, fake: FakeRunner, **kw: Any) -> TrackedService:
    cfg = config.Service(name="svc", user="team", repository="/srv/git/svc.git", **kw)
    svc = TrackedService(cfg, Paths(tmp / "pgo", tmp / "data"), fake, ("docker", "compose"),
                         as_user=me(tmp))
    svc.prepare()
    return svc


def recipient(tmp: Path) -> str:
    text = (tmp / "pgo" / ".pgo" / "services" / "svc" / "age.key").read_text()
    return text.split("# public key: ")[1].split()[0]


def encrypted(plain: bytes, name: str, to: str) -> bytes:
    return sopsenc.encrypt(plain, name, [to])


def converge(svc: TrackedService) -> Outcome:
    return asyncio.run(svc.reconcile())


@pytest.fixture
def fake() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def repo(fake: FakeRunner) -> Repo:
    return Repo(fake)


def test_a_cloned_commit_is_decrypted_before_compose_reads_it(
        tmp_path: Path, fake: FakeRunner, repo: Repo) -> None:
    svc = tracked(tmp_path, fake)
    repo.push({"app.env": encrypted(PLAIN, "app.env", recipient(tmp_path))})
    assert converge(svc) is Outcome.DEPLOYED
    assert (svc.checkout.path / "app.env").read_bytes() == PLAIN
    kinds = fake.kinds()
    assert kinds.index("git clone") < kinds.index("git ls-files") < kinds.index("compose config")
    assert "hunter2-correct-horse" in svc.secrets
    # one list, shared by everything that prints for the service (and it grows)
    assert svc.checkout.secrets is svc.secrets and svc.project.secrets is svc.secrets
    assert svc.decrypted_at == fake.head
    fake.calls.clear()
    assert converge(svc) is Outcome.UNCHANGED
    assert "git ls-files" not in fake.kinds(), "an unchanged commit is not scanned again"


def test_a_new_commit_is_decrypted_beside_the_checkout_then_in_it(
        tmp_path: Path, fake: FakeRunner, repo: Repo) -> None:
    svc = tracked(tmp_path, fake)
    to = recipient(tmp_path)
    repo.push({"app.env": encrypted(PLAIN, "app.env", to)})
    assert converge(svc) is Outcome.DEPLOYED
    changed = {"services": {"web": {**COMPOSE["services"]["web"], "environment": ["V=2"]}}}
    second = repo.push({"app.env": encrypted(b"DB_PASSWORD=rotated-password-2\n", "app.env",
                                             to)}, changed)
    seen: list[bytes] = []

    def config_call(call: Call) -> Answer:  # what compose reads, where it reads it
        seen.append((Path(call.cwd or ".") / "app.env").read_bytes())
        return fake._compose(call)
    fake.on["compose config"] = config_call
    assert converge(svc) is Outcome.DEPLOYED
    assert seen and all(s == b"DB_PASSWORD=rotated-password-2\n" for s in seen)
    assert svc.state.applied_commit == second
    assert {"hunter2-correct-horse", "rotated-password-2"} <= set(svc.secrets)


def test_a_tampered_push_is_refused_once_and_kept_out(
        tmp_path: Path, fake: FakeRunner, repo: Repo, caplog: pytest.LogCaptureFixture
) -> None:
    svc = tracked(tmp_path, fake)
    to = recipient(tmp_path)
    good = repo.push({"app.env": encrypted(PLAIN, "app.env", to)})
    assert converge(svc) is Outcome.DEPLOYED
    doc = encrypted(PLAIN, "app.env", to).replace(b"data:", b"data:AAAA", 1)
    bad = repo.push({"app.env": doc})
    fake.calls.clear()
    assert converge(svc) is Outcome.REFUSED
    assert "git reset" not in fake.kinds() and "compose up" not in fake.kinds()
    v = svc.state.verdict
    assert v is not None and v.kind is VerdictKind.SECRETS and v.commit == bad
    assert v.reasons[0].startswith("app.env: can not be decrypted: ")
    assert svc.state.last_error == v.summary()
    assert (svc.checkout.path / "app.env").read_bytes() == PLAIN
    assert repo.head(svc.checkout.path) == good
    fake.calls.clear()
    assert converge(svc) is Outcome.REFUSED
    assert "git worktree" not in fake.kinds(), "not judged again every pass"
    refusals = [r for r in caplog.records if "refused (secrets)" in r.getMessage()]
    assert len(refusals) == 1 and "app.env: can not be decrypted" in refusals[0].getMessage()


def test_a_first_commit_that_does_not_decrypt_is_refused_and_never_loaded(
        tmp_path: Path, fake: FakeRunner, repo: Repo) -> None:
    """No deployment yet: the commit is cloned with its files; its documents stay
    ciphertext, compose never reads them, and //up tries again and says why."""
    svc = tracked(tmp_path, fake)
    key2 = Path(__file__).resolve().parents[1] / "sops-testdata" / "keys" / "key2.txt"
    theirs = key2.read_text().split("# public key: ")[1].split()[0]
    commit = repo.push({"app.env": encrypted(PLAIN, "app.env", theirs)})
    assert converge(svc) is Outcome.REFUSED
    assert "compose config" not in fake.kinds() and "compose up" not in fake.kinds()
    v = svc.state.verdict
    assert v is not None and v.kind is VerdictKind.SECRETS and v.commit == commit
    assert "no identity of this service opens it" in v.reasons[0]
    assert b"sops_mac=" in (svc.checkout.path / "app.env").read_bytes()
    fake.calls.clear()
    assert converge(svc) is Outcome.REFUSED
    assert "git ls-files" not in fake.kinds() and "compose config" not in fake.kinds()
    assert asyncio.run(svc.apply()) is Outcome.REFUSED  # (//up tries it again)
    assert "git ls-files" in fake.kinds() and "compose up" not in fake.kinds()
    v = svc.state.verdict
    assert v is not None and "app.env: can not be decrypted" in v.reasons[0]


def test_an_identity_that_can_not_be_read_fails_the_pass_and_is_tried_again(
        tmp_path: Path, fake: FakeRunner, repo: Repo) -> None:
    ident = tmp_path / "team.txt"
    svc = tracked(tmp_path, fake, age_identity=str(ident))
    key1 = Path(__file__).resolve().parents[1] / "sops-testdata" / "keys" / "key1.txt"
    ours = key1.read_text().split("# public key: ")[1].split()[0]
    repo.push({"app.env": encrypted(PLAIN, "app.env", ours)})
    assert converge(svc) is Outcome.FAILED
    assert svc.state.last_error.startswith(f"{ident}: can not read it")
    assert svc.state.verdict is None, "the machine's problem, not a verdict on the commit"
    assert converge(svc) is Outcome.FAILED
    stop = svc.paths.stopfile("svc")
    stop.touch()  # the operator's brake works all the same
    assert converge(svc) is Outcome.STOP_FILE
    stop.unlink()
    ident.write_bytes(key1.read_bytes())
    ident.chmod(0o600)
    assert converge(svc) is Outcome.DEPLOYED
    assert (svc.checkout.path / "app.env").read_bytes() == PLAIN


def test_a_restarted_tracker_learns_the_values_decrypted_before_it(
        tmp_path: Path, fake: FakeRunner, repo: Repo) -> None:
    """The checkout holds plaintext now: the values come from the commit checked out
    beside it; a document still encrypted (pgod stopped between reset and decryption) is
    decrypted in place; nothing is redeployed."""
    svc = tracked(tmp_path, fake)
    to = recipient(tmp_path)
    repo.push({"app.env": encrypted(PLAIN, "app.env", to),
               "db.password": encrypted(b"db-password-value", "db.password", to)})
    assert converge(svc) is Outcome.DEPLOYED
    inode = (svc.checkout.path / "app.env").stat().st_ino
    (svc.checkout.path / "db.password").write_bytes(repo.files[fake.head]["db.password"])
    again = tracked(tmp_path, fake)
    assert "hunter2-correct-horse" not in again.secrets
    fake.calls.clear()
    assert converge(again) is Outcome.UNCHANGED
    assert {"hunter2-correct-horse", "db-password-value"} <= set(again.secrets)
    assert (again.checkout.path / "app.env").stat().st_ino == inode, "left as it was"
    assert (again.checkout.path / "db.password").read_bytes() == b"db-password-value"
    assert fake.kinds().count("git worktree") == 2  # add, prune
    fake.calls.clear()
    assert converge(again) is Outcome.UNCHANGED
    assert "git ls-files" not in fake.kinds()


def test_the_service_log_redacts_every_value(tmp_path: Path, fake: FakeRunner,
                                             caplog: pytest.LogCaptureFixture) -> None:
    svc = tracked(tmp_path, fake)
    svc.secrets.add(["decrypted-value-1"])
    with caplog.at_level(logging.DEBUG, logger="pgo.service"):
        svc.log.error("model: %s", {"X": "decrypted-value-1"})
        svc.log.debug("100%% of %s", "decrypted-value-1")
        svc.log.info("%s and %s", "decrypted-value-1")  # a bad format: never raises
    assert [r.getMessage() for r in caplog.records][-3:] == [
        "[svc] model: {'X': '***'}", "[svc] 100% of ***", "[svc] %s and %s ('***',)"]


def test_redactions_keep_the_configured_values_and_a_bounded_number_of_others() -> None:
    r = inplace.Redactions(["token-from-config", ""])
    assert r == ["token-from-config"]
    r.add(f"value-{i:05d}" for i in range(inplace.MAX_DECRYPTED + 10))
    r.add(["value-04105", "token-from-config"])  # known already: nothing changes
    assert r[0] == "token-from-config" and len(r) == 1 + inplace.MAX_DECRYPTED
    assert "value-00009" not in r and "value-00010" in r


def test_a_removed_service_keeps_its_own_key(tmp_path: Path, fake: FakeRunner) -> None:
    svc = tracked(tmp_path, fake)
    fake.push(COMPOSE)
    assert converge(svc) is Outcome.DEPLOYED
    private = tmp_path / "pgo" / ".pgo" / "services" / "svc"
    key = (private / "age.key").read_bytes()
    opts = Options(config_path=str(tmp_path / "pgo.toml"),
                   paths=Paths(tmp_path / "pgo", tmp_path / "data"), interval=60,
                   ssh_addr=None, metric_addr=None, restart=False,
                   compose_binary=("docker", "compose"))
    d = Daemon(config.Config(path=opts.config_path, services=()), opts, runner=fake)
    assert d.set_up("svc")
    asyncio.run(d.remove_stale(keep=[]))
    assert not (tmp_path / "pgo" / "svc").exists()
    assert [p.name for p in private.iterdir()] == ["age.key"]
    assert (private / "age.key").read_bytes() == key
    assert not d.set_up("svc"), "a kept key alone is no service pgod set up"
    (tmp_path / "pgo" / "svc").mkdir()  # someone else's directory of that name
    asyncio.run(d.remove_stale(keep=[]))
    assert (tmp_path / "pgo" / "svc").exists()
    tracked(tmp_path, fake)
    assert (private / "age.key").read_bytes() == key, "configured again: the same key"


def test_a_document_name_can_not_forge_a_log_line(
        tmp_path: Path, fake: FakeRunner, repo: Repo, caplog: pytest.LogCaptureFixture) -> None:
    svc = tracked(tmp_path, fake)
    name = "x\n[ERROR] forged.env"
    repo.push({name: encrypted(PLAIN, "x.env", recipient(tmp_path))})
    with caplog.at_level(logging.INFO, logger="pgo.service"):
        assert converge(svc) is Outcome.DEPLOYED
    decrypted = [r.getMessage() for r in caplog.records if "decrypted 1 SOPS" in r.getMessage()]
    assert decrypted and all("\n" not in m and "x\\n[ERROR] forged.env" in m for m in decrypted)
