"""``imgforge keys generate`` run as a user runs it: a real process, the password in the environment."""

from __future__ import annotations

import stat
import subprocess

import pytest

from imgforge.signing import keys
from tests.conftest import run_process

PASSWORD_VARIABLES = ("IMGFORGE_SIGNING_PASSWORD", "COSIGN_PASSWORD")


def run(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``imgforge keys generate ARGS`` with only the signing password variables given here."""
    return run_process("keys", "generate", *args, cwd=tmp_path, env=env, drop=PASSWORD_VARIABLES, timeout=60)


def test_generate_writes_a_pair_cosign_can_open_and_prints_only_the_fingerprint(tmp_path, ref):
    proc = run(tmp_path, "--out", "keys", IMGFORGE_SIGNING_PASSWORD="s3cret-pw")
    assert proc.returncode == 0, proc.stderr
    private_pem = (tmp_path / "keys" / "cosign.key").read_bytes()
    public_pem = (tmp_path / "keys" / "cosign.pub").read_bytes()
    assert stat.S_IMODE((tmp_path / "keys" / "cosign.key").stat().st_mode) == 0o600
    private = ref.decrypt_cosign_key(private_pem, b"s3cret-pw")
    fp = keys.fingerprint(private.public_key())
    assert f"public key fingerprint: sha256:{fp}" in proc.stdout
    body = "".join(private_pem.decode().splitlines()[1:-1])
    output = proc.stdout + proc.stderr
    assert "s3cret-pw" not in output
    assert body[:24] not in output
    assert "PRIVATE KEY-----" not in output
    assert keys.fingerprint(keys.load_public_key(public_pem)) == fp


def test_cosign_password_is_used_when_imgforges_is_unset(tmp_path, ref):
    proc = run(tmp_path, COSIGN_PASSWORD="from-cosign")
    assert proc.returncode == 0, proc.stderr
    ref.decrypt_cosign_key((tmp_path / "cosign.key").read_bytes(), b"from-cosign")


def test_no_password_variable_is_a_usage_error(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: set IMGFORGE_SIGNING_PASSWORD (or COSIGN_PASSWORD) to the password that will encrypt cosign.key"
    )
    assert list(tmp_path.iterdir()) == []


def test_empty_password_is_refused_unless_asked_for(tmp_path, ref):
    proc = run(tmp_path, COSIGN_PASSWORD="")
    assert proc.returncode == 2
    assert "COSIGN_PASSWORD is empty" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    proc = run(tmp_path, "--allow-empty-password", COSIGN_PASSWORD="")
    assert proc.returncode == 0, proc.stderr
    ref.decrypt_cosign_key((tmp_path / "cosign.key").read_bytes(), b"")  # cosign's "no password" key


def test_existing_pair_is_refused_with_exit_10_and_left_alone(tmp_path):
    assert run(tmp_path, IMGFORGE_SIGNING_PASSWORD="a").returncode == 0
    before = (tmp_path / "cosign.key").read_bytes(), (tmp_path / "cosign.pub").read_bytes()
    proc = run(tmp_path, IMGFORGE_SIGNING_PASSWORD="b")
    assert proc.returncode == 10
    assert proc.stderr.startswith("error: ")
    assert "already exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert ((tmp_path / "cosign.key").read_bytes(), (tmp_path / "cosign.pub").read_bytes()) == before


@pytest.mark.parametrize("args", [["--bogus"], ["--out"]])
def test_bad_flags_exit_2(tmp_path, args):
    assert run(tmp_path, *args, IMGFORGE_SIGNING_PASSWORD="a").returncode == 2
