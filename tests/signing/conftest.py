"""Fixtures for the signing tests: the independent reference verifier, the real cosign artefacts
in data/, and one imgforge-made key pair per session (scrypt makes every key load cost ~0.1 s)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PASSWORD = b"correct horse battery staple"


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imgforge_tests_signing_reference", HERE / "reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def ref() -> ModuleType:
    """The reference verifier (tests/signing/reference.py): shares no code with imgforge."""
    return _load_reference()


@pytest.fixture(scope="session")
def data() -> SimpleNamespace:
    def read(name: str) -> bytes:
        return (DATA / name).read_bytes()

    def load(name: str) -> Any:
        return json.loads(read(name))

    return SimpleNamespace(path=DATA, read=read, json=load)


@pytest.fixture(scope="session")
def keypair() -> SimpleNamespace:
    """A pair from ``imgforge.signing.keys.generate`` and the password that opens it."""
    from imgforge.signing import keys

    private_pem, public_pem = keys.generate(PASSWORD)
    return SimpleNamespace(
        private_pem=private_pem,
        public_pem=public_pem,
        password=PASSWORD,
        private=keys.load_private_key(private_pem, PASSWORD),
        public=keys.load_public_key(public_pem),
    )
