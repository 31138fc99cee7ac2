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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import sys
from pathlib import Path
from typing import NoReturn

from pgo import compose, config
from pgo.errors import ComposeError, PgoError
from pgo.policy import judgement
from pgo.runner import RunAs, Runner


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pgod check",
               description="Validate a pgo config (exit 0 or 2); with --service NAME PATH, "
               "judge the compose project in PATH by NAME's policy (exit 0 accepted, "
               "1 refused, 2 usage or config error).")
    p.add_argument("-c", "--config", default="/etc/pgo.toml")
    p.add_argument("-d", "--dir", default="/var/lib/pgo",
                   help="pgod's --dir (only DOCKER_CONFIG in the compose environment)")
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
    try:
        if args.service is None or root:
            cfg = config.load(args.config)
        else:  # CI: the service's user need not exist here, compose runs as the caller
            cfg = config.load(args.config, known_user=lambda _: True)
    except PgoError as e:
        print(e, file=sys.stderr)
        return 2
    if args.service is None:
        print(f"{args.config}: ok, {len(cfg.services)} service(s)")
        for s in cfg.services:
            if s.allow:
                print(f"{s.name}: allowed {', '.join(map(str, s.allow))}")
        return 0
    svc = cfg.get(args.service)
    if svc is None:
        print(f"pgod check: no service {args.service!r} in {args.config}", file=sys.stderr)
        return 2
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
    from pgo.service import Paths, compose_env

    paths = Paths(root=root_dir, datadir=datadir)
    project = compose.Project(svc.name, path, Runner(), as_user, binary=compose.detect(),
                              compose_file=svc.compose, env=compose_env(svc, paths),
                              secrets=svc.secrets())
    try:
        project.file  # noqa: B018 - raises when PATH has no compose file
    except ComposeError as e:
        print(f"pgod check: {path}: {e}", file=sys.stderr)
        return 2
    try:
        model = await project.config()
    except ComposeError as e:  # what pgod would refuse: the file does not load
        print(f"{svc.name}: {e}")
        return 1
    except (PgoError, OSError) as e:
        print(f"pgod check: compose config: {e}", file=sys.stderr)
        return 2
    verdict = judgement(model, svc.name, svc.user, svc.networks, path,
                        paths.data(svc.name), routes, allow=svc.allow)
    for lifted in verdict.lifted:
        print(f"{svc.name}: {lifted}")
    for allow in verdict.unused:
        print(f"{svc.name}: allow {allow}: not needed by this project")
    for v in verdict.violations:
        print(f"{svc.name}: {v}")
    if verdict.violations:
        return 1
    services = len(model.data.get("services") or {})
    why = " (root: the policy does not apply)" if svc.is_root else ""
    print(f"{svc.name}: accepted, {services} compose service(s){why}")
    return 0


def _caller() -> RunAs:
    """The invoking user (who may have no passwd entry, e.g. in a CI container)."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return RunAs(user=name, uid=uid, gid=gid, groups=tuple(os.getgroups()),
                 home=os.environ.get("HOME") or "/")
