"""What bench/deploy and bench/rollback share: a git upstream, a pgod woken by a signed
webhook, a clone updated by hand as the same user, and dockerd's container events with
their times. Run as root with dockerd running; everything lives in one temporary directory
and is taken down by Bench.close()."""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PGOD = ROOT / ".venv" / "bin" / "pgod"
USER = "pgo-bench"
SECRET = "bench-webhook-secret"
DOCKER_DIR = "/tmp/pgo-bench-docker"
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}
SERVICE_LABEL = "com.docker.compose.service"


def sh(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True,
                          **kw)  # type: ignore[call-overload, no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Event:
    t: int  # dockerd's timeNano
    action: str  # start, die...
    service: str  # the compose service
    cid: str


class Events:
    """dockerd's start and die events of one compose project's containers, as they come."""

    def __init__(self, project: str) -> None:
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", "event=start", "--filter", "event=die",
             "--filter", f"label=com.docker.compose.project={project}"],
            stdout=subprocess.PIPE, text=True)
        self.seen: list[Event] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            doc = json.loads(line)
            attrs = doc.get("Actor", {}).get("Attributes", {})
            with self.lock:
                self.seen.append(Event(int(doc["timeNano"]), doc.get("Action", ""),
                                       attrs.get(SERVICE_LABEL, ""), doc.get("id", "")))

    def since(self, t0: int) -> list[Event]:
        with self.lock:
            return [e for e in self.seen if e.t >= t0]

    def wait(self, t0: int, action: str, service: str, nth: int = 1,
             timeout: float = 120) -> Event:
        """The `nth` event `action` of `service` at or after t0 (time.time_ns())."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [e for e in self.since(t0) if e.action == action and e.service == service]
            if len(hits) >= nth:
                return hits[nth - 1]
            if time.monotonic() > deadline:
                sys.exit(f"bench: no {action} event of {service} within {timeout}s")
            time.sleep(0.02)

    def downtime(self, t0: int, service: str, now: int) -> float:
        """Seconds in [t0, now] during which a container of `service` was dead: from each
        die to the next start (to `now` when none came)."""
        down, dead_at = 0.0, None
        for e in self.since(t0):
            if e.service != service:
                continue
            if e.action == "die" and dead_at is None:
                dead_at = e.t
            elif e.action == "start" and dead_at is not None:
                down += (e.t - dead_at) / 1e9
                dead_at = None
        return down + ((now - dead_at) / 1e9 if dead_at is not None else 0.0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Bench:
    """An upstream repository, the pgod that tracks it (project `name`), and a clone of it
    that is updated by hand as the same user (project `bare_name`)."""

    def __init__(self, what: str) -> None:
        if os.geteuid() != 0:
            sys.exit(f"bench/{what}: run as root (pgod runs as root)")
        if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
            sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)
        sh("sh", str(ROOT / "tests" / "images.sh"))
        self.what = what
        self.base = Path(tempfile.mkdtemp(prefix=f"pgo-bench-{what}-"))
        os.chmod(self.base, 0o755)
        tag = hashlib.sha256(str(self.base).encode()).hexdigest()[:6]
        self.name, self.bare_name = f"bench-pgod-{tag}", f"bench-bare-{tag}"
        self.work, self.repo = self.base / "work", self.base / "repo.git"
        self.clone = self.base / "bare-clone"
        self.port = free_port()
        self.pgod: subprocess.Popen[bytes] | None = None
        self.events = Events(self.name)
        self.bare_events = Events(self.bare_name)
        sh("git", "init", "-q", "--bare", "-b", "main", str(self.repo))
        sh("git", "init", "-q", "-b", "main", str(self.work))

    # -- the upstream --------------------------------------------------------------------

    def push(self, compose: str, message: str) -> str:
        (self.work / "compose.yaml").write_text(compose)
        env = {**os.environ, **GIT_ENV}
        sh("git", "-C", str(self.work), "add", "-A")
        sh("git", "-C", str(self.work), "commit", "-q", "-m", message, env=env)
        sh("git", "-C", str(self.work), "push", "-q", str(self.repo), "main")
        sh("chmod", "-R", "a+rX", str(self.repo))
        return sh("git", "-C", str(self.work), "rev-parse", "HEAD").stdout.strip()

    # -- pgod ----------------------------------------------------------------------------

    def start_pgod(self, *flags: str) -> None:
        cfg = self.base / "pgo.toml"
        cfg.write_text(f'[[services]]\nname = "{self.name}"\nuser = "{USER}"\n'
                       f'repository = "{self.repo}"\nwebhook_secret = "{SECRET}"\n')
        cfg.chmod(0o600)
        self.log_path = self.base / "pgod.log"
        with open(self.log_path, "w") as log:
            self.pgod = subprocess.Popen(
                [str(PGOD), "-c", str(cfg), "-d", str(self.base / "pgo"), "--datadir",
                 str(self.base / "data"), "-t", "5m", "-s", "off", "-m",
                 f"127.0.0.1:{self.port}", *flags], stdout=log, stderr=subprocess.STDOUT)

    def pgod_log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, count: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.pgod_log().count(text) < count:
            assert self.pgod is not None
            if self.pgod.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench/{self.what}: pgod did not log {text!r}: see {self.log_path}")
            time.sleep(0.05)

    def webhook(self) -> int:
        """Wake pgod with a signed webhook; the time it was sent (time.time_ns())."""
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        t0 = time.time_ns()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/{self.name}", data=body, method="POST",
            headers={"X-Hub-Signature-256": signature, "X-GitHub-Event": "push",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 202
        return t0

    # -- by hand -------------------------------------------------------------------------

    def as_user(self) -> dict[str, object]:
        pw = pwd.getpwnam(USER)
        return {"user": pw.pw_uid, "group": pw.pw_gid,
                "extra_groups": [grp.getgrnam("docker").gr_gid],
                "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent",
                        "DOCKER_CONFIG": DOCKER_DIR,
                        # the upstream belongs to root (pgod trusts it the same way)
                        "GIT_CONFIG_GLOBAL": f"{DOCKER_DIR}/gitconfig"}}

    def make_clone(self) -> None:
        user = self.as_user()
        os.makedirs(DOCKER_DIR, exist_ok=True)
        Path(f"{DOCKER_DIR}/gitconfig").write_text("[safe]\n\tdirectory = *\n")
        os.chown(DOCKER_DIR, int(user["user"]), int(user["group"]))  # type: ignore[call-overload]
        self.clone.mkdir()
        os.chown(self.clone, int(user["user"]), int(user["group"]))  # type: ignore[call-overload]
        subprocess.run(["git", "clone", "-q", str(self.repo), str(self.clone)], check=True,
                       cwd="/", **user)  # type: ignore[call-overload]

    def by_hand(self, script: str) -> int:
        """Run `script` (sh) in the clone as the service user, `$P` its compose project;
        the time it was started (time.time_ns())."""
        t0 = time.time_ns()
        subprocess.run(["sh", "-c", script.replace("$P", self.bare_name)], check=True,
                       cwd=self.clone, **self.as_user())  # type: ignore[call-overload]
        return t0

    def close(self) -> None:
        if self.pgod is not None:
            self.pgod.terminate()
            self.pgod.wait(30)
        self.events.close()
        self.bare_events.close()
        for project in (self.name, self.bare_name):
            subprocess.run(["docker", "compose", "-p", project, "down", "-t", "1"], cwd="/",
                           capture_output=True)
        subprocess.run(["rm", "-rf", str(self.base), DOCKER_DIR])
