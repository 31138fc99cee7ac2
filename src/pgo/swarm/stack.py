"""One swarm stack: the face of pgo.compose.Project (up, down, running, containers,
stream) over `docker stack` and `docker service`, run as the service's user.

The model is still loaded, judged and pulled by compose (Project.config, pull): the stack
is named as the compose project (the service's name), and `up(model)` writes the model as
a stack file (pgo.swarm.stackfile) into the service's private directory and hands it to
`docker stack deploy --prune --with-registry-auth --detach=false`. pgoctl's commands are
compose's words, translated here (stream): ps lists the tasks with their node, logs is
`docker service logs`, restart forces an update, down removes the stack, exec runs in a
task on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgo import engine
from pgo.compose import CONFIG_TIMEOUT, UP_TIMEOUT, Model, Project
from pgo.errors import CommandError, ComposeError
from pgo.logtext import untrusted
from pgo.runner import Sink, redact
from pgo.swarm import stackfile

DOWN_WAIT = 120.0  # for a removed stack's services and networks to be gone
RM_AGAIN = 5.0  # seconds between two docker stack rm while something of the stack is left
STACK_FILE = "stack.json"


def _to_create(model: Model) -> list[tuple[str, str]]:
    return [(name, source) for name, source, create in stackfile.bind_sources(model.data)
            if create and not os.path.exists(source)]


class Stack(Project):
    """A Project whose model runs as a swarm stack (see the module). `private`: the
    service's private directory (root's, 0711), where the stack file is written."""

    def __init__(self, *args: Any, private: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.private = private

    @property
    def stack_file(self) -> Path:
        return self.private / STACK_FILE

    # -- asking docker ------------------------------------------------------------------

    async def _docker(self, *args: str, timeout: float = CONFIG_TIMEOUT, check: bool = True,
                      what: str = "") -> str:
        res = await self.runner.run(["docker", *args], as_user=self.as_user, env=self.env,
                                    cwd=str(self.workdir), timeout=timeout,
                                    secrets=self.secrets, service=self.name, check=check,
                                    what=what or f"docker {args[0]} {args[1]}")
        return res.stdout.decode("utf-8", "replace")

    async def _api(self, path: str, filters: dict[str, list[str]]) -> Any:
        socket = self.engine_socket
        if socket is None:
            return None
        try:
            return await engine.get_json(socket, engine.query(path, filters))
        except engine.EngineError as e:
            self.log.debug("docker engine: %s; asking the docker CLI", e)
            return None

    async def services(self) -> list[dict[str, Any]]:
        """The stack's swarm services, as the engine's API lists them."""
        found = await self._api("/services", {"label": [f"{engine.STACK_LABEL}={self.name}"]})
        if found is None:
            ids = (await self._docker("service", "ls", "--quiet", "--filter",
                                      f"label={engine.STACK_LABEL}={self.name}")).split()
            found = json.loads(await self._docker("service", "inspect", "--", *ids)) \
                if ids else []
        return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []

    async def tasks(self, services: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every task (running or not, the recent history too) of `services`."""
        ids = [str(s.get("ID")) for s in services if s.get("ID")]
        if not ids:
            return []
        found = await self._api("/tasks", {"service": ids})
        if found is None:
            tids = (await self._docker("service", "ps", "--quiet", "--no-trunc", "--",
                                       *ids)).split()
            found = json.loads(await self._docker("inspect", "--type", "task", "--", *tids,
                                                  what="docker inspect")) if tids else []
        return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []

    async def look(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        services = await self.services()
        return services, await self.tasks(services)

    async def manager_problem(self) -> str | None:
        """Why the engine can not run a stack (it is not a swarm manager), or None."""
        socket = self.engine_socket
        info: Any = None
        if socket is not None:
            try:
                info = await engine.get_json(socket, "/info")
            except engine.EngineError as e:
                self.log.debug("docker engine: %s; asking docker info", e)
        if info is None:
            try:
                info = json.loads(await self._docker("info", "--format", "{{json .}}",
                                                     what="docker info"))
            except (CommandError, ValueError) as e:
                return f"docker info: {e}"
        swarm = info.get("Swarm") if isinstance(info, dict) else None
        if not isinstance(swarm, dict):
            swarm = {}
        state = swarm.get("LocalNodeState")
        if state != "active":
            return (f"the docker engine is not in a swarm (its state: {state or 'unknown'}); "
                    "engine = \"swarm\" needs pgod on a swarm manager (docker swarm init)")
        if not swarm.get("ControlAvailable"):
            return ("the docker engine is a swarm worker, not a manager; engine = \"swarm\" "
                    "needs pgod on a swarm manager")
        return None

    # -- the face of Project -------------------------------------------------------------

    async def check(self, model: Model) -> str | None:
        """What the docker CLI's stack loader says against `model`'s stack file (the
        first thing it refuses), or None when it takes it. (Written to a file beside the
        stack file, as the service's user reads it.)"""
        path = self.private / "stack-check.json"
        self._write(path, stackfile.render(model.data))
        try:
            res = await self.runner.run(
                ["docker", "stack", "config", "--compose-file", str(path)],
                as_user=self.as_user, env=self.env, cwd=str(self.workdir),
                timeout=CONFIG_TIMEOUT, secrets=self.secrets, service=self.name)
        finally:
            path.unlink(missing_ok=True)
        if res.returncode == 0:
            return None
        lines = [ln.strip() for ln in redact(res.output, self.secrets).splitlines()
                 if ln.strip()]
        return "docker stack refuses the model: " + untrusted("; ".join(lines[-3:]), 400)

    def _write(self, path: Path, data: bytes) -> None:
        """`data` into `path` (in root's private directory: no one else can place a link
        there), readable by the service's user only."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if os.geteuid() == 0 and self.as_user is not None:
                os.fchown(fd, self.as_user.uid, self.as_user.gid)
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    async def up(self, *recreate: str) -> None:
        """A compose project's `up`: a stack has none (it is deployed from its model, and
        swarm itself keeps its tasks running: a repair of its drift deploys the model)."""
        raise ComposeError("a swarm stack is deployed from its model (Stack.deploy)")

    async def deploy(self, model: Model, timeout: float = UP_TIMEOUT) -> None:
        """Deploy `model` as the stack (see the module). `docker stack deploy` waits for
        the services to converge; after `timeout` seconds it is left to the health gate."""
        await self._create_sources(model)
        self._write(self.stack_file, stackfile.render(model.data))
        try:
            res = await self.runner.run(
                ["docker", "stack", "deploy", "--prune", "--with-registry-auth",
                 "--detach=false", "--compose-file", str(self.stack_file), self.name],
                as_user=self.as_user, env=self.env, cwd=str(self.workdir),
                timeout=max(timeout, 1.0), secrets=self.secrets, service=self.name,
                what="docker stack deploy")
        finally:
            self.snapshot.invalidate()
        if res.timed_out:
            self.log.info("docker stack deploy still waits after %gs: the health gate "
                          "says why", timeout)
            return
        if res.returncode != 0:
            raise CommandError("docker stack deploy", res.returncode,
                               redact(res.output, self.secrets))

    async def _create_sources(self, model: Model) -> None:
        """Create the missing host paths of the model's short-syntax bind mounts, as
        compose would and swarm does not (its tasks would be rejected): as the service's
        user, so nothing is made where the user could not make it itself (the policy let
        only DATADIR/NAME through)."""
        for name, source in _to_create(model):
            await self.runner.run(["mkdir", "-p", "--", source], as_user=self.as_user,
                                  env=self.env, cwd="/", timeout=CONFIG_TIMEOUT,
                                  service=self.name, check=True, what=f"mkdir {source}")
            self.log.info("created %s, the bind mount source of compose service %s (as "
                          "compose would; swarm creates none)", source, name)

    async def down(self, *, whole: bool = False) -> None:
        """Remove the stack and wait until its services and networks are gone (a deploy
        right after would find its networks still in use). A stack is always removed
        whole: `whole` is the compose project's flag, without meaning here."""
        try:
            # swarm refuses to remove a network a task of a removed service still holds,
            # and docker stack rm asks once: it is asked again while something is left
            await self._docker("stack", "rm", self.name, timeout=UP_TIMEOUT, check=False)
            asked = time.monotonic()
            deadline = asked + DOWN_WAIT
            while time.monotonic() < deadline:
                nets = await self._docker("network", "ls", "--quiet", "--filter",
                                          f"label={engine.STACK_LABEL}={self.name}")
                if not await self.services() and not nets.split():
                    return
                if time.monotonic() - asked > RM_AGAIN:
                    await self._docker("stack", "rm", self.name, timeout=UP_TIMEOUT,
                                       check=False)
                    asked = time.monotonic()
                await asyncio.sleep(0.5)
            raise ComposeError(f"stack {self.name}: still not gone {DOWN_WAIT:g}s after "
                               "docker stack rm")
        finally:
            self.snapshot.invalidate()

    async def running(self) -> bool:
        """True when the stack has a swarm service (swarm keeps its tasks running)."""
        return bool(await self.services())

    async def containers(self) -> list[engine.Container]:
        """The stack's tasks that should run, as containers (the node in `status`)."""
        services = await self.services()
        names = {s.get("ID"): str(s.get("Spec", {}).get("Name", "")) for s in services}
        out = []
        for t in await self.tasks(services):
            if t.get("DesiredState") != "running":
                continue
            status: dict[str, Any] = t["Status"] if isinstance(t.get("Status"), dict) else {}
            full = names.get(t.get("ServiceID"), "")
            out.append(engine.Container(
                id=str(t.get("ID", "")), name=f"{full}.{t.get('Slot') or t.get('NodeID')}",
                project=self.name, service=full.removeprefix(self.name + "_"),
                state=str(status.get("State", "")), health="",
                status=f"node {t.get('NodeID', '')[:12]}" + (
                    f", {status['Err']}" if status.get("Err") else ""),
                config_hash="", number=int(t.get("Slot") or 0), oneoff=False, created=0.0))
        return out

    async def config_hashes(self, model: Model | None = None) -> dict[str, str]:
        return {}  # (swarm replaces a task whose spec changed by itself)

    async def retire(self, stop: Sequence[str], remove: Sequence[str] = ()) -> None:
        return None  # (swarm's own: --prune removes services no longer in the model)

    # -- pgoctl's commands, in compose's words -------------------------------------------

    async def stream(self, args: Sequence[str], stdout: Sink, stderr: Sink,
                     stdin: bytes | None = None) -> int:
        """ps, logs, exec, restart, down (what pgo.commands asks in compose's words) on
        the stack; stop and start are refused; anything else (pull) is compose's."""
        from pgo.swarm import commands  # (the translation, a module of its own)

        return await commands.run(self, list(args), stdout, stderr, stdin)

    async def stream_argv(self, argv: Sequence[str], stdout: Sink, stderr: Sink,
                          stdin: bytes | None = None) -> int:
        return await self.runner.stream(
            list(argv), stdout=stdout, stderr=stderr, as_user=self.as_user,
            cwd=str(self.workdir), env=self.env, stdin=stdin, secrets=self.secrets,
            service=self.name)

    async def compose_stream(self, args: Sequence[str], stdout: Sink, stderr: Sink,
                             stdin: bytes | None = None) -> int:
        return await super().stream(args, stdout, stderr, stdin)
