"""One service's git checkout: clone, fetch, reset, hash, and a commit checked out beside it
to be judged before it reaches the checkout. git runs as the service's user.

Every way a commit's files are written (clone, reset, worktree) ends with the one
post-checkout step its owner installs (`after_checkout`: the service decrypts the commit's
SOPS documents there), so no caller can check a commit out and skip it."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from pgo.errors import CommandError, FetchError
from pgo.runner import CommandRunner, RunAs

GIT_TIMEOUT = 300.0

# pgod's own global git config: git's ownership check (safe.directory) would refuse a local
# upstream owned by another user, and the clone-local transport drops command-line config.
# Hooks never run: a checkout is the team's, and git runs in it on the host.
GITCONFIG = "[safe]\n\tdirectory = *\n[gc]\n\tauto = 0\n[core]\n\thooksPath = /dev/null\n"

SCRATCH_PREFIX = "next-"  # a worktree() directory
KEEP_REFS = "refs/pgo/"  # pgod's own refs in a checkout's repository (Checkout.keep)

# The post-checkout step: called with the directory a commit was just checked out in (the
# checkout, or a worktree() beside it) and the commit; what it raises, the caller gets.
AfterCheckout = Callable[[Path, str], Awaitable[None]]

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class Checkout:
    def __init__(
        self, path: Path, url: str, branch: str, runner: CommandRunner, as_user: RunAs,
        *, gitconfig: Path, secrets: Sequence[str] = (), service: str = "",
        log: logging.LoggerAdapter[logging.Logger] | logging.Logger | None = None,
        after_checkout: AfterCheckout | None = None,
    ) -> None:
        self.path = path
        self.gitconfig = gitconfig
        self._url_set = False
        self.url = url
        self.branch = branch
        self.runner = runner
        self.as_user = as_user
        self.secrets = secrets  # (not copied: the service's list grows as documents decrypt)
        self.service = service
        self.log = log or logging.getLogger("pgo.git")
        self.after_checkout = after_checkout

    async def _checked_out(self, directory: Path, commit: str) -> None:
        if self.after_checkout is not None:
            await self.after_checkout(directory, commit)

    async def _git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        argv = ["git", *args]
        genv = {**GIT_ENV, "GIT_CONFIG_GLOBAL": str(self.gitconfig), **(env or {})}
        try:
            res = await self.runner.run(argv, as_user=self.as_user, cwd=str(self.path),
                                        env=genv, timeout=GIT_TIMEOUT, secrets=self.secrets,
                                        service=self.service, check=True, what=f"git {args[0]}")
        except CommandError as e:
            if args[0] in ("fetch", "clone", "ls-remote"):
                raise FetchError(e.what, e.returncode, e.output) from None
            raise
        return res.stdout.decode("utf-8", "replace").strip()

    async def ls_files(self, directory: Path | None = None, *, modified: bool = False
                       ) -> bytes:
        """`git ls-files -z` in the checkout (or a worktree() of it): the tracked paths, or
        with `modified` those whose files differ from the commit's, as git printed them."""
        res = await self.runner.run(
            ["git", "ls-files", "-z", *(["--modified"] if modified else [])],
            as_user=self.as_user, cwd=str(directory or self.path),
            env={**GIT_ENV, "GIT_CONFIG_GLOBAL": str(self.gitconfig)}, timeout=GIT_TIMEOUT,
            secrets=self.secrets, service=self.service, check=True, what="git ls-files")
        return res.stdout

    async def git(self, *args: str) -> str:
        """Any other git command in the checkout, as the service's user."""
        return await self._git(*args)

    def prepare_dir(self) -> None:
        """Create the (empty) checkout directory owned by the user, not writable by others."""
        self.path.mkdir(mode=0o750, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.path, self.as_user.uid, self.as_user.gid)
        os.chmod(self.path, 0o750)

    def _head_file_present(self) -> bool:
        return os.path.isfile(os.path.join(self.path, ".git", "HEAD"))

    async def is_healthy(self, *, deep: bool = True) -> bool:
        """Does the checkout look usable? `deep` asks git; otherwise only the files are
        looked at (a damaged repository then shows when fetch or rev-parse fails)."""
        if not self._head_file_present():
            return False
        if not deep:
            return True
        try:
            await self._git("rev-parse", "--verify", "-q", "HEAD^{tree}")
        except CommandError:
            return False
        return True

    async def clone(self, *, files: bool = True) -> None:
        """(Re-)clone into an emptied checkout directory; without `files`, check nothing
        out yet (the commit is judged before it reaches the working tree), and keep the
        working tree that is there: only the repository is made anew."""
        if not files and self.path.is_dir() and not self.path.is_symlink():
            await self._replace_repository()
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.prepare_dir()
        await self._git("clone", "--quiet", "--single-branch", "--branch", self.branch,
                        *(() if files else ("--no-checkout",)), "--", self.url, ".")
        if files:
            await self._checked_out(self.path, read_ref(self.path / ".git", "HEAD")
                                    or await self.head())

    async def _replace_repository(self) -> None:
        """A new clone's `.git` in place of the checkout's, the working tree left as it is.
        Running containers may mount directories of the checkout: were the tree removed,
        dockerd would make a missing bind source again (as root, when a container restarts)
        before the applied commit's files are back, and the reset could not write there."""
        scratch = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.clone-",
                                        dir=self.path.parent))
        try:
            if os.geteuid() == 0:
                os.chown(scratch, self.as_user.uid, self.as_user.gid)
            argv = ("clone", "--quiet", "--single-branch", "--branch", self.branch,
                    "--no-checkout", "--", self.url, str(scratch))
            await self._git(*argv)
            old = self.path / ".git"
            if old.is_symlink() or old.is_file():
                old.unlink()
            elif old.exists():
                shutil.rmtree(old)
            os.rename(scratch / ".git", old)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def fetch(self) -> tuple[str, str]:
        """Fetch the tracked branch (forced: upstream may rewrite history).
        Return (upstream commit, checkout HEAD) from one rev-parse."""
        ref = f"refs/remotes/origin/{self.branch}"
        if not self._url_set:
            await self._git("remote", "set-url", "origin", self.url)
            self._url_set = True
        await self._git("fetch", "--quiet", "--prune", "--no-tags", "origin",
                        f"+refs/heads/{self.branch}:{ref}")
        gitdir = os.path.join(self.path, ".git")
        upstream, head = read_ref(gitdir, ref), read_ref(gitdir, "HEAD")
        if upstream and head:
            return upstream, head
        out = (await self._git("rev-parse", f"{ref}^{{commit}}", "HEAD^{commit}")).split()
        if len(out) != 2:
            raise CommandError("git rev-parse", 0, "unexpected output")
        return out[0], out[1]

    async def reachable(self) -> bool:
        """Can upstream be listed at all? (Tells a dead network from a damaged checkout.)"""
        try:
            await self._git("ls-remote", "--heads", "--", self.url, self.branch)
        except CommandError:
            return False
        return True

    async def reset(self, commit: str) -> None:
        """The checkout's files, index and HEAD made `commit`'s (then the post-checkout
        step)."""
        await self._git("reset", "--quiet", "--hard", commit)
        await self._checked_out(self.path, commit)

    async def head(self) -> str:
        return await self._git("rev-parse", "--verify", "HEAD^{commit}")

    async def commit_time(self, commit: str) -> int:
        return int(await self._git("show", "-s", "--format=%ct", commit))

    async def has(self, commit: str) -> bool:
        """Whether the repository holds `commit`."""
        try:
            await self._git("cat-file", "-e", f"{commit}^{{commit}}")
        except CommandError:
            return False
        return True

    async def behind(self) -> int:
        """How many commits of upstream's branch (as last fetched) the checkout lacks."""
        return int(await self._git("rev-list", "--count",
                                   f"HEAD..refs/remotes/origin/{self.branch}"))

    async def keep(self, commits: Mapping[str, str]) -> None:
        """Exactly `commits` (name -> commit) as refs under refs/pgo/: what they name stays
        in the repository whatever upstream does to its history (fetch --prune drops only
        the remote-tracking ref; gc is off). Deployed commits are kept so, for //rollback."""
        listed = await self._git("for-each-ref", "--format=%(refname) %(objectname)",
                                 KEEP_REFS)
        have = dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)
        want = {KEEP_REFS + name: commit for name, commit in commits.items()}
        for ref, commit in want.items():
            if have.get(ref) != commit:
                await self._git("update-ref", ref, commit)
        for ref in have.keys() - want.keys():
            await self._git("update-ref", "-d", ref)

    @contextlib.asynccontextmanager
    async def worktree(self, commit: str, parent: Path) -> AsyncIterator[Path]:
        """`commit` checked out in a scratch directory of its own under `parent`, for the
        time of the `async with`: a detached `git worktree` of the checkout, made as the
        service's user (hooks off as always), removed after.

        The checkout is what deployed containers bind-mount. Were a new commit reset into it
        before it is judged, a refused commit would still land there: one that turns `conf`
        into a symlink to `/` is refused, yet the old container, restarted by its restart
        policy, would mount the host's `/` (dockerd resolves a bind's source at every
        start). So a commit is judged here first, on real paths, and only an accepted one
        is reset into the checkout. Several may be open at once (`pgoctl //load` judges
        while the tracker does); what a pgod cut short left is removed by clear_worktrees.
        """
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
        try:
            if os.geteuid() == 0:
                os.chown(scratch, self.as_user.uid, self.as_user.gid)
            await self._git("worktree", "add", "--quiet", "--detach", "--force",
                            str(scratch), commit)
            await self._checked_out(scratch, commit)
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(CommandError):
                await self._git("worktree", "prune")

    @staticmethod
    def clear_worktrees(parent: Path) -> None:
        """Remove the scratch directories of worktree() under `parent` (a pgod cut short
        left them); git forgets them at the next prune."""
        for stale in parent.glob(SCRATCH_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)


HEX = frozenset("0123456789abcdef")


def read_ref(gitdir: str | Path, ref: str, depth: int = 0) -> str | None:
    """The object name a ref points at, read from git's files (loose ref, then packed-refs),
    following symbolic refs; None when that is not plain (then ask git). Saves a process per
    reconcile pass; git's ref storage format is stable and documented (gitrepository-layout).
    """
    if depth > 4 or ".." in ref:
        return None
    try:
        text = _read_ascii(os.path.join(gitdir, ref)).strip()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith("ref: "):
        return read_ref(gitdir, text[5:].strip(), depth + 1)
    if not text:
        try:
            packed = _read_ascii(os.path.join(gitdir, "packed-refs"))
        except (OSError, UnicodeDecodeError):
            return None
        for line in packed.splitlines():
            name, _, refname = line.partition(" ")
            if refname == ref:
                text = name
                break
    return text if len(text) in (40, 64) and set(text) <= HEX else None


def _read_ascii(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii")
