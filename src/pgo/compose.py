"""One compose project: find its file, load its normalized model, bring it up and down.

The compose tool itself (v2 `docker compose`, or v1 `docker-compose` where v2 is missing)
loads the model; pgo never interprets compose YAML on its own to decide anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgo.errors import CommandError, ComposeError
from pgo.runner import PATH, CommandRunner, RunAs, Sink, redact

# The one list of default compose file names, in the order they are tried.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")

CONFIG_TIMEOUT = 120.0
UP_TIMEOUT = 1800.0
# The largest compose model pgod judges, as compose prints it. Real compose files are tens
# of KiB (a project of 60 services: ~50 KiB), so 2 MiB leaves room for generated ones and
# inline configs, while bounding what one team's commit (or `pgoctl //load`) costs everyone:
# its JSON parses in ~40 ms, and the policy judges the worst model of that size (tens of
# thousands of services or mounts) in about half a second on a 2-core machine. (A 9.5 MB
# file, 800k items under an `x-` key, once held pgod's event loop for 24 s per judgement.)
MAX_MODEL = 2 << 20
# compose loads a model under this limit of its data memory (RLIMIT_DATA, by prlimit): a
# file it reads that never ends (/dev/zero as an env_file or include) ends it within a second
# instead of taking the machine's memory. (Measured: compose v2.40 printing a model of 12,000
# services, 2.7 MB as JSON, peaked at 300 MiB.)
CONFIG_MEMORY = 1 << 30
PRLIMIT = shutil.which("prlimit", path=PATH)
# The child that reads YAML for pgod (compose v1 prints nothing else) and answers in JSON.
YAML_TO_JSON = ("import json, sys, yaml\n"
                "load = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)\n"
                "json.dump(yaml.load(sys.stdin.buffer, Loader=load), sys.stdout, default=str)\n")

V2 = ("docker", "compose")
V1 = ("docker-compose",)

log = logging.getLogger("pgo.compose")


def detect() -> tuple[str, ...]:
    """Compose v2 if `docker compose` works, else v1; PGO_COMPOSE=v1|v2 forces one."""
    forced = os.environ.get("PGO_COMPOSE", "")
    if forced == "v1":
        return V1
    if forced == "v2":
        return V2
    if shutil.which("docker"):
        try:
            r = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30,
                               check=False)
            if r.returncode == 0:
                return V2
        except (OSError, subprocess.TimeoutExpired):
            pass
    if shutil.which("docker-compose"):
        return V1
    return V2


def find_file(checkout: Path, configured: str | None) -> Path:
    """The compose file of a checkout: `configured` if set, else the first default name."""
    names = (configured,) if configured else COMPOSE_FILES
    for name in names:
        p = checkout / name
        if p.is_file():
            return p
    if configured:
        raise ComposeError(f"compose file {configured!r} not found in the checkout")
    raise ComposeError(f"no compose file in the checkout (looked for {', '.join(COMPOSE_FILES)})")


@dataclass(frozen=True)
class Model:
    """The normalized compose model as the compose tool printed it."""

    text: str
    data: dict[str, Any]
    # (what, path) of the files compose read to build the model besides those the model
    # names itself: the compose file, .env, include and extends files
    files: tuple[tuple[str, str], ...] = ()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def _extension(self, key: str) -> Any:
        ext = self.data.get("x-pgo")
        return ext.get(key) if isinstance(ext, dict) else None

    @property
    def reload(self) -> bool:
        """`x-pgo: {reload: false}` asks to take new commits without restarting containers."""
        return self._extension("reload") is not False

    @property
    def down_first(self) -> bool:
        """`x-pgo: {down: false}` asks to deploy a change with `up` alone: compose then
        recreates only the containers whose configuration changed (and removes those of
        services that are gone), instead of the original's down of the whole project."""
        return self._extension("down") is not False


