"""Key files: imgforge's cosign.key/cosign.pub against an independent reader and against key files
cosign and go-securesystemslib wrote themselves."""

from __future__ import annotations

import base64
import json
import os
import stat

import nacl.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imgforge.errors import KeyExists, KeyFileError, WrongPassword
from imgforge.signing import _secretbox, keys

COSIGN_TEST_PASSWORD = "hello"  # the password cosign's keys_test.go uses for its fixtures


def pem_json(pem: bytes) -> dict:
    lines = pem.decode().strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


# --- what imgforge writes, read independently ----------------------------------------------------


def test_generated_key_file_is_cosigns_format_field_for_field(keypair):
    lines = keypair.private_pem.decode().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert all(len(line) == 64 for line in lines[1:-2])
    assert 0 < len(lines[-2]) <= 64
    doc = pem_json(keypair.private_pem)
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert list(doc["kdf"]["params"]) == ["N", "r", "p"]
    assert len(base64.b64decode(doc["kdf"]["salt"], validate=True)) == 32
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["cipher"]["nonce"], validate=True)) == 24
    # standard alphabet with padding, as Go's json.Marshal writes []byte
    assert "-" not in doc["ciphertext"]
    assert "_" not in doc["ciphertext"]
    assert len(doc["ciphertext"]) % 4 == 0


def test_reference_reader_opens_imgforge_key_and_finds_the_public_key(keypair, ref):
    private = ref.decrypt_cosign_key(keypair.private_pem, keypair.password)
    assert isinstance(private.curve, ec.SECP256R1)
    public = ref.public_key(keypair.public_pem)
    assert private.public_key().public_numbers() == public.public_numbers()


def test_public_key_file_is_spki_pem(keypair):
    text = keypair.public_pem.decode()
    assert text.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert text.endswith("-----END PUBLIC KEY-----\n")
    assert isinstance(serialization.load_pem_public_key(keypair.public_pem), ec.EllipticCurvePublicKey)


