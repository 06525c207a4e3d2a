#!/usr/bin/env bash
# The test command of the README (and of .ci/run): set up what is missing, then run the
# whole suite against real local 3-node ZooKeeper and etcd clusters.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k lock --coordination-backend etcd`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
