"""Real local ZooKeeper / etcd clusters for tests: one child process per node on 127.0.0.1.

Standard library only (no kazoo/grpc): health and leader checks use ZooKeeper's
four-letter words over TCP and etcd's plain HTTP endpoints (/health, /metrics, peer /version).
``LocalCluster(..., secure=True)`` serves TLS ports only and probes them over TLS with a
client certificate; its parts (TLS settings, users, ``client_settings()``) live in
``coordination/lab/secure.py`` and ``secure_servers.py``, its certificates are made by
``coordination/lab/certs.py``.

    with LocalCluster("etcd", nodes=3) as cluster:
        connect(cluster.url + "/shop")
        cluster.kill(cluster.leader())

Processes are tracked by pid only (never by name), each node's pid is also written to
``workdir/nodeN/server.pid`` and its output to ``workdir/nodeN/server.log``. Every
started cluster is stopped by an ``atexit`` hook, so an aborted test run does not
leave servers behind (a SIGKILLed interpreter cannot clean up, though).

A cluster can outlive the process that started it (the ``coordination cluster up``
command): ``detach()`` takes it off the ``atexit`` list and records its ports, pids and
settings in ``workdir/cluster.json``; ``LocalCluster.attach(workdir)`` in another process
re-attaches to it from that file (tracking the servers by pid, after checking that each
pid's command line names its node dir), and keeps the file up to date on every kill,
restart, pause, resume and stop.

The modules, one job each:

- ``local.py``: ``LocalCluster`` itself, built on the layers ``core.py`` (settings,
  nodes, addresses, the state file), ``health.py`` (leader, status, waiting) and
  ``faults.py`` (kill, restart, pause, isolate, heal);
- ``servers.py`` / ``secure_servers.py``: what differs between ZooKeeper and etcd
  (config, command line, probes), plaintext and TLS-only;
- ``process.py``: the server processes (launch, signal, stop, find again by pid);
- ``ports.py``: free ports; ``probes.py``: four-letter words and HTTP probes;
  ``templates.py``: the server config templates (``backends/``); ``state.py``: the
  ``cluster.json`` format.
"""

from .local import LocalCluster
from .ports import HOST, free_ports
from .probes import four_letter, http_text
from .process import pid_alive
from .servers import BACKENDS, INSTALL_HINT
from .state import STATE_FILE
from .templates import EMBEDDED_TEMPLATES, load_template

__all__ = [
    "BACKENDS",
    "EMBEDDED_TEMPLATES",
    "HOST",
    "INSTALL_HINT",
    "STATE_FILE",
    "LocalCluster",
    "four_letter",
    "free_ports",
    "http_text",
    "load_template",
    "pid_alive",
]
