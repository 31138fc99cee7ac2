"""All services together: start-up, stale cleanup, the tracking loops, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pgo import config
from pgo.compose import Project, RunningProjects
from pgo.errors import PgoError
from pgo.runner import CommandRunner, Runner
from pgo.service import STATE_DIR, Hooks, Paths, TrackedService

log = logging.getLogger("pgo.daemon")

PARALLEL_RECONCILES = 8


@dataclass(frozen=True)
class Options:
    config_path: str
    paths: Paths
    interval: float  # seconds between polls, before jitter
    ssh_addr: tuple[str, int] | None
    metric_addr: tuple[str, int] | None
    restart: bool  # reload the config when the file changes
    compose_binary: tuple[str, ...]


class Daemon:
    def __init__(self, cfg: config.Config, opts: Options, runner: CommandRunner | None = None
                 ) -> None:
        from pgo import metrics

        self.cfg = cfg
        self.opts = opts
        self.runner = runner or Runner(observer=metrics.observe_command)
        self.services: dict[str, TrackedService] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.hooks = Hooks()
        self.running = RunningProjects(self.runner)
        # At most this many reconciles at once (at start every service wants one): bounds
        # the git and compose processes alive together. SSH commands do not queue here.
        self.slots = asyncio.Semaphore(PARALLEL_RECONCILES)
        self.stopping = asyncio.Event()

    def make_service(self, svc: config.Service) -> TrackedService:
        return TrackedService(svc, self.opts.paths, self.runner, self.opts.compose_binary,
                              hooks=self.hooks, running=self.running)

    async def remove_stale(self, keep: Sequence[str]) -> None:
        """Down and remove every checkout in --dir that belongs to no configured service."""
        root = self.opts.paths.root
        if not root.is_dir():
            return
        for entry in sorted(root.iterdir()):
            name = entry.name
            if name == STATE_DIR or name in keep or not entry.is_dir() or entry.is_symlink():
                continue
            if not config.NAME_RE.match(name) or not self.opts.paths.private(name).is_dir():
                # only what pgod itself set up is ever removed (-d may hold other things)
                log.warning("%s is not a service directory pgod made; leaving it alone", entry)
                continue
            await self.remove_service_dir(name)

    async def remove_service_dir(self, name: str) -> None:
        paths = self.opts.paths
        log.info("[%s] stale: no such service in %s; downing it and removing %s", name,
                 self.cfg.path, paths.checkout(name))
        project = Project(name, paths.checkout(name), self.runner, None,
                          binary=self.opts.compose_binary)
        try:
            await project.down()
        except PgoError as e:
            log.error("[%s] down of stale project failed: %s", name, e)
        shutil.rmtree(paths.checkout(name), ignore_errors=True)
        shutil.rmtree(paths.private(name), ignore_errors=True)

    async def track(self, svc: TrackedService) -> None:
        """The poll loop of one service: reconcile, sleep -t plus jitter (or until woken)."""
        while True:
            svc.wake.clear()
            async with self.slots:
                await svc.reconcile("poll" if svc.verified else "start")
            delay = self.opts.interval * (1 + random.uniform(0, 0.5))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await svc.wake.wait()

    def start_service(self, svc: config.Service) -> None:
        """Start tracking one service; a service that can not be set up is logged and left
        out, never taking the others down with it."""
        try:
            tracked = self.make_service(svc)
            tracked.prepare()
        except (PgoError, OSError, KeyError) as e:
            log.error("[%s] can not be set up, not tracking it: %s", svc.name, e)
            return
        self.services[svc.name] = tracked
        log.info("[%s] tracking %s (branch %s) as user %s", svc.name,
                 svc.display_repository(), svc.branch, svc.user)
        self.tasks[svc.name] = asyncio.create_task(self.track(tracked), name=f"track-{svc.name}")

    async def stop_service(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        tracked = self.services.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tracked is not None:
            # wait for whoever holds the lock (an SSH command) before touching the project
            async with tracked.lock:
                pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.remove_stale([s.name for s in self.cfg.services])
        for svc in self.cfg.services:
            self.start_service(svc)
        servers = await self.start_servers()
        log.info("pgod running: %d service(s), every %gs", len(self.services),
                 self.opts.interval)
        try:
            await self.stopping.wait()
        finally:
            log.info("pgod stopping; containers keep running")
            for name in list(self.tasks):
                task = self.tasks.pop(name)
                task.cancel()
            for s in servers:
                await s.aclose()

    async def start_servers(self) -> list[Server]:
        """The listeners beside the tracker: SSH (-s) and metrics/webhooks (-m)."""
        servers: list[Server] = []
        if self.opts.ssh_addr is not None:
            from pgo import sshd

            servers.append(await sshd.start(self, *self.opts.ssh_addr))
        if self.opts.metric_addr is not None:
            from pgo import httpd

            servers.append(await httpd.start(self, *self.opts.metric_addr))
        return servers


class Server(Protocol):
    async def aclose(self) -> None: ...
