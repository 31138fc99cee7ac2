"""`pgod check`: validate a config; with --service NAME PATH, judge a compose project."""

from __future__ import annotations

import argparse
import sys

from pgo import config
from pgo.errors import PgoError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pgod check",
                                description="Validate a pgo config (exit 0 or 2).")
    p.add_argument("-c", "--config", default="/etc/pgo.toml")
    p.add_argument("--datadir", default="/var/lib/pgo-data")
    args = p.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except PgoError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.config}: ok, {len(cfg.services)} service(s)")
    return 0
