"""A recording fake of pgo.runner.Runner: the edge where pgod meets git, docker compose,
docker and mount(8), for unit tests that run a reconcile pass without root or an engine.

FakeRunner records every command it is handed (`calls`, `kinds()`) and answers it the way
the real program would, from a small model of the world it keeps:

    upstream    the tracked branch: a list of commits, each a compose file (a dict);
                `push(file)` adds one. git clone / fetch / reset / worktree write the
                checkout's files (.git/HEAD, the remote ref, compose.yaml) as git would,
                so that pgod's own reads of the ref files see them.
    compose     `config` prints the file's model as the compose tool does: the services of
                an inactive profile left out; `config --hash '*'` one hash per service;
                `up` creates or replaces the containers of the model's services and removes
                orphans, but, as the real tool does, not the containers of a service that
                moved into a profile; `down` removes all of the project's.
    engine      the containers (`containers`: Container rows); `docker ps` lists them,
                `docker inspect` and `docker logs` tell of them, `docker stop` / `docker rm`
                change them. What a container does once started follows its compose
                service (run()): `command: [exit, N]` exits with N (`restart: always`: it
                restarts, again and again); a `healthcheck` whose test is `[CMD, "false"]`
                turns unhealthy, any other healthy; anything else runs.
    mount(8)    `mount` and `umount` add and remove lines of a mountinfo file, as the kernel.
    python      a Python child given YAML on its standard input prints it as JSON.

The script: `fail[kind] = (status, output)` makes a kind of command fail (kinds as
`kind()` names them: "git fetch", "compose up", "docker rm", "mount"...); `on[kind]` a
function of the Call that returns (status, output) for anything else. Nothing here decides
what a test claims: the commands pgod asks for, and their order, are what it observes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgo.runner import Result, RunAs, Sink

BRANCH = "main"


@dataclass
class Call:
    argv: list[str]
    as_user: RunAs | None
    env: dict[str, str]
    stdin: bytes | None
    cwd: str | None = None

    @property
    def kind(self) -> str:
        return kind(self.argv)


def kind(argv: Sequence[str]) -> str:
    """"git clone", "compose up", "docker login", "mount"... of a command line (behind a
    `prlimit ... --` that limits what compose may use); "python" for a Python child."""
    if os.path.basename(argv[0]) == "prlimit" and "--" in argv:
        argv = argv[list(argv).index("--") + 1:]
    if os.path.basename(argv[0]).startswith("python") and "-c" in argv:
        return "python"
    if argv[0] == "git":
        return f"git {argv[1]}"
    if list(argv[:2]) == ["docker", "compose"]:
        i = 2
        while argv[i].startswith("--"):
            i += 2
        return f"compose {argv[i]}"
    if argv[0] == "docker":
        return f"docker {argv[1]}"
    return argv[0]


def mountinfo_path(path: str) -> str:
    return path.replace("\\", "\\134").replace(" ", "\\040")


@dataclass
class Container:
    id: str
    project: str
    service: str
    config_hash: str
    state: str = "running"
    oneoff: bool = False
    exit_code: int = 0
    restarts: int = 0
    health: str = ""  # starting, healthy, unhealthy; "" without a healthcheck
    health_output: str = ""
    log: str = ""
    created: float = field(default_factory=time.time)
    started: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return f"{self.project}-{self.service}-1"

    def run(self, svc: Mapping[str, Any]) -> Container:
        """What the container does once started, as its compose service says."""
        command = svc.get("command")
        if isinstance(command, list) and command[:1] == ["exit"]:
            self.exit_code = int(command[1])
            self.log = f"starting\nfatal: exit {self.exit_code}\n"
            if svc.get("restart") in ("always", "unless-stopped"):
                self.state, self.restarts = "restarting", 3
            else:
                self.state = "exited"
        check = svc.get("healthcheck")
        if isinstance(check, dict) and check.get("test") and self.state == "running":
            failing = check["test"] == ["CMD", "false"]
            self.health = "unhealthy" if failing else "healthy"
            self.health_output = "probe: connection refused" if failing else "ok"
        return self

    def inspected(self) -> dict[str, Any]:
        """What `docker inspect` prints of it (the fields pgod reads)."""
        def stamp(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
        state: dict[str, Any] = {"Status": self.state, "ExitCode": self.exit_code,
                                 "OOMKilled": False, "StartedAt": stamp(self.started)}
        if self.health:
            state["Health"] = {"Status": self.health,
                               "Log": [{"ExitCode": 0, "Output": self.health_output}]}
        return {"Id": self.id, "Name": "/" + self.name, "Created": stamp(self.created),
                "RestartCount": self.restarts, "State": state,
                "Config": {"Labels": {"com.docker.compose.project": self.project,
                                      "com.docker.compose.service": self.service,
                                      "com.docker.compose.oneoff": str(self.oneoff)}}}


def service_hash(svc: Mapping[str, Any]) -> str:
    """As compose's up hashes a service: its env files read into its environment (which
    this fake does not do; so they are left out, as up leaves them)."""
    seen = {k: v for k, v in svc.items() if k != "env_file"}
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()


def printed(file: Mapping[str, Any], project: str) -> dict[str, Any]:
    """The model `compose config` prints for a compose file: named after the project, the
    services of a profile left out (none is activated)."""
    model = {k: v for k, v in file.items() if k != "services"}
    model["name"] = project
    model["services"] = {name: svc for name, svc in (file.get("services") or {}).items()
                         if not svc.get("profiles")}
    return model


Answer = tuple[int, str]


@dataclass
class FakeRunner:
    """Records every command; answers like git, docker compose, docker and mount(8)."""

    mountinfo: Path | None = None
    upstream: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, Answer] = field(default_factory=dict)
    on: dict[str, Callable[[Call], Answer]] = field(default_factory=dict)
    missing_images: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # -- the script ---------------------------------------------------------------------

    def push(self, file: Mapping[str, Any]) -> str:
        """A new upstream commit whose compose file is `file`; its name."""
        commit = hashlib.sha1(f"{len(self.upstream)}{file}".encode()).hexdigest()
        self.upstream.append((commit, dict(file)))
        return commit

    @property
    def head(self) -> str:
        return self.upstream[-1][0]

    def kinds(self) -> list[str]:
        return [c.kind for c in self.calls]

    def running(self) -> set[str]:
        """Compose projects with a running container."""
        return {c.project for c in self.containers if c.state == "running"}

    def of(self, project: str) -> list[Container]:
        return [c for c in self.containers if c.project == project]

    # -- the world ------------------------------------------------------------------------

    def _file(self, commit: str) -> dict[str, Any]:
        for sha, file in self.upstream:
            if sha == commit or sha.startswith(commit):
                return file
        raise KeyError(commit)

    def _check_out(self, work: Path, commit: str, *, files: bool = True) -> None:
        git = work / ".git"
        (git / "refs" / "remotes" / "origin").mkdir(parents=True, exist_ok=True)
        (git / "HEAD").write_text(commit + "\n")
        if files:
            (work / "compose.yaml").write_text(yaml.safe_dump(self._file(commit)))

    def _git(self, call: Call) -> Answer:
        argv, work = call.argv, Path(call.cwd or ".")
        sub = argv[1]
        remote_ref = work / ".git" / "refs" / "remotes" / "origin" / BRANCH
        if sub == "clone":
            self._check_out(work, self.head, files="--no-checkout" not in argv)
            remote_ref.write_text(self.head + "\n")
        elif sub == "fetch":
            remote_ref.write_text(self.head + "\n")
        elif sub == "reset":
            self._check_out(work, argv[-1])
        elif sub == "worktree" and argv[2] == "add":
            self._check_out(Path(argv[-2]), argv[-1])
        elif sub == "rev-parse":
            head = (work / ".git" / "HEAD").read_text().strip()
            out = [self.head if a.startswith("refs/") else head
                   for a in argv[2:] if not a.startswith("-")]
            return 0, "\n".join(out) + "\n"
        elif sub == "show":
            return 0, "0\n"
        elif sub == "cat-file":
            return (0, "") if any(c == argv[-1].split("^")[0] for c, _ in self.upstream) \
                else (128, "fatal: Not a valid object name\n")
        elif sub == "rev-list":
            head = (work / ".git" / "HEAD").read_text().strip()
            commits = [c for c, _ in self.upstream]
            return 0, f"{len(commits) - 1 - commits.index(head)}\n"
        return 0, ""

    def _compose(self, call: Call) -> Answer:
        argv = call.argv
        project = argv[argv.index("--project-name") + 1]
        sub = call.kind.split()[1]
        file: dict[str, Any] = {}
        if "--file" in argv:
            path = argv[argv.index("--file") + 1]
            file = json.loads(call.stdin or b"{}") if path == "-" else \
                yaml.safe_load(Path(path).read_text())
        model = printed(file, project)
        if sub == "config" and "--hash" in argv:
            return 0, "".join(f"{name} {service_hash(svc)}\n"
                              for name, svc in model["services"].items())
        if sub == "config" and "--format" in argv:
            return 0, json.dumps(model)
        if sub == "config":
            return 0, yaml.safe_dump(model)
        if sub == "up":
            declared = set(file.get("services") or {})
            keep = []
            for c in self.containers:
                svc = model["services"].get(c.service)
                if c.project != project or (svc is not None and c.config_hash ==
                                            service_hash(svc) and c.state == "running"):
                    keep.append(c)
                elif svc is None and c.service in declared:
                    keep.append(c)  # a service of a profile: up --remove-orphans keeps it
            have = {c.service for c in keep if c.project == project}
            keep += [Container(f"{next(self._ids):012x}", project, name,
                               service_hash(svc)).run(svc)
                     for name, svc in model["services"].items() if name not in have]
            self.containers = keep
        elif sub == "down":
            self.containers = [c for c in self.containers if c.project != project]
        return 0, ""

    def _docker(self, call: Call) -> Answer:
        argv = call.argv
        sub = argv[1]
        if sub == "ps" and "--all" in argv:
            label = argv[argv.index("--filter") + 1]
            project = label.split("=", 2)[2]
            return 0, "".join(
                f"{c.id}\t{c.state}\t{json.dumps(c.service)}\t{json.dumps(c.config_hash)}\t"
                f"{json.dumps(str(c.oneoff))}\t{json.dumps(c.name)}\n"
                for c in self.of(project))
        if sub == "ps":
            return 0, "\n".join(sorted(self.running()))
        if sub == "image" and argv[2] == "inspect":
            return (1, "No such image\n") if argv[-1] in self.missing_images else (0, "sha\n")
        if sub == "inspect":
            ids = argv[argv.index("--") + 1:]
            found = [c.inspected() for c in self.containers if c.id in ids]
            return (0 if len(found) == len(ids) else 1), json.dumps(found)
        if sub == "logs":
            return 0, "".join(c.log for c in self.containers if c.id == argv[-1])
        ids = argv[argv.index("--") + 1:] if "--" in argv else []
        if sub == "stop":
            for c in self.containers:
                if c.id in ids:
                    c.state = "exited"
        elif sub == "rm":
            self.containers = [c for c in self.containers if c.id not in ids]
        return 0, ""

    def _mount(self, call: Call) -> Answer:
        assert self.mountinfo is not None
        argv = call.argv
        target = mountinfo_path(os.path.realpath(argv[-1]))
        if argv[0] == "mount":
            with self.mountinfo.open("a") as f:
                f.write(f"99 22 0:99 / {target} rw,nosuid,relatime shared:9 - nfs4 {argv[-2]} "
                        "rw,vers=4.2,hard\n")
        else:
            lines = self.mountinfo.read_text().splitlines(keepends=True)
            self.mountinfo.write_text("".join(ln for ln in lines
                                              if ln.split(" ")[4] != target))
        return 0, ""

    def answer(self, call: Call) -> Answer:
        k = call.kind
        if k in self.fail:
            return self.fail[k]
        if k in self.on:
            return self.on[k](call)
        if call.argv[0] == "git":
            return self._git(call)
        if k.startswith("compose "):
            return self._compose(call)
        if call.argv[0] == "docker":
            return self._docker(call)
        if call.argv[0] in ("mount", "umount"):
            return self._mount(call)
        if k == "python":  # pgod reads YAML in a child: this one reads YAML into JSON
            return 0, json.dumps(yaml.safe_load(call.stdin or b""))
        return 0, ""

    # -- the runner's shape ---------------------------------------------------------------

    async def run(self, argv: Sequence[str], *, as_user: RunAs | None = None,
                  cwd: str | None = None, env: Mapping[str, str] | None = None,
                  stdin: bytes | None = None, timeout: float | None = None,
                  secrets: Sequence[str] = (), service: str = "", check: bool = False,
                  what: str = "") -> Result:
        call = Call(list(argv), as_user, dict(env or {}), stdin, cwd)
        self.calls.append(call)
        rc, out = self.answer(call)
        res = Result(tuple(argv), rc, out.encode(), b"")
        return res.check(what, secrets) if check else res

    async def stream(self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
                     as_user: RunAs | None = None, cwd: str | None = None,
                     env: Mapping[str, str] | None = None, stdin: bytes | None = None,
                     secrets: Sequence[str] = (), service: str = "") -> int:
        call = Call(list(argv), as_user, dict(env or {}), stdin, cwd)
        self.calls.append(call)
        rc, out = self.answer(call)
        if out:
            await (stdout if rc == 0 else stderr)(out.encode())
        return rc
