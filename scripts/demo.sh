#!/bin/sh
# Set up pgo and run pgod in the foreground on the bundled example service. As root.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
exec sh examples/demo/run.sh