def test_fingerprint_is_sha256_of_der_spki(keypair):
    import hashlib

    der = serialization.load_pem_public_key(keypair.public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert keys.fingerprint(keypair.public) == hashlib.sha256(der).hexdigest()
    assert keys.fingerprint(keypair.private) == keys.fingerprint(keypair.public)


# --- what cosign wrote, read by imgforge ----------------------------------------------------------


@pytest.mark.parametrize("name", ["cosign-keys_test-sigstore.key", "cosign-keys_test-cosign-pemtype.key"])
def test_key_files_made_by_cosign_load_as_they_are(name, data, ref):
    pem = data.read(name)
    key = keys.load_private_key(pem, COSIGN_TEST_PASSWORD, name)
    expected = ref.decrypt_cosign_key(pem, COSIGN_TEST_PASSWORD.encode())
    assert key.private_numbers() == expected.private_numbers()


def test_cosign_key_with_sec1_plaintext_is_refused_like_cosign_refuses_it(data, ref):
    pem = data.read("cosign-keys_test-cosign-sec1.key")
    # the password is right (the independent reader decrypts it) ...
    with pytest.raises(nacl.exceptions.CryptoError):
        ref.decrypt_cosign_key(pem, b"wrong")
    ref.decrypt_cosign_key(pem, COSIGN_TEST_PASSWORD.encode())
    with pytest.raises(KeyFileError, match="not PKCS#8"):
        keys.load_private_key(pem, COSIGN_TEST_PASSWORD, "sec1.key")


def test_go_securesystemslib_encrypt_vector_decrypts(data):
    vectors = data.json("go-securesystemslib-encrypted-vectors.json")
    doc = json.dumps(vectors["decrypt"]).encode()
    assert _secretbox.decrypt(doc, vectors["passphrase"].encode(), "vector") == vectors["plaintext"].encode()


@pytest.mark.parametrize("strength", ["legacy", "standard", "owasp"])
def test_go_securesystemslib_kdf_strength_vectors_decrypt(strength, data):
    vectors = data.json("go-securesystemslib-encrypted-vectors.json")
    doc = json.dumps(vectors["marshaled"][strength]).encode()
    plaintext = _secretbox.decrypt(doc, vectors["passphrase"].encode(), strength)
    assert base64.b64decode(json.loads(plaintext)) == vectors["plaintext"].encode()  # encrypted.Marshal's JSON


def test_unsupported_scrypt_parameters_are_refused_before_any_work(data):
    vectors = data.json("go-securesystemslib-encrypted-vectors.json")
    doc = json.dumps(vectors["unsupported_params"]).encode()
    with pytest.raises(KeyFileError, match="unsupported scrypt parameters"):
        _secretbox.decrypt(doc, vectors["passphrase"].encode(), "vector")


def test_huge_scrypt_cost_is_refused(keypair):
    doc = pem_json(keypair.private_pem)
    doc["kdf"]["params"]["N"] = 2**30  # a hostile file asking for 1 TiB of memory
    pem = keys.pem_encode(keys.SIGSTORE_PEM_TYPE, json.dumps(doc).encode())
    with pytest.raises(KeyFileError, match="unsupported scrypt parameters"):
        keys.load_private_key(pem, keypair.password)


# --- failures: clear, typed, and never showing key material --------------------------------------


def test_wrong_password_is_a_clear_error_without_key_material(keypair):
    with pytest.raises(WrongPassword) as info:
        keys.load_private_key(keypair.private_pem, b"not the password", "ci/cosign.key")
    message = str(info.value)
    assert message.startswith("ci/cosign.key: wrong password")
    body = "".join(keypair.private_pem.decode().splitlines()[1:-1])
    assert not any(chunk in message for chunk in (body[:16], body[-16:], "not the password"))
    assert info.value.exit_code == 2


def test_tampered_ciphertext_is_refused(keypair):
    doc = pem_json(keypair.private_pem)
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[20] ^= 0x01
    doc["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(WrongPassword):
        keys.load_private_key(keys.pem_encode(keys.SIGSTORE_PEM_TYPE, json.dumps(doc).encode()), keypair.password)


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"", "no BEGIN line"),
        (b"\xff\xfe", "non-ASCII"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM type 'PRIVATE KEY'"),
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n", "no '-----END"),
        (
            b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n!!!!\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            "not base64",
        ),
        (
            b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGpzb24=\n"
            b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            "not JSON",
        ),
        (b"-" * 70000, "too large"),
    ],
)
def test_unreadable_key_files_are_one_line_errors(pem, message):
    with pytest.raises(KeyFileError, match=message):
        keys.load_private_key(pem, "pw", "cosign.key")


def test_field_errors_name_the_field(keypair):
    for path, value, message in [
        (("cipher", "name"), "aes", "cipher.name"),
        (("kdf", "salt"), "%%", "kdf.salt"),
        (("cipher", "nonce"), "AAAA", "cipher.nonce: expected 24 bytes"),
    ]:
        doc = pem_json(keypair.private_pem)
        doc[path[0]][path[1]] = value
        with pytest.raises(KeyFileError, match=message):
            keys.load_private_key(keys.pem_encode(keys.SIGSTORE_PEM_TYPE, json.dumps(doc).encode()), keypair.password)


def test_non_p256_keys_are_refused_by_name():
    rsa_pub = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx5piWVlE62NnZ0UzJ8Z6
