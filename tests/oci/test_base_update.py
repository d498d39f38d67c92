"""Base freshness: base.digest labels, ``base check``, and ``base update`` as a rebase with moved pins.

The base lives in the real test registry (the local nginx base pushed there); "the base moved" is
that base plus one layer pushed under the same tag (``registry_bases.moved``).
"""

from __future__ import annotations

import json

import pytest

from imgforge import config
from imgforge.registry import RegistryClient
from tests.oci.registry_bases import local_base, moved, put_manifest

pytestmark = [pytest.mark.docker, pytest.mark.registry]


def _manifest(host: str, repo: str, tag: str) -> dict:
    with RegistryClient(host) as client:
        return json.loads(client.get_manifest(repo, tag)[0])


def test_base_check_sees_the_base_move_and_base_update_rebases_and_moves_the_pin(
    basic_registry, registry_env, unique_repo, make_catalog, nginx_base, monkeypatch, cli_main, cleanup_images
):
    registry_env(basic_registry)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    host = basic_registry.host
    base_repo = unique_repo("base")
    first = local_base()
    d1 = put_manifest(host, base_repo, "1", first)
    sites = {
        "web": {"builder": "oci", "base_image": f"{host}/{base_repo}:1"},
        "pinned": {"builder": "oci", "base_image": f"{host}/{base_repo}:1@{d1}"},
    }
    for name, fields in sites.items():
        fields |= {"image": f"{host}/{unique_repo(name)}", "tag": "v0.1.0"}
        cleanup_images += [f"{fields['image']}:v0.1.0", f"{fields['image']}:v0.1.1"]
    root = make_catalog(sites=sites)
    for name in sites:
        code, _, err = cli_main("build", name, "--test", "--root", str(root))
        assert code == 0, err
        code, _, err = cli_main("push", name, "--root", str(root))
        assert code == 0, err

    code, out, err = cli_main("base", "check", "--json", "--root", str(root))
    assert code == 0, err
    assert {(r["site"], r["status"], r["released"]) for r in json.loads(out)} == {
        ("web", "current", d1),
        ("pinned", "current", d1),
    }

    d2 = put_manifest(host, base_repo, "1", moved(first))
    code, out, _ = cli_main("base", "check", "--json", "--root", str(root))
    rows = {r["site"]: r for r in json.loads(out)}
    assert {n: (r["status"], r["released"], r["current"]) for n, r in rows.items()} == {
        "web": ("outdated", d1, d2),
        "pinned": ("outdated", d1, d2),
    }

    code, out, err = cli_main("base", "update", "--json", "--root", str(root))
    assert code == 0, err
    done = {r["site"]: r for r in json.loads(out)}
    assert {n: r["tag"] for n, r in done.items()} == {"web": "v0.1.1", "pinned": "v0.1.1"}
    catalog = config.load_catalog(root)
    assert catalog.site("pinned").base_image == f"{host}/{base_repo}:1@{d2}"  # the pin moved
    assert catalog.site("web").base_image == f"{host}/{base_repo}:1"

    web = catalog.site("web")
    repo = web.image.split("/", 1)[1]
    old, new = _manifest(host, repo, "v0.1.0"), _manifest(host, repo, "v0.1.1")
    base_layers = len(first["layers"])
    # A rebase: the base's layers are the new base's, imgforge's config and content layers are reused.
    assert [layer["digest"] for layer in new["layers"][: base_layers + 1]] == [
        layer["digest"] for layer in moved(first)["layers"]
    ]
    assert [layer["digest"] for layer in new["layers"][-2:]] == [layer["digest"] for layer in old["layers"][-2:]]
    assert new["annotations"]["org.opencontainers.image.base.digest"] == d2

    code, out, _ = cli_main("base", "check", "--json", "--root", str(root))
    assert {r["status"] for r in json.loads(out)} == {"current"}


def test_base_layers_are_mounted_from_the_base_repository_not_uploaded(
    basic_registry, registry_env, unique_repo, make_catalog, nginx_base, monkeypatch
):
    from imgforge.oci import build_site_oci, push

    registry_env(basic_registry)
    host = basic_registry.host
    base_repo = unique_repo("base")
    base = local_base()
    put_manifest(host, base_repo, "1", base)
    root = make_catalog(
        sites={"web": {"builder": "oci", "base_image": f"{host}/{base_repo}:1", "image": f"{host}/{unique_repo('m')}"}}
    )
    catalog = config.load_catalog(root)
    build_site_oci(catalog, catalog.site("web"))
    report = push(catalog.site("web"), ["v0.0.1"])
    assert sorted(report.mounted) == sorted(layer["digest"] for layer in base["layers"])
    assert len(report.uploaded) == 4  # the config and imgforge's three layers


def _tiny(host: str, repo: str, tag: str, config: bytes) -> str:
    """``repo:tag`` with one small layer and ``config`` as its config blob (any bytes); its digest."""
    from imgforge.image import mediatypes as mt
    from imgforge.oci import store
    from imgforge.oci.layer import LayerEntry, constant, write_layer

    layer = write_layer([LayerEntry("etc/x", "file", 0o644, 2, read=constant(b"x\n"))], 0, store.blob_dir())
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": store.put_bytes(config), "size": len(config)},
        "layers": [{"mediaType": f"{mt.OCI_LAYER}+gzip", "digest": layer.digest, "size": layer.size}],
    }
    return put_manifest(host, repo, tag, manifest)


def _labelled(**labels: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels}}).encode()


