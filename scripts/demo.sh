#!/usr/bin/env bash
# The first command of the README: set up what is missing, then run the flash-sale demo
# (`coordination demo flash-sale`) on a local 3-node cluster that it starts and stops
# itself. Arguments go to the demo, e.g. `bash scripts/demo.sh --backend zookeeper`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A demo of its own: not a cluster that ./coordination.toml or $COORDINATION_CONFIG names.
unset COORDINATION_CONFIG
cd "$(mktemp -d)"
trap 'rmdir "$PWD" 2>/dev/null || true' EXIT
"$OLDPWD/.venv/bin/coordination" demo flash-sale "$@"
