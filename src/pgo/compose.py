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
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgo import compose_model as cm
from pgo import drift, engine, xpgo
from pgo.errors import CommandError, ComposeError
from pgo.runner import CommandRunner, RunAs, Sink, redact

# The one list of default compose file names, in the order they are tried.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")

CONFIG_TIMEOUT = 120.0
UP_TIMEOUT = 1800.0
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

    def settings(self, defaults: xpgo.Settings | None = None) -> xpgo.Settings:
        """How pgod deploys the model: its top-level `x-pgo` (pgo.xpgo), the rest from
        `defaults`. ValueError with one line when `x-pgo` is not valid (the commit is then
        refused: TrackedService judges it with the policy)."""
        return xpgo.Settings.parse(self.data.get("x-pgo"), defaults)

    def _setting(self, key: str) -> bool:
        try:
            return bool(getattr(self.settings(), key))
        except ValueError:
            return bool(getattr(xpgo.Settings(), key))

    @property
    def deploys_changes(self) -> bool:
        """False when `x-pgo: {reload: false}` asks that a changed model wait for a manual
        up, the running containers left as they are (the original pgo's name for it)."""
        return self._setting("reload")

    @property
    def down_first(self) -> bool:
        """`x-pgo: {down: true}` asks to deploy a change as the original pgo did: down the
        whole project, then up. By default a change is brought up in place with `up`
        alone: compose recreates only the containers whose configuration changed (and
        removes those of services that are gone)."""
        return self._setting("down")


# What compose prints when `up` can not bring a change up in place, and only a down first
# would: v2 (2.40) when a network the project made is now declared under another key with
# the same `name:` (its label names the old key); v1 when a network's options changed
# (`Network "p_n" needs to be recreated - option "..." has changed`; v2 recreates such a
# network by itself). Matched as whole lines, as the tools print them; nothing else is.
NEEDS_DOWN = (
    re.compile(r'network \S+ was found but has incorrect label com\.docker\.compose\.network '
               r'set to ".*" \(expected: ".*"\)'),
    re.compile(r'(?:ERROR: )?Network "[^"]+" needs to be recreated - .+ has changed'),
)


def needs_down(output: str) -> str | None:
    """The line of a failed `up`'s output that says the change needs a down first."""
    for line in output.splitlines():
        line = line.strip()
        if any(rx.fullmatch(line) for rx in NEEDS_DOWN):
            return line
    return None


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
            timeout=CONFIG_TIMEOUT, check=True)
        return frozenset(res.stdout.decode().split())


# `docker ps --all` of one project: a line per container, the labels as JSON strings, so
# that no value a compose file chose can split a line or a field.
PS_FORMAT = "\t".join(("{{.ID}}", "{{.State}}",
                       *(f'{{{{json (.Label "{label}")}}}}' for label in (
                           engine.SERVICE_LABEL, engine.HASH_LABEL, engine.ONEOFF_LABEL)),
                       "{{json .Names}}"))


