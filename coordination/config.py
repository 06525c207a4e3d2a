"""Connection settings: one dataclass, read from a URL, a TOML file or the environment.

URL form: ``etcd://host:port,host:port/namespace?session_ttl=2`` (scheme ``etcd``,
``zookeeper`` or ``zk``), with ``user:password@`` before the hosts and the security
settings as parameters (``?tls=true&ca=/etc/ca.pem``). TOML form::

    backend = "etcd"          # or "zookeeper"
    namespace = "shop"
    session_ttl = 10          # seconds: ZooKeeper session timeout / etcd lease TTL
    tls = true                # and ca, cert, key, key_password, server_name
    username = "shop"         # and password, or password_file, or $COORDINATION_PASSWORD
    sasl = true               # ZooKeeper: SASL DIGEST-MD5 instead of digest auth
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
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

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
#: Security settings that a URL may carry as parameters (secrets may not: a password
#: goes in ``user:password@``, a file or the environment; a key password in TOML).
_URL_SECURITY = ("tls", "ca", "cert", "key", "server_name", "password_file", "acl", "sasl")
_FLAGS = ("tls", "sasl")
_SECURITY = (*_URL_SECURITY, "username", "password", "key_password")
PASSWORD_ENV = "COORDINATION_PASSWORD"
KEY_PASSWORD_ENV = "COORDINATION_KEY_PASSWORD"
#: ZooKeeper ACLs of the nodes we create: ``private`` (only identities of the creating
#: session), ``public-read`` (private, and anyone may read), ``open`` (anyone may do
#: anything: ZooKeeper's OPEN_ACL_UNSAFE). Default: private once credentials are given.
ACLS = ("private", "public-read", "open")


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
    #: TLS to the servers; implied by ``ca``, ``cert`` or ``key``. The server's
    #: certificate must be signed by ``ca`` (else the system's CAs) and issued to the
    #: host we connect by, or to ``server_name``. ``cert``/``key``: our client certificate.
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    key_password: str | None = dataclasses.field(default=None, repr=False)
    server_name: str | None = None
    #: etcd user / ZooKeeper digest identity. ``password_file``: read the password from
    #: there; with neither, ``$COORDINATION_PASSWORD``.
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    password_file: str | None = None
    #: ZooKeeper ACL of the nodes we create (see ``ACLS``); None: private once
    #: credentials (a username or a client certificate) are given, else open.
    acl: str | None = None
    #: ZooKeeper: authenticate ``username``/``password`` by SASL DIGEST-MD5 (for
    #: ensembles that require SASL) instead of a digest auth packet.
    sasl: bool = False

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
        self._check_security()

    def _check_security(self) -> None:
        for field in ("ca", "cert", "key", "key_password", "server_name", "username",
                      "password", "password_file"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{field} must be a non-empty string")
        for flag in _FLAGS:
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        for field in ("ca", "cert", "key"):
            path = getattr(self, field)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{field} file {path!r} not found")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("cert and key go together: give both or neither")
        if self.ca or self.cert or self.server_name:
            object.__setattr__(self, "tls", True)
        if self.key_password is None and self.key is not None:
            object.__setattr__(self, "key_password", os.environ.get(KEY_PASSWORD_ENV) or None)
        if self.password is not None and self.password_file is not None:
            raise ConfigError("give password or password_file, not both")
        if self.password_file is not None:
            object.__setattr__(self, "password", _read_secret(self.password_file))
        elif self.password is None and self.username is not None:
            object.__setattr__(self, "password", os.environ.get(PASSWORD_ENV) or None)
        if self.password is not None and self.username is None:
            raise ConfigError("a password needs a username")
        if self.username is not None and self.password is None:
            raise ConfigError(f"no password for user {self.username!r}: set password, "
                              f"password_file or ${PASSWORD_ENV}")
        if self.sasl and self.backend != "zookeeper":
            raise ConfigError("sasl is a ZooKeeper setting (etcd authenticates username "
                              "and password itself)")
        if self.sasl and self.username is None:
            raise ConfigError("sasl needs a username and a password")
        if self.acl is None:
            object.__setattr__(self, "acl", "private" if self.has_credentials else "open")
        elif self.acl not in ACLS:
            raise ConfigError(f"acl must be one of {ACLS}, got {self.acl!r}")
        elif self.acl != "open" and not self.has_credentials:
            raise ConfigError(f"acl {self.acl!r} needs credentials (username or a client cert)")

    @property
    def has_credentials(self) -> bool:
        """A username, or a client certificate (etcd and ZooKeeper's x509 identity)."""
        return self.username is not None or self.cert is not None

    # --- constructors ------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Config:
        """Parse ``scheme://host:port,host:port/namespace?session_ttl=..``."""
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(f"malformed URL {_redact(url)!r}; expected e.g. "
                              "etcd://127.0.0.1:2379/shop")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigError(f"malformed URL {_redact(url)!r}: {exc}") from None
        backend = _SCHEMES.get(parts.scheme.lower())
        if backend is None:
            raise ConfigError(f"unknown scheme {parts.scheme!r} in {_redact(url)!r}; "
                              "expected etcd:// or zookeeper://")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        if not hosts:
            raise ConfigError(f"URL {_redact(url)!r} names no host")
        settings: dict[str, Any] = {"backend": backend, "endpoints": hosts.split(",")}
        if userinfo:
            username, has_password, password = userinfo.partition(":")
            settings["username"] = unquote(username)
            if has_password:
                settings["password"] = unquote(password)
        namespace = parts.path.strip("/")
        if namespace:
            settings["namespace"] = namespace
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _TUNABLES:
                settings[key] = _parse_number(key, value)
            elif key in _FLAGS:
                settings[key] = _parse_bool(key, value)
            elif key in _URL_SECURITY:
                settings[key] = value
            else:
                raise ConfigError(f"unknown URL parameter {key!r}; known: "
                                  f"{(*_TUNABLES, *_URL_SECURITY)}")
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **overrides: Any) -> Config:
        """Build from a parsed TOML document (see the module docstring)."""
        data = {**data, **overrides}
        if "url" in data:
            url = data.pop("url")
            return cls.from_url(url, **{k: v for k, v in data.items()
                                        if k in (*_TUNABLES, *_SECURITY)})
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
        known = {"backend", "namespace", *_TUNABLES, *_SECURITY, *BACKENDS}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        settings = {k: data[k] for k in ("namespace", *_TUNABLES, *_SECURITY) if k in data}
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

    def connect_url(self) -> str:
        """A URL with every setting, to hand to another process, secrets left out: the
        password goes by its ``password_file``, else by ``$COORDINATION_PASSWORD``, a key
        password by ``$COORDINATION_KEY_PASSWORD`` (see ``secret_environment``)."""
        params: dict[str, Any] = {name: f"{getattr(self, name):g}" for name in _TUNABLES}
        for flag in _FLAGS:
            if getattr(self, flag):
                params[flag] = "true"
        for name in ("ca", "cert", "key", "server_name", "password_file", "acl"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        return (f"{self.backend}://{user}{','.join(self.endpoints)}/{self.namespace}"
                f"?{urlencode(params)}")

    def secret_environment(self) -> dict[str, str]:
        """The environment a process given ``connect_url()`` needs for the secrets."""
        env = {}
        if self.password is not None and self.password_file is None:
            env[PASSWORD_ENV] = self.password
        if self.key_password is not None:
            env[KEY_PASSWORD_ENV] = self.key_password
        return env


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


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _read_secret(path: str) -> str:
    """The first line of ``path``, for a password kept out of the config file."""
    try:
        secret = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"password_file {path!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read password_file {path!r}: {type(exc).__name__}") from None
    if not secret or not secret[0]:
        raise ConfigError(f"password_file {path!r} is empty")
    return secret[0]


def _redact(url: object) -> object:
    """``url`` with the password of ``user:password@`` replaced, for error messages."""
    if not isinstance(url, str):
        return url
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    if not at or ":" not in userinfo or "/" in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hosts}"


def _parse_number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
