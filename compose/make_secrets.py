"""The secrets of compose/secure.yml, made once into compose/secrets/ (or DIR).

    .venv/bin/python compose/make_secrets.py [DIR]

Writes, with the same code as ``LocalCluster(secure=True)`` (coordination/lab/certs.py,
coordination/lab/secure.py):

- ``ca.pem``: a throwaway CA (its key is not kept); ``node0.pem``/``node0-key.pem``/
  ``node0-bundle.pem``: the one server certificate of all six containers, DNS names
  zk1-3 and etcd1-3 (peer TLS) plus localhost and IP 127.0.0.1 (clients on the host);
- ``client-<identity>.pem``/``-key.pem`` for ``root``, ``app``, ``other`` (CN = the name);
- ``<identity>.password``: random passwords; ``zookeeper-jaas.conf``: ZooKeeper's SASL
  users (``super`` is root there);
- ``coordination-zookeeper.toml``, ``coordination-etcd.toml``: the ``app`` user's
  config for clients on the host (``password_file``, never the password).

Keys, passwords and the JAAS file are mode 0600, except what the ZooKeeper containers
read: they run as uid/gid 1000, so those files get group 1000 and mode 0640 (when this
user may set that group; otherwise the command to run is printed). Files already there
are kept: delete the directory to start anew.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from coordination.lab import certs
from coordination.lab.secure import (
    IDENTITIES,
    ZOOKEEPER_SUPER,
    ensure_password,
    write_private,
    zookeeper_jaas,
)

HOSTS = ("zk1", "zk2", "zk3", "etcd1", "etcd2", "etcd3")
#: Published client ports of compose/secure.yml.
ENDPOINTS = {"zookeeper": ["127.0.0.1:2281", "127.0.0.1:2282", "127.0.0.1:2283"],
             "etcd": ["127.0.0.1:2479", "127.0.0.1:2480", "127.0.0.1:2481"]}
#: The uid/gid the official zookeeper image runs its server as.
ZOOKEEPER_GID = 1000


def main(directory: Path) -> None:
    files = certs.ensure(directory, nodes=1, clients=IDENTITIES, names=HOSTS)
    passwords = {}
    for identity in IDENTITIES:
        path = directory / f"{identity}.password"
        ensure_password(path)
        passwords[ZOOKEEPER_SUPER if identity == "root" else identity] = (
            path.read_text().strip())
    jaas = directory / "zookeeper-jaas.conf"
    write_private(jaas, zookeeper_jaas(passwords))
    for backend, endpoints in ENDPOINTS.items():
        hosts = "hosts" if backend == "zookeeper" else "endpoints"
        (directory / f"coordination-{backend}.toml").write_text("\n".join([
            "# compose/secure.yml, as the app user (written by compose/make_secrets.py)",
            f"backend = {json.dumps(backend)}",
            'namespace = "app"',
            "tls = true",
            f"ca = {json.dumps(str(files.ca.resolve()))}",
            f"cert = {json.dumps(str(files.client_cert('app').resolve()))}",
            f"key = {json.dumps(str(files.client_key('app').resolve()))}",
            'username = "app"',
            f"password_file = {json.dumps(str((directory / 'app.password').resolve()))}",
            f"[{backend}]",
            f"{hosts} = {json.dumps(endpoints)}",
            "",
        ]))
    shared = [files.ca, files.node_bundle(0), jaas]
    try:
        for path in [files.dir, *shared]:
            os.chown(path, -1, ZOOKEEPER_GID)
            os.chmod(path, 0o750 if path.is_dir() else 0o640)
    except PermissionError:
        names = " ".join(str(p) for p in [files.dir, *shared])
        print(f"the ZooKeeper containers (gid {ZOOKEEPER_GID}) must read these; run:\n"
              f"  sudo chgrp {ZOOKEEPER_GID} {names} && chmod g+rX {names}", file=sys.stderr)
    print(f"secrets in {directory}; clients on this host: "
          f"--config {directory}/coordination-zookeeper.toml (or -etcd.toml)")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make_secrets.py", description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", type=Path,
                        default=Path(__file__).parent / "secrets",
                        help="where the secrets go (default: compose/secrets)")
    main(parser.parse_args(argv).directory)


if __name__ == "__main__":
    cli()