# Service keys whose files the compose tool reads on the host (as the service's user) and
# inlines into the model it prints (`environment`, `labels`): the printed model no longer
# says which files they were.
READ_FILE_KEYS = ("env_file", "label_file")
# The variables pgod itself puts in compose's environment: they win over a .env file, so a
# path written with them is known before compose interpolates it.
KNOWN_VARS = ("PGO_DATA", "PGO_SERVICE")
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def with_read_files(model: dict[str, Any], raw: Any, written: Any = None,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`model` with each service's env_file and label_file paths put back as compose opens
    them, so that the policy can judge which host files the compose tool reads into the
    container. `raw` is compose's view before interpolation (`--no-interpolate`: absolute,
    `${...}` left as written); for a path with `${...}` in it, `written` (the same view with
    `--no-path-resolution`) tells what was written, and the variables of `env` that pgod
    sets (PGO_DATA, PGO_SERVICE) are put in. A path that still holds `$` is left so (the
    policy refuses it). Compose v2 only: v1 inlines them even with --no-interpolate."""
    raw_services = raw.get("services") if isinstance(raw, dict) else None
    services = model.get("services")
    if not isinstance(raw_services, dict) or not isinstance(services, dict):
        return model
    written_services = written.get("services") if isinstance(written, dict) else None
    known = {k: v for k, v in (env or {}).items() if k in KNOWN_VARS}
    for name, raw_svc in raw_services.items():
        svc = services.get(name)
        if not isinstance(raw_svc, dict) or not isinstance(svc, dict):
            continue
        as_written = written_services.get(name) if isinstance(written_services, dict) else None
        for key in READ_FILE_KEYS:
            paths = _read_file_paths(raw_svc.get(key))
            if not paths:
                continue
            spelled = _read_file_paths(as_written.get(key)) if isinstance(as_written, dict) \
                else []
            if len(spelled) != len(paths):
                spelled = [None] * len(paths)
            svc[key] = [_opened_path(p, w, known) for p, w in zip(paths, spelled, strict=True)]
    return model


def _yaml_model(text: str, what: str) -> dict[str, Any]:
    try:
        return _model(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as e:
        lines = str(e).strip().splitlines()
        raise ComposeError(f"{what} printed unreadable YAML: {lines[-1] if lines else e}") \
            from None


def _model(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ComposeError("compose config printed no model")
    return data


def _interpolated_read_files(raw: Any) -> bool:
    """Whether an env or label file path of compose's uninterpolated view holds `$`."""
    services = raw.get("services") if isinstance(raw, dict) else None
    return isinstance(services, dict) and any(
        isinstance(p, str) and "$" in p
        for svc in services.values() if isinstance(svc, dict)
        for key in READ_FILE_KEYS for p in _read_file_paths(svc.get(key)))


def _read_file_paths(entries: Any) -> list[Any]:
    if not entries:
        return []
    return [e.get("path") if isinstance(e, dict) else e
            for e in (entries if isinstance(entries, list) else [entries])]


def _opened_path(resolved: Any, written: Any, env: Mapping[str, str]) -> Any:
    """The path compose opens for an env or label file: `resolved` as compose made it
    absolute before interpolation; `written` as the compose file spells it."""
    if not isinstance(resolved, str) or "$" not in resolved:
        return resolved
    if not isinstance(written, str) or "$$" in written:
        return resolved
    value = _VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), written)
    if "$" in value:
        return resolved
    if value.startswith("/"):  # interpolated first, then taken as it is (absolute)
        return value
    # compose joined the written path to the directory it is relative to (and cleaned it,
    # as Go's filepath.Join does): take that directory back
    spelled = posixpath.normpath(written)
    if spelled.startswith("..") or not resolved.endswith("/" + spelled):
        return resolved
    return _clean(posixpath.join(resolved[:-len(spelled) - 1], value))


def _clean(path: str) -> str:
    """Go's filepath.Clean of an absolute path."""
    return "/" + posixpath.normpath(path).lstrip("/")


# The most model files pgod follows includes and extends through.
MAX_MODEL_FILES = 64
# Include paths and extends files compose fetches from the network instead of this machine.
REMOTE = ("git@", "github.com/")