def test_base_check_unknown_digests_and_malformed_releases_are_unknown_not_outdated_or_fatal(
    basic_registry, registry_env, unique_repo, make_catalog, docker_client, monkeypatch, cli_main
):
    """An ``unknown`` base digest (the docker builder's label when the engine lacked the base), a
    release without the label, a base whose digest cannot be known now, and a release whose config
    is not JSON: each is that site's ``unknown`` with the reason; the command goes on and exits 0."""
    registry_env(basic_registry)
    host = basic_registry.host
    base_repo = unique_repo("base")
    current = _tiny(host, base_repo, "1", _labelled())
    label = "org.opencontainers.image.base.digest"
    releases = {
        "ok": _labelled(**{label: current}),
        "unknown-label": _labelled(**{label: "unknown"}),
        "no-label": _labelled(),
        "not-json": b"{not json",
        "docker-unknown": _labelled(**{label: "unknown"}),  # both sides unknown: not "current"
    }
    sites = {}
    for name, conf in releases.items():
        image = f"{host}/{unique_repo(name)}"
        _tiny(host, image.split("/", 1)[1], "v0.1.0", conf)
        base = f"{host}/{base_repo}:1"
        builder = "oci"
        if name == "docker-unknown":  # not a registry reference, and no engine has it
            base, builder = f"imgforge-test/absent-{unique_repo('b').replace('/', '-')}:1", "docker"
        sites[name] = {"builder": builder, "base_image": base, "image": image, "tag": "v0.1.0"}
    root = make_catalog(sites=sites)

    code, out, err = cli_main("base", "check", "--json", "--root", str(root))
    assert code == 0, err
    rows = {r["site"]: r for r in json.loads(out)}
    assert {n: r["status"] for n, r in rows.items()} == {
        "ok": "current",
        "unknown-label": "unknown",
        "no-label": "unknown",
        "not-json": "unknown",
        "docker-unknown": "unknown",
    }
    assert "records no base digest" in rows["unknown-label"]["detail"]
    assert "records no base digest" in rows["no-label"]["detail"]
    assert "malformed manifest or config" in rows["not-json"]["detail"]
    assert "is unknown" in rows["docker-unknown"]["detail"]

    code, out, err = cli_main("base", "update", "--json", "--root", str(root))
    assert code == 0, err
    assert json.loads(out) == []  # nothing unknown is released again


@pytest.mark.slow
def test_base_update_moves_the_pin_and_goes_on_when_signing_fails_after_the_push(
    basic_registry, unique_repo, make_catalog, nginx_base, monkeypatch, tmp_path, cli_main, cleanup_images
):
    """Site ``a``'s signatures are refused by the registry (a front denies manifests with a
    subject and cosign-style tags in a's repository) after its release was pushed: a's pin moves
    all the same, ``b`` is released and signed, and the command exits with the registry's code."""
    from tests.proof.conftest import make_keys, registry_environ
    from tests.registry.fronts import Front, json_answer
    from tests.signing.conftest import PASSWORD

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    front = Front(basic_registry.url)
    registry_environ(monkeypatch, basic_registry, tmp_path, host=front.host)
    try:
        host = front.host
        base_repo, repos = unique_repo("base"), {"a": unique_repo("a"), "b": unique_repo("b")}
        first = local_base()
        d1 = put_manifest(host, base_repo, "1", first)
        sites = {
            name: {"builder": "oci", "base_image": f"{host}/{base_repo}:1@{d1}", "image": f"{host}/{repo}"}
            for name, repo in repos.items()
        }
        for fields in sites.values():
            fields["tag"] = "v0.1.0"
            cleanup_images += [f"{fields['image']}:v0.1.0", f"{fields['image']}:v0.1.1"]
        root = make_catalog(sites=sites)
        for name in sites:
            assert cli_main("build", name, "--test", "--root", str(root))[0] == 0
            code, _, err = cli_main("push", name, "--root", str(root))
            assert code == 0, err
        d2 = put_manifest(host, base_repo, "1", moved(first))

        keys = make_keys(tmp_path / "keys")
        monkeypatch.setenv("IMGFORGE_SIGNING_KEY", str(keys.private))
        monkeypatch.setenv("IMGFORGE_SIGNING_PASSWORD", PASSWORD.decode())
        denied: list[str] = []

        def deny_signatures(request):
            signature = request.path.endswith((".sig", ".att")) or b'"subject"' in request.body
            if request.method == "PUT" and f"/v2/{repos['a']}/manifests/" in request.path and signature:
                denied.append(request.path)
                return json_answer(403, {"errors": [{"code": "DENIED", "message": "no signatures here"}]})
            return None

        front.intercept = deny_signatures
        code, out, err = cli_main("base", "update", "--json", "--root", str(root))
    finally:
        front.stop()
    assert denied
    assert code == 7, err  # the registry's exit code
    assert "pushed but not signed: a" in err
    rows = {r["site"]: r for r in json.loads(out)}
    assert "but signing it failed" in rows["a"]["error"]
    assert rows["b"]["tag"] == "v0.1.1"
    assert rows["b"]["signed"]
    catalog = config.load_catalog(root)
    assert {n: (catalog.site(n).tag, catalog.site(n).base_image) for n in sites} == {
        "a": ("v0.1.1", f"{host}/{base_repo}:1@{d2}"),  # pushed on d2: the pin follows
        "b": ("v0.1.1", f"{host}/{base_repo}:1@{d2}"),
    }
