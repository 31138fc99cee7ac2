"""`pgod check`: validate a config; with --service NAME PATH, judge a compose project.

    pgod check -c CONFIG [--datadir DIR]                     exit 0 valid, 2 not (and the
                                                             services' exceptions)
    pgod check -c CONFIG [--datadir DIR] --service NAME PATH exit 0 accepted, 1 refused,
                                                             2 usage or config error

Judging runs the real compose tool on PATH exactly as a deploy of NAME would (`config` with
project name NAME, NAME's compose file and environment), then the same judge pgod uses, with
PATH standing for NAME's checkout: one line per violation, and one per violation an
operator exception of NAME's (`allow`) lifted, or per exception the project does not need. As
root, compose runs as NAME's user (so it reads only what
that user may read, as in a deploy); otherwise it runs as the invoking user, which is how a
team runs it in CI: there NAME's user need not exist on the machine.

SOPS documents among the files git tracks in PATH are decrypted as pgod would, when NAME's
identities can be read (never made): nothing is written in PATH. A document that does not
decrypt refuses, in pgod's words. When there are documents and they decrypt, compose loads
the project from a scratch copy of PATH's tracked files (git's index, as a commit of it would
hold them) with the documents decrypted, removed afterwards; without the identities, PATH is
loaded as it is and a line on standard error says that its secrets were not checked.

A service of `engine = "swarm"` is judged as pgod judges it before a deploy: what swarm
ignores or refuses, the swarm policy, and (where a `docker` command is installed; it needs
no engine) the docker CLI's stack loader, `docker stack config`, on the stack file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from pgo import compose, config
from pgo.cli.common import Parser, Usage, load, service
from pgo.errors import CommandError, ComposeError, PgoError, SecretError
from pgo.policy import judgement
from pgo.runner import RunAs, Runner, redact

if TYPE_CHECKING:
    from pgo.service import Paths


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pgod check",
               description="Validate a pgo config (exit 0 or 2); with --service NAME PATH, "
               "judge the compose project in PATH by NAME's policy (exit 0 accepted, "
               "1 refused, 2 usage or config error).")
    p.add_argument("-c", "--config", default="/etc/pgo.toml")
    p.add_argument("-d", "--dir", default="/var/lib/pgo",
                   help="pgod's --dir (DOCKER_CONFIG in the compose environment; the "
                   "service's age identity)")
    p.add_argument("--datadir", default="/var/lib/pgo-data",
                   help="pgod's --datadir: DATADIR/NAME is the service's data")
    p.add_argument("--service", metavar="NAME", help="judge PATH as the checkout of NAME")
    p.add_argument("path", nargs="?", metavar="PATH", help="directory with the compose file")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if (args.service is None) != (args.path is None):
        print("pgod check: --service NAME and PATH go together (see --help)", file=sys.stderr)
        return 2
    root = os.geteuid() == 0
    try:  # (in CI the service's user need not exist: compose runs as the caller)
        cfg = load(args.config, None if args.service is None or root else lambda _: True)
        svc = None if args.service is None else \
            service("pgod check", cfg, args.service, args.config)
    except Usage as e:
        print(e, file=sys.stderr)
        return 2
    if args.service is None:
        print(f"{args.config}: ok, {len(cfg.services)} service(s)")
        for s in cfg.services:
            if s.allow:
                print(f"{s.name}: allowed {', '.join(map(str, s.allow))}")
        return 0
    assert svc is not None
    path = Path(args.path).absolute()
    if not path.is_dir():
        print(f"pgod check: {path}: not a directory", file=sys.stderr)
        return 2
    try:
        as_user = RunAs.lookup(svc.user) if root else _caller()
    except KeyError:
        print(f"pgod check: no such user {svc.user!r} on this machine", file=sys.stderr)
        return 2
    return asyncio.run(_judge(svc, path, Path(args.dir).absolute(),
                              Path(args.datadir).absolute(), as_user,
                              cfg.routes_of_others(svc.name)))


async def _judge(svc: config.Service, path: Path, root_dir: Path, datadir: Path,
                 as_user: RunAs, routes: dict[str, str]) -> int:
    from pgo.secrets import inplace
    from pgo.service import Paths

    paths = Paths(root=root_dir, datadir=datadir)
    secrets = inplace.Redactions(svc.secrets())
    try:
        compose.find_file(path, svc.compose)
    except ComposeError as e:
        print(f"pgod check: {path}: {e}", file=sys.stderr)
        return 2
    runner = Runner()
    try:
        tracked = await _tracked(runner, path, as_user)
        found = await inplace.decrypt_tree(path, tracked, svc, paths.private(svc.name),
                                           (as_user.uid, as_user.gid), write=False,
                                           create=False)
    except inplace.KeyUnavailable as e:
        print(f"pgod check: {svc.name}: SOPS documents not checked, its age identity can not "
              f"be read: {e}", file=sys.stderr)
        return await _judge_in(svc, path, path, paths, as_user, routes, secrets)
    except SecretError as e:
        print(f"{svc.name}: {e}")  # as pgod refuses the commit
        return 1
    except (CommandError, OSError) as e:
        print(f"pgod check: {path}: can not list the files git tracks: {e}", file=sys.stderr)
        return 2
    if not found.files:
        return await _judge_in(svc, path, path, paths, as_user, routes, secrets)
    secrets.add(found.secrets)
    try:
        async with _decrypted_copy(runner, path, svc, paths, as_user) as copy:
            return await _judge_in(svc, copy, path, paths, as_user, routes, secrets)
    except SecretError as e:
        print(f"{svc.name}: {e}")
        return 1
    except (CommandError, OSError) as e:
        print(f"pgod check: {path}: can not copy its tracked files to decrypt them: {e}",
              file=sys.stderr)
        return 2


GIT = ("git", "-c", "safe.directory=*", "-c", "core.fsmonitor=false")
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


async def _tracked(runner: Runner, path: Path, as_user: RunAs) -> list[str]:
    """The files git tracks in PATH (relative to it); none when PATH is in no git work
    tree (then pgod, which clones, would find no SOPS document either)."""
    from pgo.secrets import tracked_files

    res = await runner.run([*GIT, "rev-parse", "--is-inside-work-tree"], as_user=as_user,
                           cwd=str(path), env=GIT_ENV, timeout=60)
    if res.returncode != 0 or res.stdout.strip() != b"true":
        return []
    res = await runner.run([*GIT, "ls-files", "-z"], as_user=as_user, cwd=str(path),
                           env=GIT_ENV, timeout=300, check=True)
    return tracked_files(res.stdout)


@contextlib.asynccontextmanager
async def _decrypted_copy(runner: Runner, path: Path, svc: config.Service, paths: Paths,
                          as_user: RunAs) -> AsyncIterator[Path]:
    """PATH's tracked files, as git's index holds them, checked out by git (as the user
    compose runs as) in a private scratch directory, SOPS documents decrypted; removed
    after. Yields the directory that stands for PATH in it."""
    from pgo.secrets import inplace

    scratch = Path(tempfile.mkdtemp(prefix="pgod-check-"))
    try:
        if os.geteuid() == 0:
            os.chown(scratch, as_user.uid, as_user.gid)
        prefix = (await runner.run([*GIT, "rev-parse", "--show-prefix"], as_user=as_user,
                                   cwd=str(path), env=GIT_ENV, timeout=60, check=True)
                  ).stdout.decode("utf-8", "surrogateescape").strip()
        await runner.run([*GIT, "checkout-index", "--all", "--force", f"--prefix={scratch}/"],
                         as_user=as_user, cwd=str(path), env=GIT_ENV, timeout=300,
                         check=True)
        copy = scratch / prefix if prefix else scratch
        tracked = await _tracked(runner, path, as_user)
        await inplace.decrypt_tree(copy, tracked, svc, paths.private(svc.name),
                                   (as_user.uid, as_user.gid), create=False)
        yield copy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _judge_in(svc: config.Service, workdir: Path, path: Path, paths: Paths,
                    as_user: RunAs, routes: dict[str, str], secrets: list[str]) -> int:
    """Load the project in `workdir` (PATH, or its decrypted copy) and judge it; the lines
    printed name PATH."""
    from pgo.service import compose_env

    def shown(text: str) -> str:
        text = redact(text, secrets)
        return text if workdir == path else text.replace(str(workdir), str(path))

    project = compose.Project(svc.name, workdir, Runner(), as_user, binary=compose.detect(),
                              compose_file=svc.compose, env=compose_env(svc, paths),
                              secrets=secrets)
    try:
        model = await project.config()
    except ComposeError as e:  # what pgod would refuse: the file does not load
        print(f"{svc.name}: {shown(str(e))}")
        return 1
    except (PgoError, OSError) as e:
        print(f"pgod check: compose config: {shown(str(e))}", file=sys.stderr)
        return 2
    if svc.is_swarm:  # (what pgod reports before it deploys a stack: pgo.swarm)
        from pgo.swarm import stackfile

        if problems := stackfile.unsupported(model.data):
            print(f"{svc.name}: swarm ignores or refuses: {shown('; '.join(problems))}")
            return 1
    verdict = judgement(model, svc.name, svc.user, svc.networks, workdir,
                        paths.data(svc.name), routes, allow=svc.allow, engine=svc.engine)
    for lifted in verdict.lifted:
        print(f"{svc.name}: {shown(str(lifted))}")
    for allow in verdict.unused:
        print(f"{svc.name}: allow {allow}: not needed by this project")
    for v in verdict.violations:
        print(f"{svc.name}: {shown(str(v))}")
    if verdict.violations:
        return 1
    if svc.is_swarm and shutil.which("docker"):
        if why := await _stack_config(svc, workdir, model, paths, as_user, secrets):
            print(f"{svc.name}: {shown(why)}")
            return 1
    services = len(model.data.get("services") or {})
    why = " (root: the policy does not apply)" if svc.is_root else ""
    print(f"{svc.name}: accepted, {services} compose service(s){why}")
    return 0


async def _stack_config(svc: config.Service, workdir: Path, model: compose.Model,
                        paths: Paths, as_user: RunAs, secrets: list[str]) -> str | None:
    """What the docker CLI's stack loader says against the stack file of `model`, as
    pgod asks it before a deploy (pgo.swarm.stack.Stack.check), or None when it takes it;
    the file is written in a private scratch directory, removed after."""
    from pgo.service import compose_env
    from pgo.swarm.stack import Stack

    scratch = Path(tempfile.mkdtemp(prefix="pgod-check-stack-"))
    try:
        if os.geteuid() == 0:
            os.chown(scratch, as_user.uid, as_user.gid)
        stack = Stack(svc.name, workdir, Runner(), as_user, binary=compose.detect(),
                      compose_file=svc.compose, env=compose_env(svc, paths),
                      secrets=secrets, private=scratch)
        return await stack.check(model)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _caller() -> RunAs:
    """The invoking user (who may have no passwd entry, e.g. in a CI container)."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return RunAs(user=name, uid=uid, gid=gid, groups=tuple(os.getgroups()),
                 home=os.environ.get("HOME") or "/")
