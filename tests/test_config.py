"""Configuration: URL, TOML file, environment; every mistake is a ``ConfigError``."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordination import errors
from coordination.config import Config


def test_url_carries_every_setting() -> None:
    config = Config.from_url("etcd://127.0.0.1:2379,127.0.0.1:22379/shop?session_ttl=2")
    assert config.backend == "etcd"
    assert config.endpoints == ("127.0.0.1:2379", "127.0.0.1:22379")
    assert config.namespace == "shop" and config.session_ttl == 2.0
    zk = Config.from_url("zookeeper://127.0.0.1:2181,127.0.0.1:2182/shop")
    assert zk.backend == "zookeeper" and zk.session_ttl == 10.0
    assert Config.from_url("zk://localhost").endpoints == ("localhost:2181",)
    assert Config.from_url("etcd://h:1/a/b").namespace == "a/b"


def test_toml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "coordination.toml"
    file.write_text(
        'backend = "zookeeper"\nnamespace = "shop"\nsession_ttl = 4\n'
        '[etcd]\nendpoints = ["127.0.0.1:2379"]\n'
        '[zookeeper]\nhosts = ["127.0.0.1:2181", "127.0.0.1:2182"]\n'
    )
    config = Config.from_file(file)
    assert config.backend == "zookeeper"
    assert config.endpoints == ("127.0.0.1:2181", "127.0.0.1:2182")
    assert config.session_ttl == 4.0 and config.namespace == "shop"
    monkeypatch.setenv("COORDINATION_CONFIG", str(file))
    assert Config.resolve() == config
    monkeypatch.delenv("COORDINATION_CONFIG")
    monkeypatch.chdir(tmp_path)  # ./coordination.toml
    assert Config.resolve() == config
    assert Config.resolve(config=file, session_ttl=7).session_ttl == 7.0


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/shop",  # unknown scheme
        "127.0.0.1:2379",  # no scheme
        "etcd:///shop",  # no host
        "etcd://127.0.0.1:notaport/shop",
        "etcd://127.0.0.1:99999/shop",
        "etcd://127.0.0.1:2379/shop?session_ttl=0",
        "etcd://127.0.0.1:2379/shop?session_ttl=-1",
        "etcd://127.0.0.1:2379/shop?session_ttl=abc",
        "etcd://127.0.0.1:2379/shop?color=red",  # unknown parameter
        "etcd://127.0.0.1:2379/sh..op",
        "zookeeper://127.0.0.1:2181/zookeeper",  # reserved
        "etcd://127.0.0.1:2379/a//b",
        12,
    ],
)
def test_bad_urls(url: object) -> None:
    with pytest.raises(errors.ConfigError):
        Config.from_url(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "backend = ",  # invalid TOML
        'backend = "redis"\n',
        'backend = "etcd"\n',  # no endpoints
        'backend = "etcd"\nsession_ttl = 0\n[etcd]\nendpoints = ["a:1"]\n',
        'backend = "etcd"\nsession_ttl = "ten"\n[etcd]\nendpoints = ["a:1"]\n',
        'backend = "etcd"\n[etcd]\nendpoints = [1]\n',
        'backend = "etcd"\nsurprise = 1\n[etcd]\nendpoints = ["a:1"]\n',
    ],
)
def test_bad_files(tmp_path: Path, text: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(errors.ConfigError):
        Config.from_file(file)


def test_missing_file_and_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.ConfigError, match="not found"):
        Config.from_file(tmp_path / "nope.toml")
    monkeypatch.delenv("COORDINATION_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.ConfigError, match="no configuration"):
        Config.resolve()
    with pytest.raises(errors.ConfigError):
        Config.resolve("etcd://a:1", config="x.toml")


def test_config_errors_are_typed() -> None:
    assert issubclass(errors.ConfigError, errors.CoordinationError)
    assert issubclass(errors.ConfigError, ValueError)
