"""pgoctl: the client of pgod's SSH interface."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    print("pgoctl: not implemented yet", file=sys.stderr)
    sys.exit(1)
