"""All services together: start-up, stale cleanup, the tracking loops, config reload,
signals and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pgo import caddy, config, drift, nfs, notify, reload, watch, xpgo
from pgo.compose import Project, RunningProjects, engine_socket
from pgo.errors import PgoError
from pgo.notifications import Notifier
from pgo.overview import Overview
from pgo.runner import CommandRunner, Runner
from pgo.secrets.identity import IDENTITY_FILE
from pgo.service import STATE_DIR, Hooks, Paths, TrackedService
from pgo.state import Attempt

log = logging.getLogger("pgo.daemon")

PARALLEL_RECONCILES = 8
# A reload lets a pass or command in progress on a changed or removed service finish for
# this long before it interrupts it.
RETIRE_WAIT = 60.0


@dataclass(frozen=True)
class Options:
    config_path: str
    paths: Paths
    interval: float  # seconds between polls, before jitter
    ssh_addr: tuple[str, int] | None
    metric_addr: tuple[str, int] | None
    restart: bool  # reload the config when the file changes
    compose_binary: tuple[str, ...]
    gate: xpgo.Settings = xpgo.Settings()  # the health gate's defaults (--health-timeout...)
    status_page: bool = True  # GET / and /status.json on the -m listener (--status-page)
    # the engine's API socket for its event stream (None: no events, passes only)
    events_socket: str | None = None


class _Slot:
    """Whether the pass of this task holds one of Daemon.slots (see slot_released)."""

    held = False


SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("slot", default=None)


class Daemon:
    def __init__(self, cfg: config.Config, opts: Options, runner: CommandRunner | None = None
                 ) -> None:
        from pgo import metrics

        self.cfg = cfg
        self.opts = opts
        self.runner = runner or Runner(observer=metrics.observe_command)
        self.services: dict[str, TrackedService] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # One lock per service name, whichever tracker serves it: a config reload's
        # successor takes the same one, so a pass or command of the old tracker and the new
        # one never run on the project at the same time.
        self.locks: dict[str, asyncio.Lock] = {}
        # NFS shares are mounted before an up; the Caddy import is kept current on every
        # pass of its service, before its up, and after a config reload
        self.mounts = nfs.Mounts(self.runner)
        self.caddy = caddy.Importer(lambda: self.cfg, self.services.get)
        self.hooks = Hooks(before_up=[self.mounts.ensure, self.caddy.ensure],
                           after_sync=[self.caddy.ensure],
                           after_deploy=[self.caddy.after_deploy])
        # which projects run: one engine API request every two seconds at most, shared by
        # all services (an injected runner, as in tests, is asked with `docker ps` instead)
        self.running = RunningProjects(self.runner,
                                       socket=engine_socket() if runner is None else None)
        # At most this many reconciles at once (at start every service wants one): bounds
        # the git and compose processes alive together. SSH commands do not queue here.
        self.slots = asyncio.Semaphore(PARALLEL_RECONCILES)
        self.stopping = asyncio.Event()
        # config reload: SIGHUP or (with --restart) a change of the file's content
        self.config_reload_wanted = asyncio.Event()
        self.config_reload_reason = ""
        self.config_reload_lock = asyncio.Lock()
        self.config_digest = reload.file_digest(opts.config_path)
        # called with the new config after every applied reload (e.g. the Caddy snippet)
        self.config_reload_hooks: list[Callable[[config.Config], Awaitable[None]]] = [
            self.caddy.on_reload]
        # engine events, drift repairs and their crash-loop cap (one budget per service
        # name: a reload's successor inherits it), notifications, the status page
        self.repairs = drift.RepairBudget()
        self.notifier = Notifier(lambda name: self.cfg.notify_urls(name))
        self.hooks.after_attempt.append(self.tell_attempt)
        self.dispatch = watch.Dispatch(lambda: self.services,
                                       lambda: [s.name for s in self.cfg.services])
        self.overview = Overview(self.services)

    def make_service(self, svc: config.Service) -> TrackedService:
        return TrackedService(svc, self.opts.paths, self.runner, self.opts.compose_binary,
                              hooks=self.hooks, running=self.running, fleet=lambda: self.cfg,
                              lock=self.locks.setdefault(svc.name, asyncio.Lock()),
                              defaults=self.opts.gate, outside_slot=self.slot_released,
                              repairs=self.repairs, tell=self.notifier.notify)

    async def tell_attempt(self, svc: TrackedService, attempt: Attempt) -> None:
        """Hooks.after_attempt: the attempt queued for the service's notify URLs."""
        notice = watch.notice_of(svc.name, attempt, svc.secrets)
        if notice is not None:
            self.notifier.notify(notice)

    @contextlib.asynccontextmanager
    async def slot_released(self) -> AsyncIterator[None]:
        """The pass's slot given back while it only waits on the engine (a health gate, up
        to its deadline), so that other services' passes go on; taken again after."""
        slot = SLOT.get()
        if slot is None or not slot.held:
            yield
            return
        self.slots.release()
        slot.held = False
        try:
            yield
        finally:
            await self.slots.acquire()
            slot.held = True

    async def remove_stale(self, keep: Sequence[str]) -> None:
        """Down and remove every checkout in --dir that belongs to no configured service."""
        root = self.opts.paths.root
        if not root.is_dir():
            return
        for entry in sorted(root.iterdir()):
            name = entry.name
            if name == STATE_DIR or name in keep or not entry.is_dir() or entry.is_symlink():
                continue
            if not config.NAME_RE.match(name) or not self.set_up(name):
                # only what pgod itself set up is ever removed (-d may hold other things)
                log.warning("%s is not a service directory pgod made; leaving it alone", entry)
                continue
            await self.remove_service_dir(name)

    def set_up(self, name: str) -> bool:
        """Did pgod set service `name` up in --dir? (Its private directory holds more than
        a key kept from its removal.)"""
        try:
            return any(e.name != IDENTITY_FILE for e in self.opts.paths.private(name).iterdir())
        except OSError:
            return False

    async def remove_service_dir(self, name: str) -> None:
        """Down a service no longer configured and remove its checkout and pgod's files of
        it, but for its age identity: a service configured again under its name decrypts
        what was encrypted for it (pgod(8) SECRETS)."""
        paths = self.opts.paths
        log.info("[%s] stale: no such service in %s; downing it and removing %s", name,
                 self.cfg.path, paths.checkout(name))
        project = Project(name, paths.checkout(name), self.runner, None,
                          binary=self.opts.compose_binary)
        try:
            await project.down()
        except PgoError as e:
            log.error("[%s] down of stale project failed: %s", name, e)
        await self.mounts.release(name, paths.data(name))
        shutil.rmtree(paths.checkout(name), ignore_errors=True)
        private = paths.private(name)
        with contextlib.suppress(OSError):
            for entry in private.iterdir():
                if entry.name == IDENTITY_FILE and not entry.is_symlink() and entry.is_file():
                    log.info("[%s] keeping its age identity %s", name, entry)
                elif entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            private.rmdir()  # (when no key was kept)

    async def track(self, svc: TrackedService) -> None:
        """The poll loop of one service: reconcile, sleep -t plus jitter (or until woken)."""
        while True:
            svc.wake.clear()
            trigger = svc.woken_by or ("poll" if svc.verified else "start")
            svc.woken_by = ""
            slot = _Slot()
            await self.slots.acquire()
            slot.held = True
            token = SLOT.set(slot)
            try:
                await svc.reconcile(trigger)
            except (OSError, ValueError, RuntimeError) as e:
                # reconcile turns pgo's own errors into an outcome; anything else is a
                # bug or a machine problem, and must not end this service's tracking
                svc.log.exception("reconcile failed unexpectedly: %s", e)
            finally:
                SLOT.reset(token)
                if slot.held:
                    self.slots.release()
            delay = self.opts.interval * (1 + random.uniform(0, 0.5))
            if not svc.wake.is_set():  # (a webhook during the pass: go again at once)
                svc.log.debug("idle for %.0fs or until woken", delay)
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

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_config_reload, "SIGHUP")
        await self.remove_stale([s.name for s in self.cfg.services])
        for svc in self.cfg.services:
            self.start_service(svc)
        servers = await self.start_servers()
        log.info("pgod running: %d service(s), every %gs", len(self.services),
                 self.opts.interval)
        helpers = [asyncio.create_task(self.config_reloader(), name="config-reloader"),
                   asyncio.create_task(self.notifier.run(), name="notifications")]
        if self.opts.events_socket is not None:
            from pgo.events import EngineEvents

            helpers.append(asyncio.create_task(
                self.dispatch.run(EngineEvents(self.opts.events_socket)), name="events"))
        if self.opts.restart:
            helpers.append(asyncio.create_task(self.watch_config(), name="watch-config"))
        notify.ready(f"tracking {len(self.services)} service(s)")
        try:
            await self.stopping.wait()
        finally:
            notify.stopping()
            log.info("pgod stopping; containers keep running")
            for helper in helpers:
                helper.cancel()
            for name in list(self.tasks):
                task = self.tasks.pop(name)
                task.cancel()
            for s in servers:
                await s.aclose()

    async def start_servers(self) -> list[Server]:
        """The listeners beside the tracker: SSH (-s) and metrics/webhooks (-m)."""
        servers: list[Server] = []
        try:
            if self.opts.ssh_addr is not None:
                from pgo import sshd

                what, addr = "-s (SSH)", self.opts.ssh_addr
                servers.append(await sshd.start(self, *addr))
            if self.opts.metric_addr is not None:
                from pgo import httpd

                what, addr = "-m (metrics, webhooks, status page)", self.opts.metric_addr
                servers.append(await httpd.start(
                    self, *addr,
                    status=self.overview.snapshot if self.opts.status_page else None))
        except OSError as e:  # (in use, or not an address of this machine: one line)
            for started in servers:
                await started.aclose()
            host, port = addr
            why = os.strerror(e.errno) if e.errno else str(e)  # (asyncio's words wrap it)
            raise PgoError(f"can not listen on {host or '*'}:{port}, {what}: {why}") from None
        return servers


    # -- config reload -----------------------------------------------------------------

    def request_config_reload(self, reason: str) -> None:
        self.config_reload_reason = reason
        self.config_reload_wanted.set()

    async def watch_config(self) -> None:
        """--restart: look at the file every few seconds; reload when its content changed
        (a touch, or an editor's rename of an identical file, reloads nothing)."""
        path = self.opts.config_path
        last = reload.file_key(path)
        while True:
            await asyncio.sleep(reload.POLL_INTERVAL)
            key = reload.file_key(path)
            if key == last:
                continue
            last = key
            digest = await asyncio.to_thread(reload.file_digest, path)
            if key is not None and digest != self.config_digest:
                self.request_config_reload(f"{path} changed")

    async def config_reloader(self) -> None:
        """Apply reload requests one at a time; requests made meanwhile coalesce."""
        while True:
            await self.config_reload_wanted.wait()
            self.config_reload_wanted.clear()
            await self.reload_config(self.config_reload_reason)

    async def reload_config(self, reason: str) -> bool:
        """Load the config file again and apply the difference. An invalid file changes
        nothing; return whether the new config was applied."""
        async with self.config_reload_lock:
            notify.reloading()
            try:
                return await self._reload_config(reason)
            finally:
                notify.ready(f"tracking {len(self.services)} service(s)")

    async def _reload_config(self, reason: str) -> bool:
        from pgo import metrics

        path = self.opts.config_path
        self.config_digest = await asyncio.to_thread(reload.file_digest, path)
        try:
            new = await asyncio.to_thread(config.load, path)
        except PgoError as e:
            log.error("config reload (%s) refused, the running config stays: %s", reason, e)
            metrics.RELOADS.labels("invalid").inc()
            return False
        changes = reload.diff(self.cfg, new)
        # services of the old config that could not be set up then get another chance
        retry = [s for s in new.services if s.name not in self.services
                 and s not in changes.added and s.name not in {c.name for c, _ in changes.changed}]
        self.cfg = new
        if not changes and not retry:
            log.info("config reload (%s): no service changed", reason)
            metrics.RELOADS.labels("unchanged").inc()
            return True
        log.info("config reload (%s): %s", reason, changes.summary())
        for name in changes.removed:
            log.info("[%s] removed from %s", name, path)
            async with self.retired(name):
                await self.remove_service_dir(name)
            self.locks.pop(name, None)
        for svc, keys in changes.changed:
            log.info("[%s] changed (%s): tracking it with the new settings", svc.name,
                     ", ".join(keys))
            async with self.retired(svc.name):
                self.start_service(svc)  # (its tracker takes the same lock: self.locks)
        for svc in changes.added:
            log.info("[%s] added to %s", svc.name, path)
            self.start_service(svc)
        for svc in retry:
            self.start_service(svc)
        metrics.RELOADS.labels("applied").inc()
        for hook in self.config_reload_hooks:
            await hook(new)
        return True

    @contextlib.asynccontextmanager
    async def retired(self, name: str) -> AsyncIterator[None]:
        """Stop tracking `name` for a config reload: let a pass or command in progress
        finish (up to RETIRE_WAIT), end its poll loop, and hold its lock while the caller
        cleans up or starts a successor."""
        tracked = self.services.pop(name, None)
        task = self.tasks.pop(name, None)
        lock = self.locks.get(name)
        held = False
        if tracked is not None and lock is not None:
            try:
                async with asyncio.timeout(RETIRE_WAIT):
                    await lock.acquire()
                held = True
            except TimeoutError:
                log.warning("[%s] still busy after %gs; interrupting it", name, RETIRE_WAIT)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            yield
        finally:
            if held and lock is not None:
                lock.release()


class Server(Protocol):
    async def aclose(self) -> None: ...
