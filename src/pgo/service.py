"""One tracked service: its directories, its lock, its recorded state, and reconcile().

Every path that changes what runs (the poll tick, a webhook, `pgoctl //git pull`, a config
reload, start-up) calls reconcile(); manual `up` calls apply(). Both hold the service's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from pgo import config, metrics, preview, registry
from pgo.compose import Model, Project, RunningProjects
from pgo.errors import CommandError, ComposeError, FetchError, PgoError, PolicyRefusal
from pgo.gitrepo import GITCONFIG, Checkout
from pgo.judge import judge
from pgo.runner import CommandRunner, RunAs
from pgo.state import State

STATE_DIR = ".pgo"  # under --dir: pgod's own files; never a service checkout


class Logger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with `[service]`."""

    def process(self, msg: object, kwargs: object) -> tuple[str, object]:  # type: ignore[override]
        return f"[{self.extra['service']}] {msg}", kwargs  # type: ignore[index]


@dataclass(frozen=True)
class Paths:
    root: Path  # -d: checkouts, stop files, pgod's state
    datadir: Path  # --datadir: each service's data

    def checkout(self, name: str) -> Path:
        return self.root / name

    def data(self, name: str) -> Path:
        return self.datadir / name

    def stopfile(self, name: str) -> Path:
        return self.root / f"{name}.stop"

    def private(self, name: str) -> Path:
        return self.root / STATE_DIR / "services" / name

    def gitconfig(self) -> Path:
        return self.root / STATE_DIR / "gitconfig"

    def state(self, name: str) -> Path:
        return self.private(name) / "state.json"


def compose_env(cfg: config.Service, paths: Paths) -> dict[str, str]:
    """The environment every compose command of a service sees (also `pgod check`'s)."""
    env = dict(cfg.env)
    env["DOCKER_CONFIG"] = str(paths.private(cfg.name) / "docker")
    env["PGO_DATA"] = str(paths.data(cfg.name))
    env["PGO_SERVICE"] = cfg.name
    return env


# A hook run at a point of a service's pass (NFS mount, Caddy import...).
Hook = Callable[["TrackedService"], Awaitable[None]]


@dataclass
class Hooks:
    before_up: list[Hook] = field(default_factory=list)  # before every up (mount, import)
    after_deploy: list[Hook] = field(default_factory=list)  # after a successful up
    # on every pass that is not held down by the stop file, once the checkout is synced
    # (a reset of the checkout is followed at once: the Caddy import)
    after_sync: list[Hook] = field(default_factory=list)


