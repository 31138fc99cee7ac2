"""Judge a fetched commit before it reaches the checkout that running containers mount.

The checkout is what the deployed containers bind-mount (`./conf:/etc/app:ro`). Were a new
commit reset into it before it is judged, a refused commit would still land there: one that
turns `conf` into a symlink to `/` is refused, yet the old container, restarted by its
restart policy, would mount the host's `/` (dockerd resolves a bind's source at every start).

So while a deployment runs, a new commit is first checked out beside the checkout (a
detached `git worktree` under pgod's private directory, as the service's user, hooks off as
always), loaded there by the compose tool with the deploy's project name and environment,
and judged on real paths there. Only an accepted commit is reset into the checkout (where
it is loaded and judged once more, as every deploy is). The scratch tree is removed after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pgo.compose import Project
from pgo.errors import CommandError, ComposeError

if TYPE_CHECKING:
    from pgo.service import TrackedService


async def violations(svc: TrackedService, commit: str) -> tuple[str, list[str]]:
    """What is wrong with `commit` for this service: ("policy", violations), ("error",
    [why]) when its model does not load, ("", []) when it would be accepted."""
    # a tree of its own per call: `pgoctl //load` may judge while the tracker does
    scratch = Path(tempfile.mkdtemp(prefix="next-", dir=svc.paths.private(svc.name)))
    if os.geteuid() == 0:
        os.chown(scratch, svc.as_user.uid, svc.as_user.gid)
    try:
        await svc.checkout.git("worktree", "add", "--quiet", "--detach", "--force",
                               str(scratch), commit)
        project = Project(svc.name, scratch, svc.runner, svc.as_user,
                          binary=svc.project.binary, compose_file=svc.cfg.compose,
                          env=svc.compose_env(), secrets=svc.secrets, log=svc.log)
        try:
            model = await project.config()
        except ComposeError as e:
            return "error", [str(e)]
        found = svc.violations(model, checkout=scratch)
        return ("policy" if found else ""), found
    finally:
        await _clear(svc, scratch)


async def _clear(svc: TrackedService, scratch: os.PathLike[str]) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(CommandError):
        await svc.checkout.git("worktree", "prune")
