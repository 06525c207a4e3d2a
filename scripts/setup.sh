#!/usr/bin/env bash
# Install what is missing: the Debian server packages, a virtualenv in .venv, and this
# package with its extras. Idempotent and quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
# iptables: the chaos tests cut servers' peer links with it (coordination/lab/peercut.py).
# libcurator-recipes-java and a JDK: the Curator interop test (tests/interop/).
bash backends/install.sh iptables libcurator-recipes-java default-jdk-headless >/dev/null
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import coordination, kazoo, pyetcd, pytest, click, rich" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch .venv/.installed
fi