class TrackedService:
    def __init__(self, cfg: config.Service, paths: Paths, runner: CommandRunner,
                 compose_binary: Sequence[str], *, hooks: Hooks | None = None,
                 as_user: RunAs | None = None, running: RunningProjects | None = None,
                 fleet: Callable[[], config.Config] | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.paths = paths
        self.runner = runner
        self.hooks = hooks or Hooks()
        self.fleet = fleet  # the whole configuration in force (other services' urls)
        self.lock = asyncio.Lock()
        self.log = Logger(logging.getLogger("pgo.service"), {"service": cfg.name})
        self.state = State.load(paths.state(cfg.name))
        self.as_user = as_user or RunAs.lookup(cfg.user, home=self._home())
        self.secrets = cfg.secrets()
        self.checkout = Checkout(paths.checkout(cfg.name), cfg.repository, cfg.branch, runner,
                                 self.as_user, gitconfig=paths.gitconfig(),
                                 secrets=self.secrets, service=cfg.name,
                                 log=self.log)
        self.project = Project(cfg.name, paths.checkout(cfg.name), runner, self.as_user,
                               binary=compose_binary, compose_file=cfg.compose,
                               env=self.compose_env(), secrets=self.secrets, log=self.log,
                               running=running)
        self.wake = asyncio.Event()
        # (commit, kind, reasons): upstream's commit, refused before it reached the checkout
        self.held_back: tuple[str, str, list[str]] | None = None
        self._saved: dict[str, object] | None = None
        self._stopfile = str(paths.stopfile(cfg.name))
        # Set once this process has reconciled the service: until then the checkout is
        # checked deeply and no model is taken from the cache below.
        self.verified = False
        # (commit, model, violations) of the last model loaded: the model is a function of
        # the commit for the lifetime of this object (its config is frozen), so an
        # unchanged commit is not loaded and judged again every cycle.
        self._judged: tuple[str, Model | None, list[str]] | None = None

    # -- setup -------------------------------------------------------------------------

    def _home(self) -> str | None:
        import pwd

        home = pwd.getpwnam(self.cfg.user).pw_dir
        return home if os.path.isdir(home) else str(self.paths.private(self.cfg.name) / "home")

    def docker_config(self) -> Path:
        return self.paths.private(self.name) / "docker"

    def compose_env(self) -> dict[str, str]:
        return compose_env(self.cfg, self.paths)

    def prepare(self) -> None:
        """Create the service's directories with the right owners and modes."""
        uid, gid = self.as_user.uid, self.as_user.gid
        root_private = self.paths.root / STATE_DIR
        for d, mode, owner in (
            (self.paths.root, 0o755, (0, 0)),
            (root_private, 0o711, (0, 0)),
            (root_private / "services", 0o711, (0, 0)),
            (self.paths.private(self.name), 0o711, (0, 0)),
            (self.docker_config(), 0o700, (uid, gid)),
            (self.paths.datadir, 0o755, (0, 0)),
            (self.paths.data(self.name), 0o750, (uid, gid)),
        ):
            d.mkdir(parents=True, exist_ok=True, mode=mode)
            if d == self.paths.data(self.name) and self.cfg.mount and os.path.ismount(d):
                continue  # the NFS share's root: the server's owner and mode (root squash)
            if os.geteuid() == 0:
                if d.is_symlink():
                    raise PgoError(f"{d} is a symlink; refusing to use it")
                os.chown(d, *owner)
                os.chmod(d, mode)
        if registry.forget_logins(self.docker_config()):  # a pgod that died while logged in
            self.log.warning("removed registry credentials left in %s",
                             self.docker_config() / "config.json")
        for stale in self.paths.private(self.name).glob("next-*"):  # a preview cut short
            shutil.rmtree(stale, ignore_errors=True)
        gitconfig = self.paths.gitconfig()
        if not gitconfig.exists() or gitconfig.read_text() != GITCONFIG:
            gitconfig.write_text(GITCONFIG)
            gitconfig.chmod(0o644)
        home = Path(self.as_user.home)
        if not home.exists():
            home.mkdir(parents=True, mode=0o700)
            if os.geteuid() == 0:
                os.chown(home, uid, gid)

    def save(self) -> None:
        """Record the state when more than the time of the last pass changed (that time is
        kept in memory: writing it every pass costs more than the pass's own work)."""
        durable = self.state.durable_part()
        if durable != self._saved:
            self.state.save(self.paths.state(self.name))
            self._saved = durable

    # -- reconcile ---------------------------------------------------------------------

    async def reconcile(self, reason: str = "poll") -> str:
        """Bring the service in line with upstream; return the outcome's name."""
        async with self.lock:
            t0 = time.monotonic()
            try:
                outcome = await self._converge(reason)
                self.verified = True
            except PgoError as e:
                outcome = "failed"
                self.state.last_error = str(e)
                self.log.error("%s", e)
            finally:
                self.state.last_reconcile = time.time()
                self.save()
            self.log.debug("reconcile (%s) done: %s in %.3fs", reason, outcome,
                           time.monotonic() - t0)
            metrics.RECONCILES.labels(self.name, outcome).inc()
            metrics.DURATION.labels(self.name).observe(time.monotonic() - t0)
            return outcome

    async def _sync_checkout(self) -> tuple[str, str | None]:
        """Clone or fetch and reset to upstream. Return the checkout's HEAD and the error
        when upstream could not be read (the checkout then stays as it is). While a
        deployment mounts the checkout, a new commit is judged beside it first and a
        refused one is held back (self.held_back): it never reaches the checkout."""
        self.held_back = None
        if await self.checkout.is_healthy(deep=not self.verified):
            try:
                commit, head = await self.checkout.fetch()
                if commit != head and await self._hold_back(commit):
                    return head, None
                if commit != head:
                    self.log.info("upstream moved %s -> %s", head[:8], commit[:8])
                    await self.checkout.reset(commit)
                return commit, None
            except FetchError as e:
                if not await self.checkout.reachable():
                    self.log.warning("upstream unreachable, keeping what runs: %s", e)
                    return await self.checkout.head(), str(e)
                self.log.warning("checkout can not fetch (%s): cloning it again", e)
            except CommandError as e:
                self.log.warning("checkout is damaged (%s): cloning it again", e)
        elif self.checkout.path.exists() and any(self.checkout.path.iterdir()):
            self.log.warning("checkout is damaged: cloning it again")
        self.log.info("cloning %s (branch %s)", self.cfg.display_repository(), self.cfg.branch)
        # a FetchError here: nothing to run; reconcile records it. Once something was
        # deployed, the files wait until the commit is judged (as a fetched one does).
        guarded = not self.cfg.is_root and bool(self.state.applied_commit)
        await self.checkout.clone(files=not guarded)
        head = await self.checkout.head()
        if guarded:
            back = await self._hold_back(head) and self.state.applied_commit
            try:
                await self.checkout.reset(back or head)
            except CommandError as e:  # the applied commit is gone upstream: no files
                self.log.warning("commit %s held back, and the applied %s is not in the new "
                                 "clone (%s): the checkout stays empty", head[:8],
                                 str(back)[:8], e)
                return head, None
            if back:
                return back, None
        return head, None

    async def _hold_back(self, commit: str) -> bool:
        """Judge `commit` beside the checkout (pgo.preview) when containers may mount the
        checkout; True when it is refused and must not be reset into it."""
        st = self.state
        if self.cfg.is_root or not st.applied_commit:
            return False
        if st.refused_commit == commit and st.violations:
            self.held_back = (commit, "", list(st.violations))
            return True  # judged before; retried when upstream changes again
        try:
            kind, reasons = await preview.violations(self, commit)
        except (CommandError, OSError) as e:  # could not judge it: hold it back, try again
            kind, reasons = "unjudged", [str(e)]
        if reasons:
            self.held_back = (commit, kind, reasons)
        return bool(reasons)

    async def _converge(self, reason: str) -> str:
        st = self.state
        head, fetch_error = await self._sync_checkout()
        st.desired_commit = self.held_back[0] if self.held_back else head

        if self._stop_file_present():
            if not st.stopped or await self.project.running():
                self.log.info("stop file %s present: downing", self.paths.stopfile(self.name))
                await self.project.down()
            st.stopped = True
            st.last_error = fetch_error or ""
            return "stopped"
        if st.stopped:
            self.log.info("stop file gone: bringing the service back")
            st.stopped = False
        for hook in self.hooks.after_sync:
            await hook(self)
        if st.held:
            st.last_error = fetch_error or ""
            return "held"  # by pgoctl down or stop, until up, start or restart
        if self.held_back is not None:
            commit, kind, reasons = self.held_back
            if kind == "unjudged":
                st.last_error = f"commit {commit[:8]} could not be judged: {reasons[0]}"
                self.log.warning("%s; keeping what runs, trying again next pass",
                                 st.last_error)
                return "failed"
            if kind:  # newly judged (else: refused before, and still what upstream has)
                return self._refuse(commit, "", reasons, kind=kind)
            return "refused"

        if self._judged is not None and self._judged[0] == head:
            _, model, violations = self._judged
            if violations:
                return "refused"  # judged before; retried when upstream changes again
        else:
            try:
                model = await self.project.config()
            except ComposeError as e:
                self._judged = (head, None, [str(e)])
                return self._refuse(head, "", [str(e)], kind="error")
            if st.refused_commit == head and st.refused_model == model.digest:
                self._judged = (head, model, list(st.violations))
                return "refused"  # judged by an earlier pgod; retried on a new commit
            violations = self.violations(model)
            self._judged = (head, model, violations)
            if violations:
                return self._refuse(head, model.digest, violations, kind="policy")
        assert model is not None  # a model that did not load comes with its error
        st.refused_commit, st.refused_model, st.violations = "", "", []

        running = await self.project.running()
        if model.digest != st.applied_model:
            if st.applied_model and not model.reload and running:
                if not st.pending_reload:
                    self.log.info("commit %s taken; x-pgo reload is false, so the change waits "
                                  "for a manual up", head[:8])
                st.pending_reload = True
                st.last_error = fetch_error or ""
                return "pending"
            self.log.info("deploying commit %s (%s%s)", head[:8], reason,
                          "" if model.down_first else ", in place: x-pgo down is false")
            await self._deploy(model, head, restart=running and bool(st.applied_model))
            st.last_error = fetch_error or ""
            return "deployed"
        if not running:
            self.log.info("not running: bringing up commit %s", head[:8])
            await self._deploy(model, head, restart=False)
            st.last_error = fetch_error or ""
            return "started"
        st.last_error = fetch_error or ""
        return "unchanged"

    def _stop_file_present(self) -> bool:
        return os.path.exists(self._stopfile)  # one stat, checked on every pass

    def violations(self, model: Model, checkout: Path | None = None) -> list[str]:
        """The policy's verdict on `model`, loaded in `checkout` (default: the service's)."""
        routes = self.fleet().routes_of_others(self.name) if self.fleet else {}
        found = judge(model.data, self.name, self.cfg.user, self.cfg.networks,
                      checkout or self.paths.checkout(self.name), self.paths.data(self.name),
                      routes)
        return [str(v) for v in found]

    def _refuse(self, head: str, digest: str, reasons: list[str], *, kind: str) -> str:
        st = self.state
        st.refused_commit, st.refused_model, st.violations = head, digest, reasons
        st.last_error = f"commit {head[:8]} refused: " + "; ".join(reasons)
        for r in reasons:
            self.log.error("commit %s refused (%s): %s", head[:8], kind, r)
        if kind == "policy":
            metrics.REFUSALS.labels(self.name).inc()
        return "refused"

    async def _deploy(self, model: Model, head: str, *, restart: bool) -> None:
        """Bring up `model` and record it. With `restart` (the model changed since it was
        last brought up) the project is downed first, as the original pgo does, unless the
        model says `x-pgo: {down: false}` (then `up` recreates only what changed); everything
        that can fail without touching what runs (pull, build, missing images) is done
        before the down, so a bad push does not take the service down."""
        for hook in self.hooks.before_up:
            await hook(self)
        async with self.registries():
            try:
                await self.project.pull()
            except CommandError as e:  # e.g. an image that exists only locally
                self.log.warning("pull: %s (going on with the images on this machine)", e)
            if any(isinstance(s, dict) and s.get("build")
                   for s in (model.data.get("services") or {}).values()):
                await self.project.build()
            missing = await self.project.missing_images(model)
            if missing:
                raise ComposeError(f"commit {head[:8]}: image(s) not available after pull: "
                                   + ", ".join(missing))
            if restart and model.down_first:
                await self.project.down()
            # Real paths again, now that no container of the old deployment runs: one may
            # have left a symlink in the data directory since the commit was judged.
            late = self.violations(model)
            if late:
                self._judged = (head, model, late)
                self._refuse(head, model.digest, late, kind="policy")
                raise PolicyRefusal(late)
            await self.project.up()
        st = self.state
        st.applied_commit, st.applied_model, st.applied_at = head, model.digest, time.time()
        st.pending_reload = False
        self.save()
        with contextlib.suppress(PgoError, ValueError):
            metrics.APPLIED_TIME.labels(self.name).set(await self.checkout.commit_time(head))
        metrics.APPLIED_AT.labels(self.name).set(st.applied_at)
        for hook in self.hooks.after_deploy:
            await hook(self)

    async def apply(self) -> None:
        """Manual `up`: judge the current checkout and bring it up (takes a waiting change)."""
        async with self.lock:
            head = await self.checkout.head()
            model = await self.project.config()
            violations = self.violations(model)
            self._judged = (head, model, violations)
            if violations:
                self._refuse(head, model.digest, violations, kind="policy")
                self.save()
                raise ComposeError(f"commit {head[:8]} refused: " + "; ".join(violations))
            self.log.info("bringing up commit %s (manual up)", head[:8])
            self.state.held = ""
            changed = model.digest != self.state.applied_model
            await self._deploy(model, head,
                               restart=changed and await self.project.running())

    def registries(self) -> AbstractAsyncContextManager[None]:
        """Logged in to the service's registries for the duration, logged out after
        (pgo.registry)."""
        return registry.logged_in(self.runner, self.cfg.registries, as_user=self.as_user,
                                  env=self.project.env, docker_config=self.docker_config(),
                                  secrets=self.secrets, service=self.name, log=self.log)

    async def down(self) -> None:
        async with self.lock:
            await self.project.down()