def _model_file_refs(doc: Any, wd: str, env: Mapping[str, str]
                     ) -> list[tuple[str, str, str | None]]:
    """(what, path, the directory it is relative to: None when it is not followed) of the
    files a compose file's `include` and `extends` make compose read."""
    if not isinstance(doc, dict):
        return []
    out: list[tuple[str, str, str | None]] = []

    def place(value: Any, base: str) -> tuple[str, bool]:
        text = _VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), str(value))
        if "$" in text or "://" in text or text.startswith(REMOTE):
            return str(value), False
        return (text if text.startswith("/") else _clean(posixpath.join(base, text))), True

    includes = doc.get("include")
    for entry in includes if isinstance(includes, list) else []:
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            continue
        paths = [place(p, wd) for p in _strings(entry.get("path"))]
        project = None
        if entry.get("project_directory"):
            project, local = place(entry["project_directory"], wd)
            out.append(("include project_directory", project, None))
            project = project if local else None
        elif paths and paths[0][1]:
            project = posixpath.dirname(paths[0][0])
        for path, local in paths:
            out.append(("include", path, (project or posixpath.dirname(path)) if local
                        else None))
        env_files = _strings(entry.get("env_file"))
        for env_file in env_files:
            out.append(("include env_file", place(env_file, wd)[0], None))
        if not env_files and project is not None:
            out.append((".env", posixpath.join(project, ".env"), None))
    services = doc.get("services")
    for svc in services.values() if isinstance(services, dict) else []:
        ext = svc.get("extends") if isinstance(svc, dict) else None
        if isinstance(ext, dict) and ext.get("file"):
            path, local = place(ext["file"], wd)
            out.append(("extends file", path, posixpath.dirname(path) if local else None))
    return out


def _strings(v: Any) -> list[str]:
    return [str(x) for x in (v if isinstance(v, list) else [v]) if x not in (None, "")]


def _discovery_start(file: Path, workdir: Path, data: str | None) -> tuple[str, list[str]]:
    """The compose file, absolute, and the real directories pgod reads model files in."""
    roots = [os.path.realpath(workdir)] + ([os.path.realpath(data)] if data else [])
    return os.path.abspath(file), roots


def _read_regular(path: str, roots: list[str]) -> bytes | None:
    """The bytes of a file that really lies in one of `roots` and is a regular file, else
    None; refused when it is larger than MAX_MODEL. Opened without blocking: a FIFO is not
    waited on."""
    real = os.path.realpath(path)
    if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > MAX_MODEL:
            raise ComposeError(f"{path} is {st.st_size / 2**20:.1f} MiB; pgod reads compose "
                               f"files up to {MAX_MODEL >> 20} MiB")
        return f.read(MAX_MODEL + 1)


def _regular_or_absent(files: list[tuple[str, str]]) -> None:
    """Compose would wait forever on a FIFO, or read a device without end."""
    for what, path in files:
        if "$" in path or "://" in path or path.startswith(REMOTE):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) or (what in (".env", "include project_directory")
                                        and stat.S_ISDIR(st.st_mode)):  # (compose skips those)
            continue
        raise ComposeError(f"{what} {path} is not a regular file: compose would wait on "
                           "it or read it without end")


# The Docker Engine's own socket: the daemon `docker` and `docker compose` talk to when
# nothing (DOCKER_HOST, a docker context) points elsewhere.
ENGINE_SOCKET = "/var/run/docker.sock"
_LIST_RUNNING = (b"GET /containers/json?filters=%7B%22label%22%3A%5B%22"
                 b"com.docker.compose.project%22%5D%7D HTTP/1.0\r\nHost: docker\r\n\r\n")
_PROJECT_LABEL = "com.docker.compose.project"


