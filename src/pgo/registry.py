"""Registry logins around a deploy (`registries` in pgo.toml), each service in a
DOCKER_CONFIG of its own.

    logged_in(...)        async context: `docker login` to each registry, `docker logout`
                          after, and no credential left behind even when a logout fails
    forget_logins(dir)    remove a config.json that holds credentials (also at start-up:
                          a pgod that died while logged in)

Each service has its own DOCKER_CONFIG (pgod's private directory), so two services with
different credentials for one registry never see each other's login. A token goes to
`docker login` on its standard input, never on a command line or in a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from pgo import config
from pgo.errors import CommandError
from pgo.runner import CommandRunner, RunAs

LOGIN_TIMEOUT = 120.0
LOGOUT_TIMEOUT = 60.0


def forget_logins(docker_config: Path) -> bool:
    """Remove DOCKER_CONFIG/config.json when it holds registry credentials (`auths`), or
    can not be read as a plain JSON file; return whether it did. Never follows a symlink."""
    path = docker_config / "config.json"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        fd = -1  # a symlink or worse: not docker's
    if fd >= 0:
        try:
            raw = os.read(fd, 1 << 20) if stat.S_ISREG(os.fstat(fd).st_mode) else b"x"
        finally:
            os.close(fd)
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict) and not doc.get("auths"):
                return False
        except ValueError:
            pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


@contextlib.asynccontextmanager
async def logged_in(
    runner: CommandRunner, registries: Sequence[config.Registry], *, as_user: RunAs,
    env: Mapping[str, str], docker_config: Path, secrets: Sequence[str], service: str,
    log: logging.LoggerAdapter[logging.Logger] | logging.Logger,
) -> AsyncIterator[None]:
    """Logged in to `registries` for the duration (as `as_user`, with `env`, whose
    DOCKER_CONFIG is `docker_config`), logged out after. A failed login is a CommandError;
    a failed logout is logged, and the credentials are removed all the same."""
    if not registries:
        yield
        return
    done = []
    try:
        for reg in registries:
            done.append(reg)
            await runner.run(["docker", "login", "--username", reg.user, "--password-stdin",
                              reg.host], as_user=as_user, env=env, stdin=reg.token.encode(),
                             timeout=LOGIN_TIMEOUT, secrets=secrets, service=service,
                             check=True, what=f"docker login {reg.host} (user {reg.user})")
        yield
    finally:
        for reg in done:
            try:
                await runner.run(["docker", "logout", reg.host], as_user=as_user, env=env,
                                 timeout=LOGOUT_TIMEOUT, secrets=secrets, service=service,
                                 check=True, what=f"docker logout {reg.host}")
            except CommandError as e:
                log.warning("%s", e)
        if forget_logins(docker_config):
            log.warning("registry credentials were left in %s after the logout; removed "
                        "them", docker_config / "config.json")
