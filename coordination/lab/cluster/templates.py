"""The server config templates of the local clusters, and filling them in.

The canonical copies are the files in the repository's ``backends/`` folder (shared
with ``compose/``). A source checkout (``pip install -e .`` or ``PYTHONPATH``) reads
those; an installed wheel has no ``backends/`` folder and uses the identical copies
embedded below in ``EMBEDDED_TEMPLATES``.
``tests/test_cluster.py::test_embedded_templates_match_backends`` keeps them in sync.
"""

from __future__ import annotations

import string
from pathlib import Path

#: The repository's ``backends/`` folder (absent in an installed wheel).
REPO_BACKENDS = Path(__file__).resolve().parents[3] / "backends"

# Identical copies of backends/<name>; used only when backends/ is not next to the package.
EMBEDDED_TEMPLATES: dict[str, str] = {
    "zookeeper/zoo.cfg": """\
# ZooKeeper server config template for coordination's local test clusters.
# Rendered with Python string.Template by coordination/lab/cluster/ (one copy per node):
# each dollar-prefixed word is a placeholder the launcher fills in (a literal dollar sign
# would have to be doubled). compose/compose.yml passes the same settings through the
# image's ZOO_* variables instead.
tickTime=$tick_ms
initLimit=10
syncLimit=5
minSessionTimeout=$min_session_timeout_ms
maxSessionTimeout=60000
dataDir=$data_dir
clientPort=$client_port
clientPortAddress=$client_host
# No per-IP connection cap: every test client connects from 127.0.0.1.
maxClientCnxns=0
snapCount=10000
# Preallocate the transaction log in 1 MiB steps (default 64 MiB) to save disk.
# forceSync stays at its default (yes): acknowledged writes must survive SIGKILL.
preAllocSize=1024
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
admin.enableServer=false
4lw.commands.whitelist=srvr,mntr,ruok,stat,cons
reconfigEnabled=false
$servers
""",
    "zookeeper/log4j.properties": """\
# Quiet log4j 1.2 config for ZooKeeper (Debian's zookeeper.jar logs through slf4j-log4j12).
# Warnings and errors go to one file; quorum state changes (LOOKING/LEADING/FOLLOWING)
# stay at INFO because they explain failover timings.
# The launcher passes -Dzookeeper.log.file=<node dir>/server.log; the value below is the
# fallback used when the property is not set.
zookeeper.log.file=zookeeper.log
log4j.rootLogger=WARN, FILE
log4j.logger.org.apache.zookeeper.server.quorum.QuorumPeer=INFO
log4j.logger.org.apache.zookeeper.server.quorum.Leader=INFO
log4j.logger.org.apache.zookeeper.server.quorum.Learner=INFO
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${zookeeper.log.file}
log4j.appender.FILE.Append=true
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
""",
    "etcd/etcd.conf.yml": """\
# etcd 3.4 member config template for coordination's local test clusters.
# Rendered with Python string.Template by coordination/lab/cluster/ and passed as
# `etcd --config-file` (etcd then ignores command-line flags and ETCD_* variables).
# Each dollar-prefixed word is a placeholder the launcher fills in (a literal dollar sign
# would have to be doubled). compose/compose.yml passes the same settings as flags.
name: $name
data-dir: $data_dir
listen-client-urls: $client_url
advertise-client-urls: $client_url
listen-peer-urls: $peer_url
initial-advertise-peer-urls: $peer_url
initial-cluster: $initial_cluster
initial-cluster-token: $cluster_token
# Ignored once the data dir exists, so restarts reuse the member's data.
initial-cluster-state: new
heartbeat-interval: 100
election-timeout: 1000
# 8 GiB backend quota (etcd's recommended maximum) for large queue tests.
quota-backend-bytes: 8589934592
snapshot-count: 10000
logger: zap
log-level: info
log-outputs: [stderr]
""",
}


def load_template(name: str) -> str:
    """Text of server template ``name`` (e.g. ``"etcd/etcd.conf.yml"``), repo copy first."""
    path = REPO_BACKENDS / name
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return EMBEDDED_TEMPLATES[name]


def render(template: str, **values: object) -> str:
    """Template ``template`` with its ``$placeholders`` filled in from ``values``
    (``string.Template`` rules; KeyError if one is missing)."""
    return string.Template(load_template(template)).substitute(values)
