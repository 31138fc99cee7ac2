"""`pgod notify-test -c CONFIG NAME`: send a test message to each of NAME's notify URLs.

One line per URL, named by its scheme and place (`json:// URL #2`: the rest may hold a
token): `delivered`, or `failed: WHY` with every part of the URL taken out. Exit status 0
when every URL took the message, 1 when one did not, 2 for a usage or configuration error
(or a service without notify URLs)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pgo import notifications
from pgo.cli.common import Parser, Usage, load, service


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pgod notify-test",
               description="Send a test message to each notify URL of service NAME (its "
               "own, else the top-level default). Exit 0 all delivered, 1 one failed, "
               "2 usage or config error.")
    p.add_argument("-c", "--config", default="/etc/pgo.toml")
    p.add_argument("name", metavar="NAME", help="the service")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load(args.config)
        service("pgod notify-test", cfg, args.name, args.config)
    except Usage as e:
        print(e, file=sys.stderr)
        return 2
    urls = cfg.notify_urls(args.name)
    if not urls:
        print(f"pgod notify-test: service {args.name} has no notify URLs (its own `notify`, "
              f"or the top-level one, in {args.config})", file=sys.stderr)
        return 2
    results = asyncio.run(notifications.send_test(urls, args.name))
    for what, why in results:
        print(f"{args.name}: {what}: " + (f"failed: {why}" if why else "delivered"))
    return 1 if any(why for _, why in results) else 0
