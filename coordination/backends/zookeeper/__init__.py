"""The ZooKeeper driver (kazoo): ``ZooKeeperBackend``.

``backend.py`` contenders and paths, ``connection.py`` the client, its sessions and the
error boundary, ``kv.py`` the key-value store, ``layout.py`` contender node names,
``security.py`` TLS, authentication and ACLs, ``compat.py`` kazoo's private API.
"""

from .backend import ZooKeeperBackend

__all__ = ["ZooKeeperBackend"]