def containers_from_ps(project: str, text: str) -> list[engine.Container]:
    """The containers of `docker ps --all --format PS_FORMAT` output."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            cid, state, *labels = line.split("\t")
            service, config_hash, oneoff, names = (json.loads(v) for v in labels)
        except ValueError:
            raise ComposeError(f"docker ps printed an unreadable line: {line[:80]!r}") \
                from None
        out.append(engine.Container(
            id=cid, name=str(names).split(",")[0], project=project, service=str(service),
            state=state, health="", status="", config_hash=str(config_hash), number=0,
            oneoff=str(oneoff).lower() == "true", created=0.0))
    return out


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
        self.secrets = secrets  # (not copied: the service's list grows as documents decrypt)
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
                   stdin: bytes | None = None, cwd: str | None = None) -> str:
        argv = self.argv(*args, with_file=with_file)
        res = await self.runner.run(argv, as_user=self.as_user, cwd=cwd or str(self.workdir),
                                    env=self.env, timeout=timeout, secrets=self.secrets,
                                    stdin=stdin, service=self.name, check=True,
                                    what=f"compose {args[0]}")
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
                data = cm.model_dict(json.loads(await as_json))
            except (ComposeError, ValueError):
                # (compose v2 can not print every model as JSON: a build `ssh` key file)
                data = await self._parse_yaml(text, "compose config")
            uninterpolated = await raw
            written = None
            interpolated: dict[str, str] = {}
            if cm.interpolated_read_files(uninterpolated):
                written = await self._uninterpolated("--no-path-resolution")
                texts = cm.read_file_texts(written)
                if texts and not any(what == "include" for what, _ in files):
                    interpolated = await self._interpolate(texts, files[0][1])
            data = cm.with_read_files(data, uninterpolated, written, self.env, interpolated)
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
        known = {k: v for k, v in self.env.items() if k in cm.KNOWN_VARS}
        main, roots = await asyncio.to_thread(
            cm.discovery_start, self.file, self.workdir, self.env.get("PGO_DATA"))
        found: list[tuple[str, str]] = [("the compose file", main),
                                        (".env", posixpath.join(posixpath.dirname(main),
                                                                ".env"))]
        todo = [(main, posixpath.dirname(main))]  # (file, the directory it is relative to)
        seen: set[str] = set()
        while todo and len(seen) < cm.MAX_MODEL_FILES:
            path, wd = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            doc = await self._read_model_file(path, roots)
            for what, value, base in cm.model_file_refs(doc, wd, known):
                found.append((what, value))
                if base is not None:
                    todo.append((value, base))
        await asyncio.to_thread(cm.regular_or_absent, found)
        return tuple(dict.fromkeys(found))

    async def _read_model_file(self, path: str, roots: list[str]) -> Any:
        """The YAML of a model file in which compose may find more files to read, or None:
        where it does not lie in the roots, is no regular file, names neither `include` nor
        `extends`, or does not parse (compose says why)."""
        data = await asyncio.to_thread(cm.read_regular, path, roots)
        if data is None or (b"include" not in data and b"extends" not in data):
            return None
        try:
            return await self._parse_yaml(data.decode("utf-8", "replace"), path)
        except ComposeError:
            return None

    async def _config(self, *args: str) -> str:
        """`compose config ARGS` as printed, under CONFIG_MEMORY, at most MAX_MODEL long."""
        argv = self.argv("config", *args)
        if cm.PRLIMIT is not None:
            argv = [cm.PRLIMIT, f"--data={cm.CONFIG_MEMORY}", "--", *argv]
        res = await self.runner.run(argv, as_user=self.as_user, cwd=str(self.workdir),
                                    env=self.env, timeout=CONFIG_TIMEOUT, secrets=self.secrets,
                                    service=self.name)
        if res.returncode != 0:
            output = redact(res.output, self.secrets)
            if "out of memory" in output or "cannot allocate memory" in output:
                raise ComposeError(f"compose file does not load: compose ran out of the "
                                   f"{cm.CONFIG_MEMORY >> 20} MiB it may use to load the model "
                                   "(a file it reads is endless or huge)")
            err = CommandError("compose config", res.returncode, output)
            raise ComposeError(f"compose file does not load: {output.strip() or err}")
        if len(res.stdout) > cm.MAX_MODEL:
            raise ComposeError(f"the compose model is {len(res.stdout) / 2**20:.1f} MiB as "
                               f"compose prints it; pgod judges models up to "
                               f"{cm.MAX_MODEL >> 20} MiB")
        return res.stdout.decode("utf-8", "replace")

    async def _parse_yaml(self, text: str, what: str) -> dict[str, Any]:
        """YAML compose printed, read in a child process: PyYAML holds the interpreter for
        seconds on a model of a few MiB, and a thread would not give the event loop back.
        (Where this interpreter can not be started again, e.g. `pgod check` as a user who
        may not search the directory it lies in, a thread reads it.)"""
        try:
            res = await self.runner.run([sys.executable, "-I", "-c", cm.YAML_TO_JSON],
                                        stdin=text.encode(), timeout=CONFIG_TIMEOUT,
                                        service=self.name)
        except OSError:
            return await asyncio.to_thread(cm.yaml_model, text, what)
        if res.returncode != 0:
            lines = res.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ComposeError(f"{what} printed unreadable YAML: {lines[-1] if lines else ''}")
        try:
            return cm.model_dict(json.loads(res.stdout))
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

    async def _interpolate(self, texts: list[str], main: str) -> dict[str, str]:
        """What compose makes of `texts` (env and label file paths as written) when it
        interpolates the project: the same compose, environment and project directory (so
        the same .env, which the policy judges where it lies), given a document that holds
        the texts as label values. A text it can not interpolate (`${X:?...}` unset) or
        a run that fails leaves them all out: the policy refuses what still holds `$`.
        (Files an `include` brings in are interpolated with their own environment: the
        caller does not ask then.) `main`: the compose file, absolute."""
        argv = [*self.binary, "--project-name", self.name, "--project-directory",
                posixpath.dirname(main), "--file", "-", "config", "--format", "json"]
        if cm.PRLIMIT is not None:
            argv = [cm.PRLIMIT, f"--data={cm.CONFIG_MEMORY}", "--", *argv]
        res = await self.runner.run(argv, as_user=self.as_user, cwd=str(self.workdir),
                                    env=self.env, timeout=CONFIG_TIMEOUT, secrets=self.secrets,
                                    stdin=cm.interpolation_doc(texts), service=self.name)
        if res.returncode != 0 or len(res.stdout) > cm.MAX_MODEL:
            return {}
        try:
            return cm.interpolated_texts(texts, json.loads(res.stdout))
        except ValueError:
            return {}

    async def _raw_extension(self) -> Any:
        try:
            path = self.file
            if path.stat().st_size > cm.MAX_MODEL:
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

    async def up(self, *recreate: str) -> None:
        """`up -d --remove-orphans`; then the containers of the compose services
        `recreate` are made anew (a drift repair of unhealthy ones)."""
        try:
            await self._run("up", "--detach", "--remove-orphans")
            if recreate:
                await self._run("up", "--detach", "--no-deps", "--force-recreate", "--",
                                *recreate)
        finally:
            self.snapshot.invalidate()

    async def down(self, *, whole: bool = False) -> None:
        """Down the project. Works without a compose file (v2) so stale projects can go.
        `whole` (v2): every container and network labelled as the project's, whatever the
        model in the checkout declares. (Downed with a model that declares a network under
        another key than the one that made it, compose v2 may leave that network, and the
        next `up` fails on it again.)"""
        try:
            self.file  # noqa: B018 - raises when there is no file
            with_file = not (whole and self.binary != V1)
        except ComposeError:
            with_file = False
        try:
            # (without a file, from a directory of no compose file: compose goes by labels)
            await self._run("down", "--remove-orphans", with_file=with_file,
                            cwd=None if with_file else "/")
        finally:
            self.snapshot.invalidate()

    async def running(self) -> bool:
        """True when at least one container of this project is running."""
        return await self.snapshot(self.name)

    @property
    def engine_socket(self) -> str | None:
        """The engine's API socket, when pgod talks to the default engine
        (RunningProjects.socket) and the service's environment points compose nowhere
        else; None: ask the docker CLI as the service's user."""
        socket = self.snapshot.socket
        if socket and not any(k in self.env for k in ("DOCKER_HOST", "DOCKER_CONTEXT")):
            return socket
        return None

    async def containers(self) -> list[engine.Container]:
        """Every container labelled as this project's, whatever its state: one request to
        the engine's API (engine_socket), else `docker ps -a` as the service's user."""
        socket = self.engine_socket
        if socket:
            try:
                return await engine.containers(self.name, socket)
            except engine.EngineError as e:
                self.log.warning("docker engine: %s; asking `docker ps`", e)
        res = await self.runner.run(
            ["docker", "ps", "--all", "--no-trunc", "--filter",
             f"label={engine.PROJECT_LABEL}={self.name}", "--format", PS_FORMAT],
            as_user=self.as_user, env=self.env, timeout=CONFIG_TIMEOUT,
            secrets=self.secrets, service=self.name, check=True)
        return containers_from_ps(self.name, res.stdout.decode("utf-8", "replace"))

    async def inspect(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """What `docker inspect` prints for each of the containers `ids` that still exists:
        from the engine's API (engine_socket), else `docker inspect` as the service's
        user."""
        socket = self.engine_socket
        if socket:
            try:
                docs = await asyncio.gather(*(self._inspect_one(cid, socket) for cid in ids))
                return [d for d in docs if d is not None]
            except engine.EngineError as e:
                self.log.warning("docker engine: %s; asking `docker inspect`", e)
        if not ids:
            return []
        res = await self.runner.run(["docker", "inspect", "--type", "container", "--", *ids],
                                    as_user=self.as_user, env=self.env,
                                    timeout=CONFIG_TIMEOUT, secrets=self.secrets,
                                    service=self.name)
        # (exit 1 when one of them is gone: the others are printed all the same)
        try:
            docs = json.loads(res.stdout or b"[]")
        except ValueError:
            raise CommandError("docker inspect", res.returncode,
                               redact(res.output, self.secrets)) from None
        return [d for d in docs if isinstance(d, dict)] if isinstance(docs, list) else []

    @staticmethod
    async def _inspect_one(cid: str, socket: str) -> dict[str, Any] | None:
        try:
            return await engine.inspect(cid, socket)
        except engine.EngineError as e:
            if "HTTP 404" in str(e):
                return None  # removed since it was listed
            raise

    async def last_log_lines(self, cid: str, lines: int = 5) -> str:
        """The last `lines` lines a container wrote (stdout and stderr), redacted."""
        socket = self.engine_socket
        if socket:
            try:
                return redact(await engine.last_log_lines(cid, socket, lines), self.secrets)
            except engine.EngineError as e:
                self.log.debug("docker engine: %s; asking `docker logs`", e)
        res = await self.runner.run(["docker", "logs", "--tail", str(lines), "--", cid],
                                    as_user=self.as_user, env=self.env,
                                    timeout=CONFIG_TIMEOUT, secrets=self.secrets,
                                    service=self.name)
        return redact(res.output, self.secrets) if res.returncode == 0 else ""

    async def config_hashes(self, model: Model | None = None) -> dict[str, str]:
        """compose service -> the configuration hash compose stamps on the containers it
        makes for the model (`config --hash '*'`): a container whose label differs was
        made from another configuration.

        `up` hashes a service after its `env_file` is read into its `environment`; `config
        --hash` hashes it before (compose 2.40: the two differ for every service with an
        env_file, which made each such container look changed). So with `model` (v2), and
        a service of it with an env_file, the hashes are asked of the model as loaded,
        env files read, handed to compose on its standard input: they are up's."""
        services = (model.data.get("services") or {}) if model is not None else {}
        if model is not None and self.binary != V1 and any(
                isinstance(s, dict) and s.get("env_file") for s in services.values()):
            doc = dict(model.data)
            doc["services"] = {name: {k: v for k, v in s.items() if k != "env_file"}
                               if isinstance(s, dict) else s for name, s in services.items()}
            text = await self._run("--project-directory", str(self.workdir), "--file", "-",
                                   "config", "--hash", "*", timeout=CONFIG_TIMEOUT,
                                   with_file=False, stdin=json.dumps(doc).encode())
        else:
            text = await self._run("config", "--hash", "*", timeout=CONFIG_TIMEOUT)
        try:
            return drift.parse_hashes(text)
        except ValueError as e:
            raise ComposeError(f"compose config --hash: {e}") from None

    async def retire(self, stop: Sequence[str], remove: Sequence[str] = ()) -> None:
        """Stop the containers `stop` (each with its own stop signal and grace period, as
        compose set them from `stop_signal` and `stop_grace_period`: 10 s by default), then
        remove those of `remove`, as the service's user. (A stopped container is not
        started again by its restart policy, until dockerd itself restarts.)"""
        argvs = [["docker", "stop", "--", *stop]] if stop else []
        if remove:
            argvs.append(["docker", "rm", "--force", "--", *remove])
        try:
            for argv in argvs:
                await self.runner.run(argv, as_user=self.as_user, env=self.env,
                                      timeout=UP_TIMEOUT, secrets=self.secrets,
                                      service=self.name, check=True)
        finally:
            if argvs:
                self.snapshot.invalidate()

    async def stream(self, args: Sequence[str], stdout: Sink, stderr: Sink,
                     stdin: bytes | None = None) -> int:
        """Run a compose subcommand, streaming its output (ps, logs -f, exec...)."""
        return await self.runner.stream(
            self.argv(*args), stdout=stdout, stderr=stderr, as_user=self.as_user,
            cwd=str(self.workdir), env=self.env, stdin=stdin, secrets=self.secrets,
            service=self.name)
