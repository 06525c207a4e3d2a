#!/usr/bin/env bash
# The benchmark (bench/): our recipes against kazoo, etcd-sdk-python, tooz and Redis on
# local 3-node clusters, in one run. The peers live in their own virtualenv, .venv-bench,
# so the library and its tests never depend on them. Arguments go to `python -m bench`,
# e.g. `bash scripts/bench.sh --quick` or `bash scripts/bench.sh --backend etcd`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash backends/install.sh redis-server >/dev/null
if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
fi
if ! .venv-bench/bin/python -c "import coordination, kazoo, pyetcd, tooz, etcd3gw, redis, matplotlib" 2>/dev/null \
   || [ pyproject.toml -nt .venv-bench/.installed ]; then
    .venv-bench/bin/pip install --quiet --disable-pip-version-check -e '.[bench]'
    touch .venv-bench/.installed
fi
exec .venv-bench/bin/python -m bench "$@"
