"""One compose project: find its file, load its normalized model, bring it up and down.

The compose tool itself (v2 `docker compose`, or v1 `docker-compose` where v2 is missing)
loads the model; pgo never interprets compose YAML on its own to decide anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgo.errors import CommandError, ComposeError
from pgo.runner import CommandRunner, RunAs, Sink, redact

# The one list of default compose file names, in the order they are tried.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")

CONFIG_TIMEOUT = 120.0
UP_TIMEOUT = 1800.0

V2 = ("docker", "compose")
V1 = ("docker-compose",)


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

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def reload(self) -> bool:
        """`x-pgo: {reload: false}` asks to take new commits without restarting containers."""
        ext = self.data.get("x-pgo")
        return not (isinstance(ext, dict) and ext.get("reload") is False)


class RunningProjects:
    """Which compose projects have a running container: one `docker ps` answers for every
    service, refreshed when older than `max_age` seconds or after an up or down."""

    def __init__(self, runner: CommandRunner, max_age: float = 2.0) -> None:
        self.runner = runner
        self.max_age = max_age
        self._names: frozenset[str] = frozenset()
        self._at = -1e9
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._at = -1e9

    async def __call__(self, project: str) -> bool:
        async with self._lock:
            if time.monotonic() - self._at > self.max_age:
                res = await self.runner.run(
                    ["docker", "ps", "--filter", "label=com.docker.compose.project",
                     "--format", '{{.Label "com.docker.compose.project"}}'],
                    timeout=CONFIG_TIMEOUT)
                if res.returncode != 0:
                    raise CommandError("docker ps", res.returncode, res.output)
                self._names = frozenset(res.stdout.decode().split())
                self._at = time.monotonic()
        return project in self._names


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
        """Load the model exactly as `up` will see it (interpolation, extends, include...)."""
        try:
            text = await self._run("config", timeout=CONFIG_TIMEOUT)
        except CommandError as e:
            raise ComposeError(f"compose file does not load: {e.output.strip() or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ComposeError(f"compose config printed unreadable YAML: {e}") from None
        if not isinstance(data, dict):
            raise ComposeError("compose config printed no model")
        if self.binary == V1 and "x-pgo" not in data:
            # v1's `config` drops top-level extensions; x-pgo only steers restarts, so
            # reading it from the file itself decides nothing about what may run.
            ext = self._raw_extension()
            if ext is not None:
                data["x-pgo"] = ext
                text += yaml.safe_dump({"x-pgo": ext})
        return Model(text=text, data=data)

    def _raw_extension(self) -> Any:
        try:
            raw = yaml.safe_load(self.file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ComposeError):
            return None
        return raw.get("x-pgo") if isinstance(raw, dict) else None

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
