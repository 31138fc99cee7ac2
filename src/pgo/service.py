"""One tracked service: its directories, its lock, its recorded state, and reconcile().

Every path that changes what runs (the poll tick, a webhook, `pgoctl //git pull`, a config
reload, start-up) calls reconcile(); manual `up` calls apply(), the same pass asked for by
hand. Both hold the service's lock. How a commit goes live (the deploy, its health gate,
the rollback) is pgo.rollout's, a part of TrackedService.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from pgo import config, drift, health, metrics, registry, xpgo
from pgo.compose import Model, Project, RunningProjects
from pgo.errors import CommandError, ComposeError, FetchError, PgoError, SecretError
from pgo.gitrepo import GITCONFIG, Checkout
from pgo.logtext import untrusted
from pgo.notifications import Notice
from pgo.policy import judge
from pgo.repair import Repairs, no_notice
from pgo.rollout import LIVE, Rollout, UpFailed
from pgo.runner import CommandRunner, RunAs, redact
from pgo.secrets import identity, inplace, tracked_files
from pgo.state import Attempt, Outcome, State, Verdict, VerdictKind
from pgo.swarm.drift import TaskFailures

STATE_DIR = ".pgo"  # under --dir: pgod's own files; never a service checkout
__all__ = ["LIVE", "STATE_DIR", "Hooks", "Paths", "TrackedService"]


class Logger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with `[service]`; the service's secrets (extra `secrets`, its
    Redactions) are taken out of every line, whatever was formatted into it."""

    def process(self, msg: object, kwargs: object) -> tuple[str, object]:  # type: ignore[override]
        return f"[{self.extra['service']}] {msg}", kwargs  # type: ignore[index]

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        secrets = (self.extra or {}).get("secrets")
        if secrets and self.isEnabledFor(level):
            try:
                text = str(msg) % args if args else str(msg)
            except (TypeError, ValueError, KeyError):  # (a bad format: still one line)
                text = f"{msg} {args!r}"
            msg, args = redact(text, secrets), ()  # type: ignore[arg-type]
        super().log(level, msg, *args, **kwargs)  # type: ignore[arg-type]


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
# A hook told of every deploy attempt recorded in the history (notifications, the status
# page): deployed, rolled back, failed, refused. It is awaited in the pass, under the
# service's lock: it must return at once (queue, don't deliver) and not raise.
AttemptHook = Callable[["TrackedService", Attempt], Awaitable[None]]


@dataclass
class Hooks:
    before_up: list[Hook] = field(default_factory=list)  # before every up (mount, import)
    after_deploy: list[Hook] = field(default_factory=list)  # after a successful up
    # on every pass that is not held down by the stop file, once the checkout is synced
    # (a reset of the checkout is followed at once: the Caddy import)
    after_sync: list[Hook] = field(default_factory=list)
    after_attempt: list[AttemptHook] = field(default_factory=list)  # every recorded attempt


@dataclass(frozen=True)
class Synced:
    """Where a pass found the checkout after fetching."""

    head: str  # the checkout's commit
    error: str = ""  # why upstream could not be read ("" when it could)
    # upstream's commit, refused (or not judged) before it reached the checkout
    kept_out: Verdict | None = None
    upstream: str = ""  # upstream's commit, not followed while frozen


