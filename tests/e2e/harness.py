"""Real parts for end-to-end tests: git upstreams, a running pgod, docker queries.

Nothing here fakes what a test claims: pgod is the installed console script, git and
docker are the machine's own. Waiting is always on a condition, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PGOD = str(BIN / "pgod")
PGOCTL = str(BIN / "pgoctl")
USER = "pgo-e2e"  # the unprivileged service user the tests run compose as
IMAGE = "pgoimg/busybox:1"

WEB = """\
services:
  web:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    expose: ["8080"]
    stop_grace_period: 1s
"""
# (httpd as PID 1 ignores SIGTERM: without the grace period every down waits 10s for the kill)


def wait_until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
               interval: float = 0.2) -> Any:
    """Poll cond() until it is truthy; return its value or fail after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def run(*argv: str, cwd: str | Path | None = None, check: bool = True,
        env: dict[str, str] | None = None, input: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, check=check, capture_output=True, text=True,
                          env=env, input=input, timeout=timeout)


def pgoctl(pgod: Pgod, key: Path, name: str, command: str, *args: str,
           timeout: float = 180, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`pgoctl -i KEY -p PORT -- 127.0.0.1:NAME//COMMAND ARGS` against `pgod`; never
    raises on a non-zero exit. Its environment: `env` as given, else this process's without
    PGOCTL_* and with a known-hosts file of the test's own (beside pgod's config)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGOCTL_")}
        env["PGOCTL_KNOWN_HOSTS"] = str(pgod.base / "known_hosts")
    return run(PGOCTL, "-i", str(key), "-p", str(pgod.ssh_port), "--",
               f"127.0.0.1:{name}//{command}", *args, check=False, timeout=timeout, env=env)


_GIVEN: set[int] = set()  # ports free_port() handed out in this process


def free_port() -> int:
    """A port free now, never one handed out before in this run: the kernel may give the
    same ephemeral port to two binds in a row once the first socket is closed (pgod's -s
    and -m, asked one after the other, then collide)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def scratch(tmp_path_factory: Any, prefix: str) -> Path:
    """A new scratch directory every user can traverse (compose runs as the service user)."""
    p = Path(tmp_path_factory.mktemp(prefix))
    for parent in [p, *p.parents]:
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    return p


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def ensure_user(name: str = USER) -> None:
    if run("id", "-u", name, check=False).returncode != 0:
        run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)


# -- docker -------------------------------------------------------------------------------

def containers(project: str, all: bool = False) -> list[dict[str, Any]]:
    """Containers of a compose project, as `docker ps --format json` rows."""
    argv = ["docker", "ps", "--no-trunc", "--format", "{{json .}}", "--filter",
            f"label=com.docker.compose.project={project}"]
    if all:
        argv.insert(2, "-a")
    out = run(*argv).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def container_ids(project: str) -> set[str]:
    return {c["ID"] for c in containers(project)}


def inspect(cid: str) -> dict[str, Any]:
    return json.loads(run("docker", "inspect", cid).stdout)[0]


def inspect_existing(ids: set[str] | list[str]) -> list[dict[str, Any]]:
    """`docker inspect` of those of `ids` that still exist. For conditions polled while pgod
    redeploys: a container listed a moment ago may be gone by now (docker then prints the
    others and exits 1)."""
    if not ids:
        return []
    out = run("docker", "inspect", *ids, check=False).stdout.strip()
    return list(json.loads(out)) if out else []


def down_project(project: str) -> None:
    ids = [c["ID"] for c in containers(project, all=True)]
    if ids:
        run("docker", "rm", "-f", *ids, check=False)
    nets = run("docker", "network", "ls", "-q", "--filter",
               f"label=com.docker.compose.project={project}", check=False).stdout.split()
    if nets:
        run("docker", "network", "rm", *nets, check=False)


def http_get_in(project: str, service: str, path: str = "/", port: int = 8080) -> str:
    """Fetch a URL from inside the compose service's own container (no ports published)."""
    c = [x for x in containers(project) if x.get("Labels", "").find(
        f"com.docker.compose.service={service}") >= 0]
    if not c:
        return ""
    r = run("docker", "exec", c[0]["ID"], "wget", "-q", "-O", "-",
            f"http://127.0.0.1:{port}{path}", check=False)
    return r.stdout


# -- git ----------------------------------------------------------------------------------

def checkout_head(path: Path) -> str:
    """HEAD of a checkout pgod made (owned by the service user)."""
    return run("git", "-c", "safe.directory=*", "-C", str(path), "rev-parse", "HEAD",
               check=False).stdout.strip()


