"""Private registries against a real one: Debian's docker-registry with basic auth
(htpasswd, bcrypt) on loopback, which dockerd accepts without TLS.

pgod logs in before the pull, as the service's user, with the token on standard input, and
out after. Proven here: services with different credentials for the same registry deploy
side by side, each in its own DOCKER_CONFIG (one's logout never ends the other's login); a
wrong token fails the deploy in one line; the token is in no log line, no process's command
line or environment, and no file once the deploy is over."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgo import config
from pgo.compose import V2
from pgo.runner import Result, RunAs, Runner, Sink
from pgo.service import Paths, TrackedService
from tests.e2e import harness as h


@dataclass
class Registry:
    host: str
    users: dict[str, str]  # user -> token
    proc: subprocess.Popen[bytes]

    def image(self, tag: str) -> str:
        return f"{self.host}/pgo/busybox:{tag}"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError as e:
        return e.code == 401
    except OSError:
        return False
    return False


@pytest.fixture
def registry(base: Path) -> Iterator[Registry]:
    d = base / "registry"
    (d / "data").mkdir(parents=True)
    users = {"alice": "tokA-" + secrets.token_hex(12), "bob": "tokB-" + secrets.token_hex(12)}
    (d / "htpasswd").write_text("".join(
        h.run("htpasswd", "-Bbn", u, t).stdout.strip() + "\n" for u, t in users.items()))
    port = h.free_port()
    (d / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
        f"  secret: {secrets.token_hex(16)}\nauth:\n  htpasswd:\n    realm: pgo-test\n"
        f"    path: {d / 'htpasswd'}\n")
    log = (d / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT)
    reg = Registry(f"127.0.0.1:{port}", users, proc)
    try:
        h.wait_until(lambda: proc.poll() is not None or _answers(f"http://{reg.host}/v2/"),
                     30, "the registry to answer 401")
        assert proc.poll() is None, (d / "registry.log").read_text()
        yield reg
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        images = h.run("docker", "image", "ls", "-q", "--filter", f"reference={reg.host}/*/*",
                       check=False).stdout.split()
        if images:
            h.run("docker", "image", "rm", "-f", *set(images), check=False)


def push(reg: Registry, base: Path, tag: str) -> str:
    """Push pgoimg/busybox:1 as root (with a throw-away DOCKER_CONFIG), then remove the
    tagged copy so that only a pull can bring it back."""
    env = {**os.environ, "DOCKER_CONFIG": str(base / "root-docker")}
    image = reg.image(tag)
    h.run("docker", "login", "--username", "alice", "--password-stdin", reg.host,
          input=reg.users["alice"], env=env)
    h.run("docker", "tag", h.IMAGE, image, env=env)
    h.run("docker", "push", "--quiet", image, env=env)
    h.run("docker", "image", "rm", image, env=env)
    h.run("docker", "logout", reg.host, env=env)
    assert h.run("docker", "image", "inspect", image, check=False).returncode != 0
    return image


class Watch:
    """Looks for a secret in every process's command line and environment while it runs."""

    def __init__(self, needles: Sequence[str]) -> None:
        self.needles = [n.encode() for n in needles]
        self.found: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self.done.wait(0.02):
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                for what in ("cmdline", "environ"):
                    try:
                        with open(f"/proc/{pid}/{what}", "rb") as f:
                            data = f.read()
                    except OSError:
                        continue
                    if any(n in data for n in self.needles):
                        self.found.append(f"{pid}/{what}: {data[:200]!r}")

    def stop(self) -> list[str]:
        self.done.set()
        self.thread.join(5)
        return self.found


def files_holding(root: Path, needles: Sequence[str]) -> list[str]:
    hits = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            hits += [str(p) for s in needles if s.encode() in data]
    return hits


def auths(docker_config: Path) -> dict[str, object]:
    try:
        return dict(json.loads((docker_config / "config.json").read_text()).get("auths") or {})
    except FileNotFoundError:
        return {}


def compose(image: str) -> str:
    return (f"services:\n  web:\n    image: {image}\n"
            '    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
            '    expose: ["8080"]\n')


