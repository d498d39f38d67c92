"""oci builds through the CLI: build --test (docker load, nginx -t, the 16 checks), push, release.

The registry is the real ``docker-registry`` the registry tests start; the pushed image is read
back with the registry client and compared with the layout it came from.
"""

from __future__ import annotations

import base64
import json

import pytest

from imgforge import config
from imgforge.oci import store
from imgforge.oci.transfer import layout_top
from imgforge.registry import RegistryClient

pytestmark = [pytest.mark.docker, pytest.mark.registry]


@pytest.fixture
def site(basic_registry, make_catalog, registry_env, unique_repo, monkeypatch, cleanup_images):
    registry_env(basic_registry)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    repo = unique_repo("oci")
    image = f"{basic_registry.host}/{repo}"
    root = make_catalog(sites={"web": {"image": image, "tag": "v0.1.0", "builder": "oci"}})
    cleanup_images += [f"{image}:v0.1.0", f"{image}:v0.1.1"]
    return root, image, repo


def test_build_test_push_and_release_without_the_engine_building_anything(site, cli_main, basic_registry):
    root, _image, repo = site
    code, out, err = cli_main("build", "web", "--test", "--json", "--root", str(root))
    assert code == 0, err
    row = json.loads(out)
    assert row["builder"] == "oci"
    assert row["test"]["ok"], row["test"]
    assert {c["name"] for c in row["test"]["checks"]} >= {"content_served", "no_setuid", "processes"}

    code, out, err = cli_main("push", "web", "--json", "--root", str(root))
    assert code == 0, err
    pushed = json.loads(out)
    catalog = config.load_catalog(root)
    top = layout_top(catalog.site("web"))
    assert pushed["digest"] == top["digest"]
    with RegistryClient(basic_registry.host) as client:
        data, _, digest = client.get_manifest(repo, "v0.1.0")
    assert digest == top["digest"]
    assert data == store.read_blob(top["digest"])  # the registry serves the layout's bytes

    # Pushed again under another tag: every blob is there already, nothing is uploaded.
    code, out, err = cli_main("push", "web", "--tag", "candidate", "--json", "--root", str(root))
    assert code == 0, err

    code, out, err = cli_main("release", "web", "--patch", "--json", "--root", str(root))
    assert code == 0, err
    released = json.loads(out)
    assert released["tag"] == "v0.1.1"
    assert config.load_catalog(root).site("web").tag == "v0.1.1"
    with RegistryClient(basic_registry.host) as client:
        assert client.manifest_digest(repo, "v0.1.1") == released["digest"]


def test_push_refuses_an_oci_build_never_tested(site, cli_main):
    root, _, _ = site
    assert cli_main("build", "web", "--root", str(root))[0] == 0
    code, _, err = cli_main("push", "web", "--root", str(root))
    assert code == 10
    assert "was never tested" in err


def test_push_sends_only_what_the_registry_lacks(site, basic_registry):
    """The second push HEADs every blob (the Debian base layer is over 8 MiB: a HEAD's
    Content-Length is a size, not a body to cap) and sends nothing."""
    from imgforge.oci import build_site_oci, push

    root, _, _repo = site
    catalog = config.load_catalog(root)
    web = catalog.site("web")
    build_site_oci(catalog, web)
    first = push(web, ["v0.1.0"])
    again = push(web, ["v0.1.0"])
    assert first.bytes_uploaded > 0
    assert len(first.uploaded) >= 4
    assert (again.bytes_uploaded, again.uploaded) == (0, [])
    assert len(again.present) == len(first.uploaded) + len(first.present) + len(first.mounted)


def test_test_all_loads_the_oci_builds_first(site, cli_main):
    root, _, _ = site
    assert cli_main("build", "web", "--root", str(root))[0] == 0
    code, out, err = cli_main("test", "--all", "--json", "--root", str(root))
    assert code == 0, err
    assert [r["ok"] for r in json.loads(out)] == [True]


def test_an_oci_release_is_signed_and_verifies_like_a_docker_one(site, cli_main, basic_registry, tmp_path, monkeypatch):
    """The oci builder's push goes through the same signing step: signature, SBOM, provenance (naming
    the base digest the build recorded) and the test report, and ``imgforge verify`` accepts them."""
    from tests.proof.conftest import make_keys

    root, image, _repo = site
    keys = make_keys(tmp_path / "keys")
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(keys.private))
    monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", keys.password.decode())
    code, out, err = cli_main("release", "web", "--patch", "--json", "--root", str(root))
    assert code == 0, err
    released = json.loads(out)
    assert released["signed"] is not None, released
    assert released["signed"]["fingerprint"] == keys.fingerprint

    code, out, err = cli_main("verify", f"{image}:v0.1.1", "--key", str(keys.public), "--json")
    assert code == 0, (out, err)
    facts = json.loads(out)
    assert facts["ok"] is True, facts

    catalog = config.load_catalog(root)
    built = json.loads(store.read_blob(layout_top(catalog.site("web"))["digest"]))
    config_blob = json.loads(store.read_blob(built["config"]["digest"]))
    base_digest = config_blob["config"]["Labels"]["org.opencontainers.image.base.digest"]
    assert base_digest.startswith("sha256:")
    with RegistryClient(basic_registry.host) as client:
        att, _, _ = client.get_manifest(_repo, f"sha256-{released['digest'][7:]}.att")
        envelopes = [client.open_blob(_repo, d["digest"]).read() for d in json.loads(att)["layers"]]
    statements = [json.loads(base64.b64decode(json.loads(e)["payload"])) for e in envelopes]
    provenance = next(s for s in statements if s["predicateType"] == "https://slsa.dev/provenance/v1")
    deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {"sha256": base_digest[7:]} in [d.get("digest") for d in deps], deps


def test_sign_attaches_the_test_report_of_an_oci_build_pushed_unsigned(site, cli_main, tmp_path, monkeypatch):
    """The recovery path SigningFailed names: push without a key, then ``imgforge sign``. The engine
    never saw the pushed digest (``docker load`` sets no RepoDigests); the layout's digest links
    the registry's digest to the build's test record, so the attestation carries the test report."""
    from tests.proof.conftest import make_keys

    root, image, _repo = site
    monkeypatch.delenv("IMGFORGE_SIGNING_KEY", raising=False)
    assert cli_main("build", "web", "--test", "--root", str(root))[0] == 0
    code, out, err = cli_main("push", "web", "--json", "--root", str(root))
    assert code == 0, err
    assert json.loads(out)["signed"] is None

    keys = make_keys(tmp_path / "keys")
    monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(keys.private))
    monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", keys.password.decode())
    code, signed, err = cli_main("sign", "web", "--root", str(root))
    assert code == 0, err

    code, out, err = cli_main("verify", f"{image}:v0.1.0", "--key", str(keys.public), "--json")
    facts = {f["name"]: f for f in json.loads(out)["facts"]}
    assert facts["tests"]["ok"], facts["tests"]
    assert facts["tests passed"]["ok"], facts["tests passed"]
    assert code == 0, (out, err)
    assert "no `imgforge test` report" not in signed + err
