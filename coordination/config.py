"""Connection settings: one dataclass, read from a URL, a TOML file or the environment.

URL form: ``etcd://host:port,host:port/namespace?session_ttl=2`` (scheme ``etcd``,
``zookeeper`` or ``zk``). TOML form::

    backend = "etcd"          # or "zookeeper"
    namespace = "shop"
    session_ttl = 10          # seconds: ZooKeeper session timeout / etcd lease TTL
    [etcd]
    endpoints = ["127.0.0.1:2379"]
    [zookeeper]
    hosts = ["127.0.0.1:2181"]

Every problem raises :class:`~coordination.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigError, InvalidName
from .names import validate_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BACKENDS = ("zookeeper", "etcd")
_SCHEMES = {"zookeeper": "zookeeper", "zk": "zookeeper", "etcd": "etcd"}
_HOST_SECTION = {"zookeeper": "hosts", "etcd": "endpoints"}
DEFAULT_PORTS = {"zookeeper": 2181, "etcd": 2379}
ENV_VAR = "COORDINATION_CONFIG"
DEFAULT_FILE = "coordination.toml"
_TUNABLES = ("session_ttl", "connect_timeout", "request_timeout")


@dataclasses.dataclass(frozen=True)
class Config:
    """Validated connection settings.

    ``session_ttl``: seconds a client may be silent before the server drops its session
    (ZooKeeper session timeout, etcd lease TTL; etcd rounds it up to whole seconds and
    to its minimum TTL). ``connect_timeout``: how long :func:`coordination.connect` may
    take before raising ``BackendUnavailable``. ``request_timeout``: how long one request
    may be retried across server failover before ``BackendUnavailable``.
    """

    backend: str
    endpoints: tuple[str, ...]
    namespace: str = "default"
    session_ttl: float = 10.0
    connect_timeout: float = 10.0
    request_timeout: float = 15.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        if not self.endpoints:
            raise ConfigError("no server endpoints given")
        object.__setattr__(
            self, "endpoints", tuple(_check_endpoint(e, self.backend) for e in self.endpoints)
        )
        try:
            validate_name(self.namespace, "namespace")
        except InvalidName as exc:
            raise ConfigError(str(exc)) from None
        if self.namespace.split("/")[0] == "zookeeper":
            raise ConfigError("namespace 'zookeeper' is reserved by ZooKeeper")
        for field in _TUNABLES:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{field} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{field} must be a positive number of seconds, got {value!r}")
            object.__setattr__(self, field, float(value))

    # --- constructors ------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Config:
        """Parse ``scheme://host:port,host:port/namespace?session_ttl=..``."""
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(f"malformed URL {url!r}; expected e.g. etcd://127.0.0.1:2379/shop")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigError(f"malformed URL {url!r}: {exc}") from None
        backend = _SCHEMES.get(parts.scheme.lower())
        if backend is None:
            raise ConfigError(
                f"unknown scheme {parts.scheme!r} in {url!r}; expected etcd:// or zookeeper://"
            )
        if not parts.netloc:
            raise ConfigError(f"URL {url!r} names no host")
        settings: dict[str, Any] = {"backend": backend, "endpoints": parts.netloc.split(",")}
        namespace = parts.path.strip("/")
        if namespace:
            settings["namespace"] = namespace
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in _TUNABLES:
                raise ConfigError(f"unknown URL parameter {key!r}; known: {_TUNABLES}")
            settings[key] = _parse_number(key, value)
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **overrides: Any) -> Config:
        """Build from a parsed TOML document (see the module docstring)."""
        data = {**data, **overrides}
        if "url" in data:
            url = data.pop("url")
            return cls.from_url(url, **{k: v for k, v in data.items() if k in _TUNABLES})
        backend = data.get("backend")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        section = data.get(backend, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"[{backend}] must be a table")
        endpoints = section.get(_HOST_SECTION[backend], section.get("endpoints"))
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        if not isinstance(endpoints, list | tuple) or not all(isinstance(e, str) for e in endpoints):
            raise ConfigError(
                f"[{backend}] {_HOST_SECTION[backend]} must be a list of 'host:port' strings"
            )
        known = {"backend", "namespace", *_TUNABLES, *BACKENDS}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        settings = {k: data[k] for k in ("namespace", *_TUNABLES) if k in data}
        return cls(backend=backend, endpoints=tuple(endpoints), **settings)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> Config:
        """Read a TOML file; ``ConfigError`` if it is missing or invalid."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {str(file)!r} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {str(file)!r}: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML in {str(file)!r}: {exc}") from None
        return cls.from_mapping(data, **overrides)

    @classmethod
    def resolve(
        cls, url: str | None = None, config: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> Config:
        """The rule of :func:`coordination.connect`: URL, else file, else
        ``$COORDINATION_CONFIG``, else ``./coordination.toml``."""
        if url is not None and config is not None:
            raise ConfigError("give either a URL or a config file, not both")
        if url is not None:
            return cls.from_url(url, **overrides)
        if config is None:
            config = os.environ.get(ENV_VAR) or DEFAULT_FILE
            if not Path(config).exists():
                raise ConfigError(
                    f"no configuration: pass a URL, a config file, set ${ENV_VAR}, "
                    f"or create ./{DEFAULT_FILE} (looked for {str(config)!r})"
                )
        return cls.from_file(config, **overrides)

    # --- derived -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.backend}://{','.join(self.endpoints)}/{self.namespace}"


def _check_endpoint(endpoint: object, backend: str) -> str:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError(f"bad endpoint {endpoint!r}")
    endpoint = endpoint.strip()
    for prefix in ("http://", "https://"):
        if endpoint.startswith(prefix):
            endpoint = endpoint[len(prefix):]
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        host, port = endpoint, str(DEFAULT_PORTS[backend])
    if not host or any(c in host for c in "/?#@ "):
        raise ConfigError(f"bad endpoint {endpoint!r}; expected host:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad port in endpoint {endpoint!r}")
    return f"{host}:{int(port)}"


def _parse_number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
