"""pgod: the daemon's command line (argument parsing only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from pgo import __version__, compose, config, engine, xpgo
from pgo.cli.common import Parser
from pgo.duration import parse_addr, parse_duration
from pgo.errors import PgoError
from pgo.logtext import OneLine

DEFAULT_CONFIG = "/etc/pgo.toml"
DEFAULT_DIR = "/var/lib/pgo"
DEFAULT_DATADIR = "/var/lib/pgo-data"


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"duration {text!r} is too short (1s at least)")
    return seconds


def _span(text: str) -> float:
    """A duration that may be 0 (the health gate's)."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds > xpgo.MAX_HEALTH_TIMEOUT:
        raise argparse.ArgumentTypeError(f"duration {text!r} is too long "
                                         f"({xpgo.MAX_HEALTH_TIMEOUT / 60:g}m at most)")
    return seconds


def _addr(text: str) -> tuple[str, int] | None:
    if text in ("", "off", "none"):
        return None
    try:
        return parse_addr(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="pgod",
        description="Track git repositories and keep their compose projects running. "
        "`pgod check ...` validates a config or judges a compose project; "
        "`pgod notify-test -c CONFIG NAME` sends a test notification; "
        "`pgod recipient -c CONFIG NAME` prints a service's age recipient (see pgod(8)).",
    )
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (%(default)s)")
    p.add_argument("-d", "--dir", default=DEFAULT_DIR,
                   help="directory for checkouts, stop files and state (%(default)s)")
    p.add_argument("--datadir", default=DEFAULT_DATADIR,
                   help="each service's data lives in DATADIR/NAME (%(default)s)")
    p.add_argument("-s", "--ssh", default=":2222", type=_addr,
                   help="SSH listen address (%(default)s; 'off' disables)")
    p.add_argument("-m", "--metric", default=":9112", type=_addr,
                   help="metrics and webhook listen address (%(default)s; 'off' disables)")
    p.add_argument("--status-page", default=True, type=_flag, nargs="?", const=True,
                   help="serve the status page (GET / and /status.json) on -m's listener "
                   "(default true; false turns it off)")
    p.add_argument("-t", "--duration", default="5m", type=_duration,
                   help="poll interval, Go-style: 10s, 5m, 1m30s (%(default)s)")
    p.add_argument("--health-timeout", default="2m", type=_span, metavar="DURATION",
                   help="the health gate's deadline after up, where a compose file's x-pgo "
                   "sets none (%(default)s; 0s: no gate)")
    p.add_argument("--settle", default="10s", type=_span, metavar="DURATION",
                   help="how long each container must run unchanged before a deploy counts "
                   "as healthy, where x-pgo sets none (%(default)s)")
    p.add_argument("--restart", default=True, type=_flag, nargs="?", const=True,
                   help="reload the config when the file changes (default true)")
    p.add_argument("--debug", action="store_true", help="log every command line (redacted)")
    p.add_argument("-v", "--version", action="version", version=f"pgod {__version__}")
    return p


def main(argv: list[str] | None = None) -> None:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["check"]:
        from pgo.cli import check

        sys.exit(check.main(args_list[1:]))
    if args_list[:1] == ["notify-test"]:
        from pgo.cli import notifytest

        sys.exit(notifytest.main(args_list[1:]))
    if args_list[:1] == ["recipient"]:
        from pgo.cli import recipient

        sys.exit(recipient.main(args_list[1:]))
    p = parser()
    args = p.parse_args(args_list)
    if args.health_timeout and args.settle >= args.health_timeout:
        p.error("--settle must be shorter than --health-timeout")
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s [%(levelname)s] %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:  # (one record, one line: pgo.logtext)
        handler.addFilter(OneLine())
    root_dir = Path(args.dir).absolute()
    data_dir = Path(args.datadir).absolute()
    if root_dir == Path("/") or data_dir == Path("/"):
        sys.exit(_die("pgod: refusing to use / as --dir or --datadir", 2))
    if os.geteuid() != 0:
        sys.exit(_die("pgod: must run as root (it runs each service as its own user)", 1))
    try:
        cfg = config.load(args.config)
    except PgoError as e:
        sys.exit(_die(str(e), 2))

    from pgo.daemon import Daemon, Options
    from pgo.service import Paths

    opts = Options(
        config_path=args.config,
        paths=Paths(root=root_dir, datadir=data_dir),
        interval=args.duration,
        ssh_addr=args.ssh,
        metric_addr=args.metric,
        restart=args.restart,
        compose_binary=compose.detect(),
        gate=xpgo.Settings(health_timeout=args.health_timeout, settle=args.settle),
        status_page=args.status_page,
        # (the engine's events when pgod talks to the default engine; one not up yet is
        # waited for)
        events_socket=engine.ENGINE_SOCKET if compose.engine_socket() is not None
        or not os.path.exists(engine.ENGINE_SOCKET) else None,
    )
    logging.getLogger("pgo").info("pgod %s: compose is `%s`", __version__,
                                  " ".join(opts.compose_binary))
    if os.stat(args.config).st_mode & 0o044:
        logging.getLogger("pgo").warning(
            "%s is readable by other users, and it holds every service's env values and "
            "tokens: chmod 600 it", args.config)
    if sys.version_info < (3, 12):
        # 3.11's default child watcher starts a thread per child process; a pidfd costs
        # nothing (3.12 makes it the default and deprecates choosing).
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    try:
        asyncio.run(Daemon(cfg, opts).run())
    except PgoError as e:
        sys.exit(_die(f"pgod: {e}", 1))
    except KeyboardInterrupt:
        pass


def _die(msg: str, code: int) -> int:
    print(msg, file=sys.stderr)
    return code


if __name__ == "__main__":
    main()
