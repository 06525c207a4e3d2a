"""Security settings: TLS, credentials and ACLs, alike in URL, TOML and environment;
secrets never in a repr or an error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordination import errors
from coordination.config import Config

SECRET = "s3cr3t:p@ss/word"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A file that exists (the config checks paths; the handshake checks contents)."""
    path = tmp_path / "x.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_url_with_user_password_and_tls_parameters(pem: Path) -> None:
    config = Config.from_url(f"etcd://app:s3cr3t%3Ap%40ss%2Fword@127.0.0.1:2379,127.0.0.1:2380/shop"
                             f"?tls=true&ca={pem}&cert={pem}&key={pem}&server_name=etcd.local"
                             "&acl=public-read&session_ttl=3")
    assert config.username == "app" and config.password == SECRET
    assert config.endpoints == ("127.0.0.1:2379", "127.0.0.1:2380")
    assert config.tls and config.ca == config.cert == config.key == str(pem)
    assert config.server_name == "etcd.local" and config.acl == "public-read"
    assert config.session_ttl == 3.0 and config.namespace == "shop"
    assert SECRET not in repr(config) and SECRET not in config.url


def test_toml_and_environment_give_the_same_settings(tmp_path: Path, pem: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    file = tmp_path / "coordination.toml"
    file.write_text(f'backend = "zookeeper"\nnamespace = "shop"\ntls = true\nca = "{pem}"\n'
                    f'username = "app"\npassword_file = "{secret_file}"\n'
                    '[zookeeper]\nhosts = ["127.0.0.1:2181"]\n')
    config = Config.from_file(file)
    assert config.password == SECRET and config.tls and config.acl == "private"
    file.write_text(file.read_text().replace(f'password_file = "{secret_file}"\n', ""))
    monkeypatch.setenv("COORDINATION_PASSWORD", SECRET)
    assert Config.from_file(file).password == SECRET
    url = Config.from_url("zk://app@127.0.0.1:2181/shop")
    assert url.password == SECRET and url.acl == "private"
    file.write_text(file.read_text().replace("tls = true\n", "tls = true\nsasl = true\n"))
    assert Config.from_file(file) == Config.from_url(
        f"zk://app@127.0.0.1:2181/shop?tls=true&ca={pem}&sasl=true")


def test_acl_defaults_to_private_with_credentials_only(pem: Path) -> None:
    assert Config.from_url("zk://127.0.0.1:2181").acl == "open"
    assert Config.from_url("zk://u:p@127.0.0.1:2181").acl == "private"
    assert Config.from_url(f"zk://127.0.0.1:2181?cert={pem}&key={pem}").acl == "private"
    assert Config.from_url(f"zk://127.0.0.1:2181?ca={pem}").tls  # a CA implies TLS


@pytest.mark.parametrize("url", [
    "etcd://u:p@h:1?tls=maybe",                 # not a bool
    "etcd://u:p@h:1?ca=/no/such/ca.pem",        # missing file
    "etcd://u:p@h:1?acl=everyone",              # unknown ACL
    "etcd://h:1?acl=private",                   # private without credentials
    "etcd://u:p@h:1?password=x",                # a password is no URL parameter
    "etcd://h:1?password_file=/no/such/file",   # missing password file
    "etcd://u:p@h:1?sasl=true",                 # SASL is ZooKeeper's
    "zk://h:1?sasl=true",                       # SASL without a user
    "zk://u:p@h:1?sasl=maybe",                  # not a bool
])
def test_bad_security_settings_are_config_errors(url: str) -> None:
    with pytest.raises(errors.ConfigError):
        Config.from_url(url)


def test_cert_and_key_together_and_password_needs_user(pem: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COORDINATION_PASSWORD", raising=False)
    with pytest.raises(errors.ConfigError, match="cert and key"):
        Config.from_url(f"etcd://h:1?cert={pem}")
    with pytest.raises(errors.ConfigError, match="needs a username"):
        Config(backend="etcd", endpoints=("h:1",), password=SECRET)
    with pytest.raises(errors.ConfigError, match="no password"):
        Config.from_url("etcd://app@h:1")


def test_errors_never_show_the_password() -> None:
    for url in (f"etcd://app:{SECRET.replace('/', '%2F')}@/nohost",
                f"nope://app:{SECRET.replace('/', '%2F')}@h:1", f"etcd://app:pw@h:1?x={SECRET}"):
        with pytest.raises(errors.ConfigError) as caught:
            Config.from_url(url)
        assert "pw" not in str(caught.value).replace("password", "")
        assert SECRET.replace("/", "%2F") not in str(caught.value)


def test_connect_url_hands_every_setting_on_without_the_secret(tmp_path: Path, pem: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET)
    config = Config.from_url(f"zk://app@127.0.0.1:2181/shop?ca={pem}&cert={pem}&key={pem}"
                             f"&password_file={secret_file}&server_name=zk.local&session_ttl=3"
                             "&sasl=true")
    assert config.sasl
    url = config.connect_url()
    assert SECRET not in url and Config.from_url(url) == config
    assert config.secret_environment() == {}
    direct = Config.from_url("etcd://u:p%40ss@127.0.0.1:2379/shop")
    assert "p%40ss" not in direct.connect_url() and "p@ss" not in direct.connect_url()
    assert direct.secret_environment() == {"COORDINATION_PASSWORD": "p@ss"}
