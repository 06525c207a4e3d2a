"""The etcd driver (etcd-sdk-python): ``EtcdBackend``.

``backend.py`` contenders and paths, ``connection.py`` the client and the error
boundary, ``leases.py`` sessions and their keepalive, ``kv.py`` the key-value store,
``dirs.py`` its directory markers, ``auth.py`` TLS channels and tokens, ``compat.py``
pyetcd's private API.
"""

from .backend import EtcdBackend

__all__ = ["EtcdBackend"]
