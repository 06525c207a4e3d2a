#!/usr/bin/env bash
# The first command of the README: set up what is missing, then run the example on a
# local 3-node cluster that it starts and stops itself. Arguments go to the example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/first_lock.py "$@"
