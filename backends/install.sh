#!/usr/bin/env bash
# Install the servers used by coordination.lab.cluster.LocalCluster and the integration tests:
# Debian/Ubuntu packages zookeeper (jar + Java), etcd-server and etcd-client, libnetty-java
# (the Netty jars of ZooKeeper's TLS client port, LocalCluster(secure=True)), plus any
# package named on the command line (scripts/bench.sh adds redis-server). Idempotent: runs apt-get only when a package is missing. Uses sudo when not root.
set -euo pipefail

PACKAGES=(zookeeper etcd-server etcd-client libnetty-java "$@")

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install.sh: already installed: ${PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: apt-get not found; install ${missing[*]} (ZooKeeper 3.8, etcd 3.4, Java 11+) by hand" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install.sh: not root and sudo is not available; run as root" >&2
    exit 1
fi

echo "install.sh: installing ${missing[*]}"
${SUDO[@]+"${SUDO[@]}"} apt-get update
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# The Debian zookeeper package ships no server unit; LocalCluster starts its own nodes.
command -v java >/dev/null 2>&1 || { echo "install.sh: java is missing after install" >&2; exit 1; }
command -v etcd >/dev/null 2>&1 || { echo "install.sh: etcd is missing after install" >&2; exit 1; }
echo "install.sh: done"
