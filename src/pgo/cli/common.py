"""What pgod and its subcommands share: usage errors in one line, and the service NAME of
a configuration file, found or said not to be there."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from pgo import config
from pgo.errors import PgoError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


class Usage(Exception):
    """A usage or configuration error: its one line goes to standard error, exit status 2."""


def load(path: str, known_user: Callable[[str], bool] | None = None) -> config.Config:
    """The configuration in `path`; Usage with config's own line when it is not valid."""
    try:
        return config.load(path, known_user=known_user or config.user_exists)
    except PgoError as e:
        raise Usage(str(e)) from None


def service(prog: str, cfg: config.Config, name: str, path: str) -> config.Service:
    """Service `name` of `cfg` (read from `path`); Usage when there is none."""
    svc = cfg.get(name)
    if svc is None:
        raise Usage(f"{prog}: no service {name!r} in {path}")
    return svc