def engine_socket(home: str = "/root") -> str | None:
    """The engine socket `docker ps` as root (clean environment, HOME=/root) would talk to,
    when that is plainly the default one; None when a docker context of root's may point
    elsewhere (then `docker ps` itself is asked)."""
    try:
        with open(os.path.join(home, ".docker", "config.json"), "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        doc = {}
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("currentContext", "default") != "default":
        return None
    return ENGINE_SOCKET if os.path.exists(ENGINE_SOCKET) else None


def running_from_listing(body: bytes) -> frozenset[str]:
    """Project names of the Engine API's `GET /containers/json` (running containers only)."""
    rows = json.loads(body)
    if not isinstance(rows, list):
        raise ValueError("not a list of containers")
    names = set()
    for row in rows:
        labels = row.get("Labels") if isinstance(row, dict) else None
        if isinstance(labels, dict) and isinstance(labels.get(_PROJECT_LABEL), str):
            names.add(labels[_PROJECT_LABEL])
    return frozenset(names)


class RunningProjects:
    """Which compose projects have a running container: one listing answers for every
    service, refreshed when older than `max_age` seconds or after an up or down.

    With `socket` the listing is one request to the engine's API on that socket (what
    `docker ps` itself sends, without starting the docker CLI: that cost more than a
    service's whole pass); without it, or when the socket does not answer, `docker ps`."""

    def __init__(self, runner: CommandRunner, max_age: float = 2.0,
                 socket: str | None = None) -> None:
        self.runner = runner
        self.max_age = max_age
        self.socket = socket
        self._names: frozenset[str] = frozenset()
        self._at = -1e9
        self._lock = asyncio.Lock()
        self._engine_failed = False

    def invalidate(self) -> None:
        self._at = -1e9

    async def __call__(self, project: str) -> bool:
        async with self._lock:
            if time.monotonic() - self._at > self.max_age:
                names = await self._ask_engine() if self.socket else None
                self._names = names if names is not None else await self._docker_ps()
                self._at = time.monotonic()
        return project in self._names

    async def _ask_engine(self) -> frozenset[str] | None:
        assert self.socket is not None
        try:
            async with asyncio.timeout(CONFIG_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(self.socket)
                try:
                    writer.write(_LIST_RUNNING)
                    data = await reader.read()
                finally:
                    writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            if head.split(b" ", 2)[1:2] != [b"200"]:
                raise ValueError(head.split(b"\r\n", 1)[0].decode("latin-1"))
            names = running_from_listing(body)
        except (OSError, ValueError, TimeoutError) as e:
            if not self._engine_failed:  # once per outage, not every refresh
                log.warning("docker engine at %s: %s; asking `docker ps` until it answers",
                            self.socket, e or type(e).__name__)
            self._engine_failed = True
            return None
        self._engine_failed = False
        return names

    async def _docker_ps(self) -> frozenset[str]:
        res = await self.runner.run(
            ["docker", "ps", "--filter", "label=com.docker.compose.project",
             "--format", '{{.Label "com.docker.compose.project"}}'],
            timeout=CONFIG_TIMEOUT)
        if res.returncode != 0:
            raise CommandError("docker ps", res.returncode, res.output)
        return frozenset(res.stdout.decode().split())


class Project:
    def __init__(
        self, name: str, workdir: Path, runner: CommandRunner, as_user: RunAs | None,
        *, binary: Sequence[str] = V2, compose_file: str | None = None,
        env: Mapping[str, str] | None = None, secrets: Sequence[str] = (),
        log: logging.LoggerAdapter[logging.Logger] | logging.Logger | None = None,
        running: RunningProjects | None = None,
    ) -> None:
        self.name = name
        self.snapshot = running or RunningProjects(runner, max_age=0)
        self.workdir = workdir
        self.runner = runner
        self.as_user = as_user
        self.binary = tuple(binary)
        self.compose_file = compose_file
        self.env = dict(env or {})
        self.secrets = tuple(secrets)
        self.log = log or logging.getLogger("pgo.compose")

    @property
    def file(self) -> Path:
        return find_file(self.workdir, self.compose_file)

    def argv(self, *args: str, with_file: bool = True) -> list[str]:
        out = [*self.binary, "--project-name", self.name]
        if with_file:
            out += ["--file", str(self.file)]
        return out + list(args)

    async def _run(self, *args: str, timeout: float = UP_TIMEOUT, with_file: bool = True,
                   stdin: bytes | None = None) -> str:
        argv = self.argv(*args, with_file=with_file)
        res = await self.runner.run(argv, as_user=self.as_user, cwd=str(self.workdir),
                                    env=self.env, timeout=timeout, secrets=self.secrets,
                                    stdin=stdin, service=self.name)
        if res.returncode != 0:
            raise CommandError(f"compose {args[0]}", res.returncode,
                               redact(res.output, self.secrets))
        return res.stdout.decode("utf-8", "replace")

    async def config(self) -> Model:
        """Load the model exactly as `up` will see it (interpolation, extends, include...).

        Compose v2 prints it twice, side by side: as YAML, the text a deployment is known by
        (its digest, kept in the state since the first pgod), and as JSON, the model judged
        (the C parser reads it in a fraction of the time PyYAML takes for the YAML), along
        with the view before interpolation, which names the env and label files compose
        reads. Compose v1 prints YAML only: that is parsed in a child process, off pgod's
        event loop. A model larger than MAX_MODEL is refused unread.

        Before compose runs, the files it will read to build the model (the compose file,
        .env, include and extends files, include env files) are listed for the policy
        (Model.files); a model file that is not a regular file (a FIFO compose would wait
        on, a device it would read without end) stops the load there."""
        files = await self._model_files()
        if self.binary == V1:
            text = await self._config()
            data = await self._parse_yaml(text, "compose config")
            if "x-pgo" not in data:
                # v1's `config` drops top-level extensions; x-pgo only steers restarts, so
                # reading it from the file itself decides nothing about what may run.
                ext = await self._raw_extension()
                if ext is not None:
                    data["x-pgo"] = ext
                    text += yaml.safe_dump({"x-pgo": ext})
            return Model(text=text, data=data, files=files)
        printed = asyncio.create_task(self._config())
        as_json = asyncio.create_task(self._config("--format", "json"))
        raw = asyncio.create_task(self._uninterpolated())
        tasks = (printed, as_json, raw)
        try:
            text = await printed
            try:
                data = _model(json.loads(await as_json))
            except (ComposeError, ValueError):
                # (compose v2 can not print every model as JSON: a build `ssh` key file)
                data = await self._parse_yaml(text, "compose config")
            uninterpolated = await raw
            written = None
            if _interpolated_read_files(uninterpolated):
                written = await self._uninterpolated("--no-path-resolution")
            data = with_read_files(data, uninterpolated, written, self.env)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ComposeError):
                    await task
        return Model(text=text, data=data, files=files)

    async def _model_files(self) -> tuple[tuple[str, str], ...]:
        """(what, path) of every file compose reads to build the model besides those the
        model itself names, as compose v2 finds them: the compose file and its directory's
        .env; each `include` entry's files (relative to the including project's directory),
        its env files (default: the .env of its project_directory) and project_directory;
        each `extends` file, relative to the file that names it, recursively. Paths are
        absolute and not resolved (the policy resolves them); pgod's own variables are put
        in, and a path still holding `$`, or a remote one, is listed as written (the policy
        refuses those). pgod reads a file to look for more only where it really lies in the
        checkout or the data directory."""
        known = {k: v for k, v in self.env.items() if k in KNOWN_VARS}
        main, roots = await asyncio.to_thread(
            _discovery_start, self.file, self.workdir, self.env.get("PGO_DATA"))
        found: list[tuple[str, str]] = [("the compose file", main),
                                        (".env", posixpath.join(posixpath.dirname(main),
                                                                ".env"))]
        todo = [(main, posixpath.dirname(main))]  # (file, the directory it is relative to)
        seen: set[str] = set()
        while todo and len(seen) < MAX_MODEL_FILES:
            path, wd = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            doc = await self._read_model_file(path, roots)
            for what, value, base in _model_file_refs(doc, wd, known):
                found.append((what, value))
                if base is not None:
                    todo.append((value, base))
        await asyncio.to_thread(_regular_or_absent, found)
        return tuple(dict.fromkeys(found))

    async def _read_model_file(self, path: str, roots: list[str]) -> Any:
        """The YAML of a model file in which compose may find more files to read, or None:
        where it does not lie in the roots, is no regular file, names neither `include` nor
        `extends`, or does not parse (compose says why)."""
        data = await asyncio.to_thread(_read_regular, path, roots)
        if data is None or (b"include" not in data and b"extends" not in data):
            return None
        try:
            return await self._parse_yaml(data.decode("utf-8", "replace"), path)
        except ComposeError:
            return None

    async def _config(self, *args: str) -> str:
        """`compose config ARGS` as printed, under CONFIG_MEMORY, at most MAX_MODEL long."""
        argv = self.argv("config", *args)
        if PRLIMIT is not None:
            argv = [PRLIMIT, f"--data={CONFIG_MEMORY}", "--", *argv]
        res = await self.runner.run(argv, as_user=self.as_user, cwd=str(self.workdir),
                                    env=self.env, timeout=CONFIG_TIMEOUT, secrets=self.secrets,
                                    service=self.name)
        if res.returncode != 0:
            output = redact(res.output, self.secrets)
            if "out of memory" in output or "cannot allocate memory" in output:
                raise ComposeError(f"compose file does not load: compose ran out of the "
                                   f"{CONFIG_MEMORY >> 20} MiB it may use to load the model "
                                   "(a file it reads is endless or huge)")
            err = CommandError("compose config", res.returncode, output)
            raise ComposeError(f"compose file does not load: {output.strip() or err}")
        if len(res.stdout) > MAX_MODEL:
            raise ComposeError(f"the compose model is {len(res.stdout) / 2**20:.1f} MiB as "
                               f"compose prints it; pgod judges models up to "
                               f"{MAX_MODEL >> 20} MiB")
        return res.stdout.decode("utf-8", "replace")

    async def _parse_yaml(self, text: str, what: str) -> dict[str, Any]:
        """YAML compose printed, read in a child process: PyYAML holds the interpreter for
        seconds on a model of a few MiB, and a thread would not give the event loop back.
        (Where this interpreter can not be started again, e.g. `pgod check` as a user who
        may not search the directory it lies in, a thread reads it.)"""
        try:
            res = await self.runner.run([sys.executable, "-I", "-c", YAML_TO_JSON],
                                        stdin=text.encode(), timeout=CONFIG_TIMEOUT,
                                        service=self.name)
        except OSError:
            return await asyncio.to_thread(_yaml_model, text, what)
        if res.returncode != 0:
            lines = res.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ComposeError(f"{what} printed unreadable YAML: {lines[-1] if lines else ''}")
        try:
            return _model(json.loads(res.stdout))
        except ValueError:
            raise ComposeError(f"{what}: the YAML reader answered no model") from None

    async def _uninterpolated(self, *args: str) -> Any:
        """The model before interpolation, as compose prints it (`--no-interpolate`): the
        only view in which it names the env and label files it reads."""
        try:
            text = await self._config("--no-interpolate", *args, "--format", "json")
            return json.loads(text)
        except (ComposeError, ValueError) as e:
            why = str(e).removeprefix("compose file does not load: ")
            raise ComposeError(f"compose file does not load without interpolation: {why}") \
                from None

    async def _raw_extension(self) -> Any:
        try:
            path = self.file
            if path.stat().st_size > MAX_MODEL:
                return None
            raw = await self._parse_yaml(path.read_text(encoding="utf-8"), "the compose file")
        except (OSError, UnicodeDecodeError, ComposeError, ValueError):
            return None
        return raw.get("x-pgo")

    async def pull(self) -> None:
        await self._run("pull", "--quiet", "--ignore-pull-failures")

    async def build(self) -> None:
        await self._run("build")

    async def missing_images(self, model: Model) -> list[str]:
        """Images the model runs (services without `build`) that are not on this machine."""
        images = sorted({str(svc["image"]) for svc in (model.data.get("services") or {}).values()
                         if isinstance(svc, dict) and svc.get("image") and not svc.get("build")})
        missing = []
        for image in images:
            res = await self.runner.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                                         "--", image], as_user=self.as_user, env=self.env,
                                        timeout=CONFIG_TIMEOUT, service=self.name)
            if res.returncode != 0:
                missing.append(image)
        return missing

    async def up(self) -> None:
        try:
            await self._run("up", "--detach", "--remove-orphans")
        finally:
            self.snapshot.invalidate()

    async def down(self) -> None:
        """Down the project. Works without a compose file (v2) so stale projects can go."""
        try:
            self.file  # noqa: B018 - raises when there is no file
            with_file = True
        except ComposeError:
            with_file = False
        try:
            await self._run("down", "--remove-orphans", with_file=with_file)
        finally:
            self.snapshot.invalidate()

    async def running(self) -> bool:
        """True when at least one container of this project is running."""
        return await self.snapshot(self.name)

    async def stream(self, args: Sequence[str], stdout: Sink, stderr: Sink,
                     stdin: bytes | None = None) -> int:
        """Run a compose subcommand, streaming its output (ps, logs -f, exec...)."""
        return await self.runner.stream(
            self.argv(*args), stdout=stdout, stderr=stderr, as_user=self.as_user,
            cwd=str(self.workdir), env=self.env, stdin=stdin, secrets=self.secrets,
            service=self.name)
