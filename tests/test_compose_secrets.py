"""compose/make_secrets.py writes what compose/secure.yml mounts, certificates that name
the compose hosts, and client configs that hold no password. (The compose file itself
needs Docker, which the test machines do not have: see compose/README.md.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from coordination.config import Config

COMPOSE = Path(__file__).resolve().parent.parent / "compose"
x509 = pytest.importorskip("cryptography.x509")


def _make_secrets(directory: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_secrets", COMPOSE / "make_secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(directory)


def test_secrets_match_the_compose_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    _make_secrets(secrets)
    mounted = set(re.findall(r"/secrets/([\w.-]+)", (COMPOSE / "secure.yml").read_text()))
    assert mounted and all((secrets / name).is_file() for name in mounted), mounted
    cert = x509.load_pem_x509_certificate((secrets / "node0.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"zk1", "zk2", "zk3", "etcd1", "etcd2", "etcd3", "localhost"} <= set(
        names.get_values_for_type(x509.DNSName))
    jaas = (secrets / "zookeeper-jaas.conf").read_text()
    for identity, user in (("root", "super"), ("app", "app"), ("other", "other")):
        password = (secrets / f"{identity}.password").read_text().strip()
        assert f'user_{user}="{password}"' in jaas
        for config in secrets.glob("coordination-*.toml"):
            assert password not in config.read_text()
        assert (secrets / f"{identity}.password").stat().st_mode & 0o077 == 0
    for backend in ("zookeeper", "etcd"):
        config = Config.from_file(secrets / f"coordination-{backend}.toml")
        assert config.backend == backend and config.tls and config.username == "app"
        assert config.password == (secrets / "app.password").read_text().strip()


def test_help_is_help_not_a_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(COMPOSE / "make_secrets.py"), "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: make_secrets.py" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # nothing made, no directory named --help
