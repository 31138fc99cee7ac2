"""`pgod recipient -c CONFIG [-d DIR] NAME`: print service NAME's age recipient, one line.

The recipient is what a team encrypts its SOPS documents for (`sops encrypt --age age1...`).
It is read from the operator's `age_identity` file, or from the service's own identity in
DIR/.pgo/services/NAME/age.key, which is made now when there is none yet, as pgod would
make it. Exit status: 0 printed, 1 the identity can not be read or made, 2 usage or
configuration error (one line, on standard error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pgo.cli.common import Parser, Usage, load, service
from pgo.errors import SecretError


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="pgod recipient",
               description="Print service NAME's age recipient (made on first need), the "
               "key a team encrypts its SOPS documents for.")
    p.add_argument("-c", "--config", default="/etc/pgo.toml")
    p.add_argument("-d", "--dir", default="/var/lib/pgo",
                   help="pgod's --dir: the service's identity is DIR/.pgo/services/NAME/age.key")
    p.add_argument("name", metavar="NAME", help="the service")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        svc = service("pgod recipient", load(args.config), args.name, args.config)
    except Usage as e:
        print(e, file=sys.stderr)
        return 2
    from pgo.secrets import identity
    from pgo.service import Paths

    private = Paths(root=Path(args.dir).absolute(), datadir=Path("/")).private(svc.name)
    try:
        ids = identity.for_service(svc, private)
    except SecretError as e:
        print(f"pgod recipient: {svc.name}: {e}", file=sys.stderr)
        return 1
    print(ids.recipient)
    return 0