class TrackedService(Rollout, Repairs):
    def __init__(self, cfg: config.Service, paths: Paths, runner: CommandRunner,
                 compose_binary: Sequence[str], *, hooks: Hooks | None = None,
                 as_user: RunAs | None = None, running: RunningProjects | None = None,
                 fleet: Callable[[], config.Config] | None = None,
                 lock: asyncio.Lock | None = None, defaults: xpgo.Settings | None = None,
                 outside_slot: Callable[[], AbstractAsyncContextManager[None]] | None = None,
                 repairs: drift.RepairBudget | None = None,
                 tell: Callable[[Notice], bool] | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.paths = paths
        self.runner = runner
        self.compose_binary = tuple(compose_binary)
        self.hooks = hooks or Hooks()
        self.fleet = fleet  # the whole configuration in force (other services' urls)
        # every pass and every command that changes the project holds it; the daemon owns
        # it, so that a successor made by a config reload holds the same one
        self.lock = lock or asyncio.Lock()
        # What is never printed for this service: one list, shared by its checkout, its
        # projects, its log and the runner; it grows as the commit's SOPS documents decrypt.
        self.secrets = inplace.Redactions(cfg.secrets())
        self.log = Logger(logging.getLogger("pgo.service"),
                          {"service": cfg.name, "secrets": self.secrets})
        self.state = State.load(paths.state(cfg.name), self.log)
        # the health gate's deadline and settle time where x-pgo sets none (pgod's flags)
        self.defaults = defaults or xpgo.Settings()
        # gives back the daemon's slot of concurrent passes while a pass only waits (the
        # health gate), so that a long gate holds up no other service
        self.outside_slot = outside_slot or contextlib.nullcontext
        self.gate_poll = health.POLL
        self.activity = ""  # what the pass under way is doing, for //status ("": none)
        self.trigger = ""  # what asked for the pass under way
        self.as_user = as_user or RunAs.lookup(cfg.user, home=self._home())
        self.checkout = Checkout(paths.checkout(cfg.name), cfg.repository, cfg.branch, runner,
                                 self.as_user, gitconfig=paths.gitconfig(),
                                 secrets=self.secrets, service=cfg.name,
                                 log=self.log, after_checkout=self._checked_out)
        # The commit whose SOPS documents this tracker decrypted in the checkout (or found
        # decrypted); "" until then, or after a reset whose documents did not decrypt.
        self.decrypted_at = ""
        self.project = self.project_in(paths.checkout(cfg.name), running=running)
        self.wake = asyncio.Event()
        self.woken_by = ""  # what set `wake` (wake_for), for the pass's trigger
        self._saved: dict[str, object] | None = None
        self._stopfile = str(paths.stopfile(cfg.name))
        # Set once this process has reconciled the service: until then the checkout is
        # checked deeply and no model is taken from the cache below.
        self.verified = False
        # This tracker's verdict on the checkout's commit and the model it judged: the
        # model is a function of the commit for the lifetime of this object (its config is
        # frozen), so an unchanged commit is not loaded and judged again every pass.
        self.judged: tuple[Verdict, Model | None] | None = None
        # drift repair (pgo.repair): the crash-loop cap (the daemon's, shared by this
        # service's trackers), notifications, and what tells pgod's own events apart
        self.repairs = repairs or drift.RepairBudget()
        self.tell = tell or no_notice
        self.quiet_until = 0.0
        self.unreachable_since = 0.0
        self._hashes: tuple[str, dict[str, str]] | None = None
        self.suspects: set[str] = set()
        self.task_failures = TaskFailures()  # engine = "swarm" (pgo.swarm.drift)
        self.started_at = time.time()
        self.fleet_names = lambda: ([s.name for s in self.fleet().services] if self.fleet
                                    else [self.name])
        self.last_outcome: Outcome | None = None  # of the last pass (the status page)

    def wake_for(self, reason: str) -> None:
        """Ask for a pass now (its trigger: `reason`, e.g. webhook) instead of at the poll."""
        self.woken_by = reason
        self.wake.set()

    @property
    def busy(self) -> bool:
        """A pass or a command is changing the project now (a deploy, its health gate)."""
        return self.lock.locked()

    # -- setup -------------------------------------------------------------------------

    def _home(self) -> str | None:
        import pwd

        home = pwd.getpwnam(self.cfg.user).pw_dir
        return home if os.path.isdir(home) else str(self.paths.private(self.cfg.name) / "home")

    def docker_config(self) -> Path:
        return self.paths.private(self.name) / "docker"

    def compose_env(self) -> dict[str, str]:
        return compose_env(self.cfg, self.paths)

    def project_in(self, workdir: Path, running: RunningProjects | None = None) -> Project:
        """The service's compose project, loaded from `workdir` (the checkout, or a commit
        checked out beside it to be judged): a swarm stack for `engine = "swarm"`."""
        if self.cfg.is_swarm:
            from pgo.swarm.stack import Stack

            return Stack(self.name, workdir, self.runner, self.as_user,
                         binary=self.compose_binary, compose_file=self.cfg.compose,
                         env=self.compose_env(), secrets=self.secrets, log=self.log,
                         running=running, private=self.paths.private(self.name))
        return Project(self.name, workdir, self.runner, self.as_user,
                       binary=self.compose_binary, compose_file=self.cfg.compose,
                       env=self.compose_env(), secrets=self.secrets, log=self.log,
                       running=running)

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
        if not self.cfg.age_identity:  # the service's own key, made on its first start
            try:
                identity.ensure(self.paths.private(self.name))
            except SecretError as e:
                self.log.error("its age identity: %s", e)
        if registry.forget_logins(self.docker_config()):  # a pgod that died while logged in
            self.log.warning("removed registry credentials left in %s",
                             self.docker_config() / "config.json")
        Checkout.clear_worktrees(self.paths.private(self.name))  # a judgement cut short
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

    async def reconcile(self, trigger: str = "poll", *, manual: bool = False) -> Outcome:
        """Bring the service in line with upstream. `trigger`: what asked (poll, start,
        webhook, pgoctl...), for the log and the history. `manual` (//up): a hold and a
        failed commit's mark are lifted first, and the checkout's model is brought up
        even when it waits for a manual up or is what runs."""
        async with self.lock:
            t0 = time.monotonic()
            self.trigger = trigger
            try:
                if manual:
                    self._lift()
                    self.repairs.clear(self.name)  # (//up ends a crash loop's wait)
                outcome = await self._converge(trigger, manual=manual)
                self.verified = True
            except PgoError as e:
                outcome = Outcome.FAILED
                self.state.last_error = redact(str(e), self.secrets)
                self.log.error("%s", e)
            finally:
                if self.activity:  # (events of what it changed are its own)
                    self.quiet_until = time.time()
                self.activity = ""
                self.state.last_reconcile = time.time()
                self.save()
            self.last_outcome = outcome
            self.log.debug("reconcile (%s) done: %s in %.3fs", trigger, outcome,
                           time.monotonic() - t0)
            metrics.RECONCILES.labels(self.name, outcome).inc()
            metrics.DURATION.labels(self.name).observe(time.monotonic() - t0)
            return outcome

    async def _sync_checkout(self) -> Synced:
        """Clone or fetch and reset to upstream. When upstream can not be read the checkout
        stays as it is. While a deployment mounts the checkout, a new commit is judged
        beside it first and a refused one is kept out of it (Synced.kept_out)."""
        if await self.checkout.is_healthy(deep=not self.verified):
            try:
                commit, head = await self.checkout.fetch()
                if commit != head and self.state.frozen:
                    return Synced(head, upstream=commit)
                if commit != head and (kept_out := await self._judge_upstream(commit)):
                    return Synced(head, kept_out=kept_out)
                if commit != head:
                    self.log.info("upstream moved %s -> %s", head[:8], commit[:8])
                    await self.checkout.reset(commit)
                return Synced(commit)
            except FetchError as e:
                if not await self.checkout.reachable():
                    self.log.warning("upstream unreachable, keeping what runs: %s", e)
                    return Synced(await self.checkout.head(), error=str(e))
                self.log.warning("checkout can not fetch (%s): cloning it again", e)
            except CommandError as e:
                self.log.warning("checkout is damaged (%s): cloning it again", e)
        elif self.checkout.path.exists() and any(self.checkout.path.iterdir()):
            self.log.warning("checkout is damaged: cloning it again")
        self.log.info("cloning %s (branch %s)", self.cfg.display_repository(), self.cfg.branch)
        # a FetchError here: nothing to run; reconcile records it. Once something was
        # deployed, the files wait until the commit is judged (as a fetched one does);
        # a frozen checkout goes back to what runs.
        frozen = self.state.frozen
        guarded = (not self.cfg.is_root or frozen) and bool(self.state.applied_commit)
        await self.checkout.clone(files=not guarded)
        head = await self.checkout.head()
        if guarded:
            kept_out = None if frozen else await self._judge_upstream(head)
            back = self.state.applied_commit if kept_out or frozen else head
            try:
                await self.checkout.reset(back)
            except CommandError as e:  # the applied commit is gone upstream: no files
                self.log.warning("commit %s kept out, and the applied %s is not in the new "
                                 "clone (%s): the checkout stays empty", head[:8], back[:8], e)
                return Synced(head)
            if frozen and back != head:
                return Synced(back, upstream=head)
            if kept_out:
                return Synced(back, kept_out=kept_out)
        return Synced(head)

    async def _judge_upstream(self, commit: str) -> Verdict | None:
        """The verdict on upstream's `commit` before it may reach the checkout, when
        containers may mount the checkout (judge_commit); None when it may. A commit
        refused before, or that failed once brought up, stays out (of a root service's too:
        the checkout keeps holding what runs)."""
        st = self.state
        if st.verdict is not None and st.verdict.refused and st.verdict.commit == commit:
            return st.verdict  # judged before; retried when upstream changes again
        if self.cfg.is_root or not st.applied_commit:
            return None
        try:
            verdict = await self.judge_commit(commit)
        except (CommandError, OSError, inplace.KeyUnavailable) as e:  # keep it out, try again
            verdict = Verdict(commit, kind=VerdictKind.UNJUDGED, reasons=(str(e),))
        return None if verdict.kind is VerdictKind.ACCEPTED else verdict

    async def judge_commit(self, commit: str) -> Verdict:
        """The verdict on `commit`, checked out beside the checkout (Checkout.worktree) and
        loaded there by the compose tool with the deploy's project name and environment.
        Its SOPS documents are decrypted there first (_checked_out): one that does not
        decrypt refuses it. CommandError or OSError when it can not be checked out or loaded
        at all, KeyUnavailable when the service's identities can not be had."""
        try:
            async with self.checkout.worktree(commit, self.paths.private(self.name)) as tree:
                try:
                    model = await self.project_in(tree).config()
                except ComposeError as e:
                    return Verdict(commit, kind=VerdictKind.ERROR, reasons=(str(e),))
                verdict = await self.judge_model(commit, model, checkout=tree)
        except inplace.KeyUnavailable:
            raise
        except SecretError as e:
            return Verdict(commit, kind=VerdictKind.SECRETS, reasons=(str(e),))
        return Verdict(commit, kind=verdict.kind, reasons=verdict.reasons)

    # -- secrets: every commit checked out is decrypted where it lies -------------------

    async def _checked_out(self, tree: Path, commit: str) -> None:
        """The post-checkout step (Checkout calls it after every clone, reset and worktree):
        `commit`'s SOPS documents in `tree` decrypted in place, their values redacted from
        now on. When `tree` is the checkout and a document does not decrypt, the commit is
        refused (recorded as the verdict, as a policy refusal is; the checkout keeps the
        ciphertext, nothing of it is deployed). Raises what decrypt_tree raises."""
        await self._decrypt(tree, commit, tracked_files(await self.checkout.ls_files(tree)))

    async def _decrypt(self, tree: Path, commit: str, tracked: list[str]) -> None:
        in_checkout = tree == self.checkout.path
        if in_checkout:
            self.decrypted_at = ""
            self.judged = None
        try:
            done = await inplace.decrypt_tree(tree, tracked, self.cfg,
                                              self.paths.private(self.name),
                                              (self.as_user.uid, self.as_user.gid))
        except inplace.KeyUnavailable:
            raise  # (the machine's to fix: not a verdict on the commit)
        except SecretError as e:
            if in_checkout:
                await self._refuse_secrets(commit, e)
            raise
        self.secrets.add(done.secrets)
        for rel in done.mismatched:  # (names are the team's: escaped, as a client's text)
            self.log.warning("commit %s: %s looks like a SOPS document of another format "
                             "than its name says (sops reads it as binary); left as it is",
                             commit[:8], untrusted(rel))
        if done.files:
            self.log.info("commit %s: decrypted %d SOPS document(s)%s: %s", commit[:8],
                          len(done.files), "" if in_checkout else " beside the checkout",
                          untrusted(", ".join(done.files[:10])
                                    + (" ..." if len(done.files) > 10 else ""), 400))
        if in_checkout:
            self.decrypted_at = commit
            if self._secrets_refusal(commit) is not None:
                self.state.verdict = None  # (decrypts now: judged afresh)

    async def _restore(self, head: str) -> None:
        """The checkout as this tracker finds it (left by a pgod before it, or by a
        decryption that failed): its documents still encrypted are decrypted now, and the
        values of those decrypted before (their files differ from the commit's) are read
        from the commit checked out beside it. Raises as _checked_out does."""
        tracked = tracked_files(await self.checkout.ls_files())
        changed = set(tracked_files(await self.checkout.ls_files(modified=True))) \
            if tracked else set()
        if changed:
            try:
                async with self.checkout.worktree(head, self.paths.private(self.name)):
                    pass  # (decrypted there by _checked_out: its values are redacted now)
            except inplace.KeyUnavailable:
                raise
            except SecretError as e:
                await self._refuse_secrets(head, e)
                raise
        await self._decrypt(self.checkout.path, head,
                            [t for t in tracked if t not in changed])

    async def _refuse_secrets(self, commit: str, e: SecretError) -> None:
        """The checkout's `commit` refused: a document of it does not decrypt."""
        self.decrypted_at = ""
        verdict = Verdict(commit, kind=VerdictKind.SECRETS, reasons=(str(e),))
        if verdict != self.state.verdict:
            await self._refuse(verdict)
            self.save()

    def _secrets_refusal(self, commit: str) -> Verdict | None:
        """The refusal of `commit` because its documents did not decrypt, if it stands."""
        v = self.state.verdict
        return v if v is not None and v.kind is VerdictKind.SECRETS and v.commit == commit \
            else None

    async def _judge_checkout(self, head: str) -> tuple[Verdict, Model | None]:
        """The verdict on the checkout's commit and its model (None: it did not load):
        this tracker's own when it judged `head` before, else the model is loaded, and
        judged unless an earlier pgod refused the same model of the same commit."""
        if (refused := self._secrets_refusal(head)) is not None:
            return refused, None  # the checkout holds ciphertext: nothing to load
        if self.judged is not None and self.judged[0].commit == head:
            return self.judged
        try:
            model = await self.project.config()
        except ComposeError as e:
            self.judged = (Verdict(head, kind=VerdictKind.ERROR, reasons=(str(e),)), None)
            return self.judged
        before = self.state.verdict
        if before is not None and before.refused and before.commit == head \
                and before.model == model.digest:
            self.judged = (before, model)  # retried on a new commit
        else:
            self.judged = (await self.judge_model(head, model), model)
        return self.judged

    async def judge_model(self, commit: str, model: Model, checkout: Path | None = None
                          ) -> Verdict:
        """The verdict on `model` of `commit`: its x-pgo must be valid (else ERROR) and
        the policy find nothing (else POLICY). `checkout`: where it was loaded."""
        try:
            model.settings(self.defaults)
        except ValueError as e:
            return Verdict(commit, model.digest, VerdictKind.ERROR, (str(e),))
        if self.cfg.is_swarm:
            from pgo.swarm import stackfile

            if problems := stackfile.unsupported(model.data):
                return Verdict(commit, model.digest, VerdictKind.ERROR, (
                    "swarm ignores or refuses: " + "; ".join(problems),))
        found = await self.violations(model, checkout)
        if self.cfg.is_swarm and not found:
            from pgo.swarm import stackfile
            from pgo.swarm.stack import Stack

            if missing := stackfile.missing_sources(model.data, os.path.exists):
                return Verdict(commit, model.digest, VerdictKind.ERROR, (
                    "; ".join(missing),))
            stack = self.project_in(checkout) if checkout is not None else self.project
            why = await stack.check(model) if isinstance(stack, Stack) else None
            if why:
                return Verdict(commit, model.digest, VerdictKind.ERROR, (why,))
        return Verdict(commit, model.digest,
                       VerdictKind.POLICY if found else VerdictKind.ACCEPTED, tuple(found))

    def _lift(self) -> None:
        """//up: a hold ends, and a commit that failed once brought up is tried again."""
        st = self.state
        st.hold = None
        if st.verdict is not None and st.verdict.kind is VerdictKind.FAILED:
            self.log.info("commit %s, which failed, is tried again (manual up)",
                          st.verdict.commit[:8])
            st.verdict = None
            self.judged = None

    async def _converge(self, trigger: str, *, manual: bool = False) -> Outcome:
        st = self.state
        if self.cfg.is_swarm and not self.verified:
            await self._swarm_manager()
        try:
            sync = await self._sync_checkout()
        except SecretError:  # reset into the checkout, not decrypted: refused (_checked_out),
            sync = Synced(await self.checkout.head())  # or tried again below
        head = sync.head
        st.desired_commit = sync.kept_out.commit if sync.kept_out else sync.upstream or head
        self._upstream(sync.error, st.desired_commit)

        if self._stop_file_present():
            if not st.stop_file or await self.project.running():
                self.log.info("stop file %s present: downing", self.paths.stopfile(self.name))
                await self.project.down()
            st.stop_file = True
            st.last_error = sync.error
            return Outcome.STOP_FILE
        if st.stop_file:
            self.log.info("stop file gone: bringing the service back")
            st.stop_file = False
        for hook in self.hooks.after_sync:
            await hook(self)
        if st.hold:
            st.last_error = sync.error
            return Outcome.HELD  # until pgoctl lifts it
        if self.decrypted_at != head and (manual or self._secrets_refusal(head) is None):
            try:  # this tracker's first sight of the checkout, or a failed decryption
                await self._restore(head)
            except inplace.KeyUnavailable:
                raise  # (the pass fails, and says why)
            except SecretError:  # refused, and recorded (_judge_checkout says so)
                pass
        if sync.kept_out is not None:
            kept_out = await self._kept_out(sync.kept_out)
            if not manual:
                return kept_out  # (//up brings up what the checkout holds all the same)

        verdict, model = await self._judge_checkout(head)
        if verdict.refused:
            if verdict != st.verdict:
                return await self._refuse(verdict)
            return Outcome.FAILED if verdict.kind is VerdictKind.FAILED else Outcome.REFUSED
        assert model is not None  # a model that did not load is refused
        if sync.kept_out is None:
            st.verdict = None

        if st.proving and st.proving == head and st.applied_model == model.digest:
            # brought up by a pgod that stopped (or was interrupted) during its health gate
            self.log.info("commit %s was brought up, its health gate did not end: watching "
                          "it again", head[:8])
            outcome = await self._prove(model, head, trigger, time.monotonic(),
                                        st.proving_since)
            if outcome is Outcome.DEPLOYED:
                st.last_error = sync.error
            return outcome
        running = await self.project.running()
        if model.digest != st.applied_model or manual:
            if not manual and st.applied_model and not model.deploys_changes and running:
                if not st.awaiting_up:
                    self.log.info("commit %s taken; x-pgo reload is false, so the change waits "
                                  "for a manual up", head[:8])
                st.awaiting_up = True
                st.last_error = sync.error
                return Outcome.PENDING
            again = model.digest == st.applied_model
            self.repairs.clear(self.name)  # (a new commit ends a crash loop's wait)
            restart = running and bool(st.applied_model)
            how = "" if not restart else \
                ", down first: x-pgo down is true" if model.down_first else ", in place"
            self.log.info("deploying commit %s (%s%s)", head[:8], trigger, how)
            outcome = await self._release(model, head, trigger, restart=restart)
            if outcome is Outcome.DEPLOYED:
                st.last_error = sync.error
                return Outcome.STARTED if again else outcome
            return outcome
        if not self.verified and running:
            # the first pass of this pgod: a stray a pgod from before this check left
            await self._remove_strays(model, None, stop_changed=False)
        if (running or self.verified) and not st.frozen:
            # drift: containers missing, stopped, too many, or of another configuration;
            # a stack's swarm services gone, unknown, or changed by hand (pgo.repair; a
            # freeze keeps what runs as it is; swarm keeps a stack's tasks running itself)
            repaired = await self._drift(model, head)
            if repaired is not None:
                if repaired is Outcome.STARTED:
                    st.last_error = sync.error
                return repaired
        if not running:
            # (what runs was proven when it was deployed: brought up again, it is not
            # gated, nor rolled back; a pass that fails is tried again at the next)
            self.log.info("not running: bringing up commit %s", head[:8])
            try:
                await self._deploy(model, head, restart=False)
            except UpFailed as e:
                if e.verdict is None:
                    raise
                # refused on real paths (logged by _refuse): recorded once, not raised to
                # be logged again
                await self._attempt(head, trigger, Outcome.REFUSED, None,
                                    "; ".join(e.verdict.reasons))
                return Outcome.REFUSED
            st.last_error = sync.error
            return Outcome.STARTED
        st.last_error = sync.error
        return Outcome.FROZEN if st.frozen else Outcome.UNCHANGED

    async def _kept_out(self, verdict: Verdict) -> Outcome:
        """A pass whose upstream commit did not reach the checkout."""
        if verdict.kind is VerdictKind.UNJUDGED:
            self.state.last_error = (f"commit {verdict.commit[:8]} could not be judged: "
                                     f"{verdict.reasons[0]}")
            self.log.warning("%s; keeping what runs, trying again next pass",
                             self.state.last_error)
            return Outcome.FAILED
        if verdict == self.state.verdict:
            # refused before, or failed once brought up, and still what upstream has
            return Outcome.FAILED if verdict.kind is VerdictKind.FAILED else Outcome.REFUSED
        return await self._refuse(verdict)

    async def _swarm_manager(self) -> None:
        """A swarm service (`engine = "swarm"`) needs the engine to be a swarm manager:
        checked on this tracker's first pass (at start, and for a service a reload adds or
        changes); ComposeError says why not, and the pass fails (the others run on)."""
        from pgo.swarm.stack import Stack

        if isinstance(self.project, Stack):
            why = await self.project.manager_problem()
            if why:
                raise ComposeError(why)

    def _stop_file_present(self) -> bool:
        return os.path.exists(self._stopfile)  # one stat, checked on every pass

    async def violations(self, model: Model, checkout: Path | None = None) -> list[str]:
        """The policy's verdict on `model`, loaded in `checkout` (default: the service's).
        Judged in a thread: the largest model takes the policy half a second, which the
        event loop (and every other service, and the health gates) must not wait for."""
        routes = self.fleet().routes_of_others(self.name) if self.fleet else {}
        found = await asyncio.to_thread(
            judge, model, self.name, self.cfg.user, self.cfg.networks,
            checkout or self.paths.checkout(self.name), self.paths.data(self.name), routes,
            allow=self.cfg.allow, engine=self.cfg.engine)
        return [redact(str(v), self.secrets) for v in found]  # (a model holds plaintext)

    async def _refuse(self, verdict: Verdict, *, record: bool = True) -> Outcome:
        """Record and log a refusal reached just now (`record`: in the history too)."""
        st = self.state
        st.verdict = verdict
        st.last_error = verdict.summary()
        for r in verdict.reasons:
            self.log.error("commit %s refused (%s): %s", verdict.commit[:8], verdict.kind, r)
        if verdict.kind is VerdictKind.POLICY:
            metrics.REFUSALS.labels(self.name).inc()
        if record:
            await self._attempt(verdict.commit, self.trigger, Outcome.REFUSED, None,
                                "; ".join(verdict.reasons))
        return Outcome.REFUSED

    async def apply(self) -> Outcome:
        """Manual up (//up): the pass, asked for by hand (reconcile with `manual`)."""
        return await self.reconcile("//up", manual=True)

    def registries(self) -> AbstractAsyncContextManager[None]:
        """Logged in to the service's registries for the duration, logged out after
        (pgo.registry)."""
        return registry.logged_in(self.runner, self.cfg.registries, as_user=self.as_user,
                                  env=self.project.env, docker_config=self.docker_config(),
                                  secrets=self.secrets, service=self.name, log=self.log)