class Upstream:
    """A bare repository (the 'remote') and a work tree to commit and push from."""

    def __init__(self, base: Path, name: str = "repo") -> None:
        self.bare = base / f"{name}.git"
        self.work = base / f"{name}-work"
        run("git", "init", "-q", "--bare", "-b", "main", str(self.bare))
        run("git", "init", "-q", "-b", "main", str(self.work))
        self.git("remote", "add", "origin", str(self.bare))
        for p in (base, self.bare):
            os.chmod(p, 0o755)

    @property
    def url(self) -> str:
        return str(self.bare)

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
        return run("git", *args, cwd=self.work, env=env).stdout.strip()

    def write(self, path: str, text: str, mode: int | None = None) -> None:
        p = self.work / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if mode is not None:
            p.chmod(mode)

    def remove(self, path: str) -> None:
        self.git("rm", "-q", "-r", path)

    def commit(self, msg: str = "change", push: bool = True, force: bool = False) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", msg)
        if push:
            self.push(force=force)
        return self.head()

    def push(self, force: bool = False) -> None:
        args = ["push", "-q", "origin", "main"]
        if force:
            args.insert(1, "--force")
        self.git(*args)
        run("chmod", "-R", "a+rX", str(self.bare))

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


# -- pgod ---------------------------------------------------------------------------------

class Pgod:
    """A running pgod: its config, directories, ports and the lines it has logged."""

    def __init__(self, base: Path, services: list[dict[str, Any]] | str, *,
                 interval: str = "2s", extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.base = base
        self.dir = base / "pgo"
        self.datadir = base / "data"
        self.config = base / "pgo.toml"
        self.ssh_port = free_port()
        self.metric_port = free_port()
        self.interval = interval
        self.extra = extra or []
        self.env = env
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.write_config(services)

    def write_config(self, services: list[dict[str, Any]] | str) -> None:
        if isinstance(services, str):
            self.config.write_text(services)
            return
        self.config.write_text("".join(toml_service(s) for s in services))

    def argv(self) -> list[str]:
        # the health gate's settle time is short here (the default is 10s): every deploy
        # of every test waits for it; tests of the gate set their own in x-pgo
        gate = [] if any(a.startswith("--settle") for a in self.extra) else ["--settle=1s"]
        return [PGOD, "-c", str(self.config), "-d", str(self.dir), "--datadir",
                str(self.datadir), "-t", self.interval, "-s", f"127.0.0.1:{self.ssh_port}",
                "-m", f"127.0.0.1:{self.metric_port}", "--debug", *gate, *self.extra]

    def start(self) -> Pgod:
        env = {**os.environ, **(self.env or {})}
        self.mark = len(self.lines)
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
            if os.environ.get("PGO_TEST_ECHO"):
                sys.stderr.write("pgod| " + line)

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self._lock:
            return sum(1 for ln in self.lines if rx.search(ln))

    def wait_log(self, pattern: str, timeout: float = 90.0, count: int = 1) -> str:
        """Wait until `count` log lines match `pattern`; return the last match."""
        rx = re.compile(pattern)

        def found() -> str | None:
            with self._lock:
                hits = [ln for ln in self.lines if rx.search(ln)]
            if self.proc is not None and self.proc.poll() is not None and len(hits) < count:
                raise AssertionError(f"pgod exited ({self.proc.returncode}) while waiting for "
                                     f"{pattern!r}:\n{self.log()[-4000:]}")
            return hits[-1] if len(hits) >= count else None

        try:
            return str(wait_until(found, timeout, f"log line {pattern!r}"))
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- pgod log ---\n{self.log()[-6000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        proc = self.proc
        if proc is None:
            return 0
        try:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise AssertionError("pgod did not exit within 30s of SIGTERM") from None
            return proc.returncode
        finally:
            self.reader.join(10)
            if proc.stdout is not None:
                proc.stdout.close()

    def stopfile(self, name: str) -> Path:
        return self.dir / f"{name}.stop"

    def state(self, name: str) -> dict[str, Any]:
        p = self.dir / ".pgo" / "services" / name / "state.json"
        try:
            return dict(json.loads(p.read_text()))
        except (OSError, ValueError):
            return {}


def next_cycle(pgod: Pgod, name: str, cycles: int = 1) -> None:
    """Wait until service `name` has finished `cycles` more reconcile passes."""
    pattern = rf"\[{name}\] reconcile \(.*\) done"
    pgod.wait_log(pattern, count=pgod.count(pattern) + cycles)


def toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def toml_service(s: dict[str, Any]) -> str:
    body = "".join(f"{k} = {toml_value(v)}\n" for k, v in s.items())
    return f"[[services]]\n{body}\n"


def cleanup_dir(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


# -- notifications ------------------------------------------------------------------------

class Receiver:
    """A small HTTP server that keeps every JSON body POSTed to it (Apprise's json://)."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                with outer.lock:
                    outer.got.append(json.loads(self.rfile.read(n) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/notify"

    def titles(self, service: str) -> list[str]:
        with self.lock:
            return [str(m.get("title")) for m in self.got if service in str(m.get("title"))]

    def wait(self, service: str, part: str, timeout: float = 120) -> str:
        return str(wait_until(lambda: [t for t in self.titles(service) if part in t],
                                timeout, f"a notification {part!r} of {service}")[0])