oKiKOC4dbOZ1HsNhIRtqkM+Oq4G+25yq6P+0JU/Qvr9veOGEb3R/J9u8JBo+hv2i
5X8OtgvP2V2pi6f1s6vK7L0+6uRb4YTT/UdMshaVf97MgEqbq41Jf/cuvh+3AV0t
Z1BpixZg4aXMKpY6HUP69lbsu27oSUN1myMv7TSgZiV4CYs3l/gkEfpysBptWlcH
Ruw5RsB+C0RbjRtbJ/5VxmE/vd3Mlafd5t1WSpMb8yf0a84u5NFaXwZ7CweMfXeO
ddS0yb19ShSuW3PPRadruBM1mq15js9GfagPxDS75Imcs+fA62lWvHxEujTGjYHx
awIDAQAB
-----END PUBLIC KEY-----
"""
    with pytest.raises(KeyFileError, match="RSA key: imgforge verifies ECDSA P-256"):
        keys.load_public_key(rsa_pub, "rsa.pub")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyFileError, match="secp384r1 key: imgforge signs with ECDSA P-256"):
        keys.load_private_key(keys.encrypt_private_key(p384, "pw"), "pw")


def test_older_cosign_pem_type_is_read(keypair):
    pem = keys.encrypt_private_key(keypair.private, "pw", keys.COSIGN_PEM_TYPE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n")
    assert keys.load_private_key(pem, "pw").private_numbers() == keypair.private.private_numbers()


def test_key_objects_do_not_show_material_in_repr(keypair):
    d = format(keypair.private.private_numbers().private_value, "x")
    assert d not in repr(keypair.private)
    assert d[:12] not in repr(keys.password_from_env({"COSIGN_PASSWORD": d}))


# --- password from the environment ---------------------------------------------------------------


def test_password_prefers_imgforge_variable_then_cosigns():
    both = keys.password_from_env({"IMGFORGE_SIGNING_PASSWORD": "a", "COSIGN_PASSWORD": "b"})
    assert both is not None
    assert (both.value, both.variable) == (b"a", "IMGFORGE_SIGNING_PASSWORD")
    only = keys.password_from_env({"COSIGN_PASSWORD": "b"})
    assert only is not None
    assert (only.value, only.variable) == (b"b", "COSIGN_PASSWORD")
    empty = keys.password_from_env({"IMGFORGE_SIGNING_PASSWORD": "", "COSIGN_PASSWORD": "b"})
    assert empty is not None
    assert empty.value == b""
    assert empty.variable == "IMGFORGE_SIGNING_PASSWORD"
    assert keys.password_from_env({}) is None


# --- writing a pair -------------------------------------------------------------------------------


def test_write_key_pair_modes_and_contents(tmp_path, ref):
    pair = keys.write_key_pair(tmp_path / "new", "pw")
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.public_path.stat().st_mode) == 0o644
    private = ref.decrypt_cosign_key(pair.private_path.read_bytes(), b"pw")
    assert keys.fingerprint(private.public_key()) == pair.fingerprint
    assert keys.fingerprint(keys.load_public_key(pair.public_path.read_bytes())) == pair.fingerprint


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_modes_do_not_depend_on_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        pair = keys.write_key_pair(tmp_path, "pw")
    finally:
        os.umask(old)
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.public_path.stat().st_mode) == 0o644


@pytest.mark.parametrize("existing", ["cosign.key", "cosign.pub"])
def test_existing_key_files_are_never_overwritten(tmp_path, existing):
    (tmp_path / existing).write_text("precious\n")
    with pytest.raises(KeyExists, match=f"{existing} already exist"):
        keys.write_key_pair(tmp_path, "pw")
    assert (tmp_path / existing).read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # nothing half written


def test_a_dangling_symlink_named_cosign_key_is_not_followed(tmp_path):
    (tmp_path / "cosign.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyExists):
        keys.write_key_pair(tmp_path, "pw")
    assert not (tmp_path / "elsewhere").exists()


def test_a_file_appearing_after_the_check_is_still_not_overwritten(tmp_path, monkeypatch):
    real_generate = keys.generate

    def racing_generate(password):  # another process writes cosign.pub while we generate
        (tmp_path / "cosign.pub").write_text("theirs\n")
        return real_generate(password)

    monkeypatch.setattr(keys, "generate", racing_generate)
    with pytest.raises(KeyExists):
        keys.write_key_pair(tmp_path, "pw")
    assert (tmp_path / "cosign.pub").read_text() == "theirs\n"
    assert not (tmp_path / "cosign.key").exists()  # ours was removed again


def test_out_path_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match="cannot write the key pair"):
        keys.write_key_pair(tmp_path / "file", "pw")