def test_pgod_pulls_with_each_services_own_credentials(base, registry, projects, pgods):
    image = push(registry, base, h.unique("t"))
    up = h.Upstream(base)
    up.write("compose.yaml", compose(image))
    up.commit("from the private registry")
    a, b, bad = h.unique("ra"), h.unique("rb"), h.unique("rx")
    projects += [a, b, bad]
    wrong = "wrong-" + secrets.token_hex(12)
    tokens = [*registry.users.values(), wrong]
    creds = {a: f"alice:{registry.users['alice']}@{registry.host}",
             b: f"bob:{registry.users['bob']}@{registry.host}",
             bad: f"alice:{wrong}@{registry.host}"}
    pgod = h.Pgod(base, [{"name": n, "user": h.USER, "repository": up.url,
                          "registries": [c]} for n, c in creds.items()], interval="5m")
    pgods.append(pgod)
    watch = Watch(tokens)
    try:
        pgod.start()
        pgod.wait_log(rf"\[{a}\] reconcile \(start\) done: deployed")
        pgod.wait_log(rf"\[{b}\] reconcile \(start\) done: deployed")
        pgod.wait_log(rf"\[{bad}\] reconcile \(start\) done: failed")
    finally:
        seen = watch.stop()
    assert h.container_ids(a) and h.container_ids(b) and not h.container_ids(bad)
    failure = pgod.wait_log(rf"\[{bad}\] docker login")
    assert f"docker login {registry.host} (user alice): exit status 1:" in failure
    assert "401" in failure or "unauthorized" in failure.lower()
    assert "failed" in pgod.state(bad)["last_error"] or "exit status" in pgod.state(bad)[
        "last_error"]

    # the token is nowhere: log (pgod runs with --debug), processes, files
    assert pgod.count("docker login") >= 3  # the debug lines are there, tokens are not
    assert not [t for t in tokens if t in pgod.log()]
    assert seen == []
    assert files_holding(pgod.dir, tokens) == []
    assert files_holding(pgod.datadir, tokens) == []
    for n in creds:
        assert auths(pgod.dir / ".pgo" / "services" / n / "docker") == {}


class Recording:
    """The real runner, noting every command line and environment it is handed."""

    def __init__(self) -> None:
        self.real = Runner()
        self.seen: list[str] = []

    def note(self, argv: Sequence[str], env: Mapping[str, str] | None) -> None:
        self.seen.append(" ".join(argv) + " " + " ".join(f"{k}={v}" for k, v in
                                                           (env or {}).items()))

    async def run(self, argv: Sequence[str], *, as_user: RunAs | None = None,
                  cwd: str | None = None, env: Mapping[str, str] | None = None,
                  stdin: bytes | None = None, timeout: float | None = None,
                  secrets: Sequence[str] = (), service: str = "", check: bool = False,
                  what: str = "") -> Result:
        self.note(argv, env)
        return await self.real.run(argv, as_user=as_user, cwd=cwd, env=env, stdin=stdin,
                                   timeout=timeout, secrets=secrets, service=service,
                                   check=check, what=what)

    async def stream(self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
                     as_user: RunAs | None = None, cwd: str | None = None,
                     env: Mapping[str, str] | None = None, stdin: bytes | None = None,
                     secrets: Sequence[str] = (), service: str = "") -> int:
        self.note(argv, env)
        return await self.real.stream(argv, stdout=stdout, stderr=stderr, as_user=as_user,
                                      cwd=cwd, env=env, stdin=stdin, secrets=secrets,
                                      service=service)


def test_one_services_logout_never_ends_anothers_login(base, registry):
    """Deterministically what happens when two deploys overlap: B logs in and out with
    other credentials for the same registry while A is logged in; A's login stays, and A
    pulls with it. A shared DOCKER_CONFIG would have lost it at B's logout."""
    image = push(registry, base, h.unique("t"))
    runner = Recording()
    paths = Paths(base / "pgo", base / "data")

    def tracked(name: str, user: str) -> TrackedService:
        cfg = config.Service(name=name, user=h.USER, repository="/nowhere", registries=(
            config.Registry(user=user, token=registry.users[user], host=registry.host),))
        svc = TrackedService(cfg, paths, runner, V2)
        svc.prepare()
        return svc

    a, b = tracked(h.unique("ra"), "alice"), tracked(h.unique("rb"), "bob")
    assert a.docker_config() != b.docker_config()

    def login_of(svc: TrackedService) -> str:
        entry = auths(svc.docker_config()).get(registry.host)
        assert isinstance(entry, dict), auths(svc.docker_config())
        return base64.b64decode(str(entry["auth"])).decode().split(":", 1)[0]

    async def overlap() -> None:
        async with a.registries():
            assert login_of(a) == "alice"
            async with b.registries():
                assert (login_of(a), login_of(b)) == ("alice", "bob")
            assert auths(b.docker_config()) == {}
            assert login_of(a) == "alice"
            res = await runner.run(["docker", "pull", "--quiet", image], as_user=a.as_user,
                                   env=a.project.env, timeout=120)
            assert res.returncode == 0, res.output
        assert auths(a.docker_config()) == {}

    try:
        asyncio.run(overlap())
    finally:
        h.run("docker", "image", "rm", image, check=False)
    tokens = list(registry.users.values())
    assert [s for s in runner.seen if any(t in s for t in tokens)] == []
    assert sum("docker login" in s for s in runner.seen) == 2
    assert files_holding(base / "pgo", tokens) == []
