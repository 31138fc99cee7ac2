#!/bin/sh
# Set up everything the tests need (dockerd included) and run every test. As root.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh --test
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q tests "$@"
