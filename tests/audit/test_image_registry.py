"""Images audited by reference, straight from a registry (Debian's docker-registry on 127.0.0.1):
the three precedent shapes pushed by the engine, read back with the registry client and the image
reader, no engine involved; and ``fleet --registry``, whose rows get the image's USER and audit."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest
from audit_fixture_repos import OVERLAYS, PRECEDENT_PATCH, fleet_app
from audit_images import ENVSUBST, NAMED, ROOT, RUN

from imgforge.audit import audit_image
from imgforge.image import DockerEngineSource, resolve
from tests.registry.conftest import free_port

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.slow]


@pytest.fixture(scope="module")
def pushed(fault_images, basic_registry, docker_client) -> dict[str, tuple[str, str, str]]:
    """spec name -> (reference pushed, its registry digest, the image id); NAMED also under a second tag."""
    auth = {"username": basic_registry.user, "password": basic_registry.password}
    out = {}
    for spec in (ROOT, ENVSUBST, NAMED):
        image_id = fault_images(spec)
        repo = f"{basic_registry.host}/p3/{spec.name}"
        tags = [RUN, f"{RUN}-again"] if spec is NAMED else [RUN]
        digest = ""
        for tag in tags:
            docker_client.api.tag(image_id, repo, tag)
            for event in docker_client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
                assert "error" not in event, event
                digest = event.get("aux", {}).get("Digest", digest)
        assert digest.startswith("sha256:")
        out[spec.name] = (f"{repo}:{RUN}", digest, image_id)
    return out


def engine_findings(image_id: str) -> set[tuple[str, str, int | None]]:
    with DockerEngineSource(image_id) as source:
        return {(f.rule, f.file, f.line) for f in audit_image(resolve(source), image_id).findings}


@pytest.mark.parametrize("spec", [ROOT, ENVSUBST, NAMED], ids=lambda s: s.name)
def test_precedent_audited_by_reference(pushed, registry_env, basic_registry, cli_main, spec):
    registry_env(basic_registry)
    ref, digest, image_id = pushed[spec.name]
    code, out, err = cli_main("audit", "--image", ref, "--json")
    assert code == 1, err
    data = json.loads(out)
    assert data["path"] == ref
    assert data["digest"] == digest  # the registry's own digest, not the engine's
    assert {(f["rule"], f["file"], f["line"]) for f in data["findings"]} == engine_findings(image_id)


def test_by_digest_and_in_text(pushed, registry_env, basic_registry, cli_main):
    registry_env(basic_registry)
    ref, digest, _ = pushed[ENVSUBST.name]
    by_digest = ref.rsplit(":", 1)[0] + "@" + digest
    code, out, _ = cli_main("audit", "--image", by_digest)
    assert code == 1
    assert out.splitlines() == [
        "/entrypoint.sh:3: error IMG020 envsubst runs at start-up but is not installed in the image "
        "(install gettext or gettext-base or gettext-envsubst or gettext-tiny)",
        "/entrypoint.sh:3: error IMG021 envsubst writes /etc/nginx/conf.d/default.conf at start-up: "
        "write under /tmp (the root filesystem is read-only)",
        "2 findings: 2 errors, 0 warnings, 0 info",
    ]


def test_registry_failures_are_one_line(pushed, registry_env, basic_registry, cli_main, monkeypatch):
    registry_env(basic_registry)
    ref, _, _ = pushed[ROOT.name]
    code, out, err = cli_main("audit", "--image", ref.rsplit(":", 1)[0] + ":no-such-tag")
    assert (code, out) == (4, "")
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("IMGFORGE_REGISTRY_PASSWORD", "wrong-" + basic_registry.password)
    code, out, err = cli_main("audit", "--image", ref)
    assert (code, out) == (7, "")
    assert len(err.strip().splitlines()) == 1
    assert basic_registry.password not in err
    code, out, err = cli_main("audit", "--image", f"127.0.0.1:{free_port()}/p3/x:v1")
    assert (code, out) == (7, "")
    assert len(err.strip().splitlines()) == 1


# -- fleet --registry -----------------------------------------------------------------------------


@pytest.fixture
def fleet_repo(tmp_path, pushed, token_registry):
    root_ref = pushed[ROOT.name][0]
    envsubst_ref = pushed[ENVSUBST.name][0]
    named_ref = pushed[NAMED.name][0]
    host = root_ref.split("/")[0]
    files = {
        **fleet_app("root-site", root_ref),
        **fleet_app("envsubst-site", envsubst_ref, pod_security_patch=PRECEDENT_PATCH),
        **fleet_app("named-site", named_ref, pod_security_patch="      securityContext:\n        runAsNonRoot: true\n"),
        **fleet_app("named-again", f"{named_ref}-again"),
        **fleet_app("gone-site", f"{host}/p3/does-not-exist:v1"),
        **fleet_app("offline-site", f"127.0.0.1:{free_port()}/p3/offline:v1"),
        **fleet_app("locked-site", f"{token_registry.host}/p3/locked:v1"),
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text).lstrip("\n"))
    assert (tmp_path / OVERLAYS).is_dir()
    return tmp_path


@pytest.mark.kustomize
def test_fleet_registry_fills_user_and_audit(fleet_repo, pushed, registry_env, basic_registry, cli_main):
    registry_env(basic_registry)
    code, out, err = cli_main("fleet", "--repo", str(fleet_repo), "--registry", "--format", "json", "--jobs", "3")
    assert code == 0, err  # unreadable images are notes, not failures
    data = json.loads(out)
    rows = {r["app"]: r for r in data["containers"]}

    root = rows["root-site"]
    assert (root["image_user"], root["class"]) == ("", "root")  # no securityContext, and the image is root's
    assert root["image_audit"]["error"] > 0
    assert root["problems"] == ["the image runs as root and nothing sets runAsUser"]

    envsubst = rows["envsubst-site"]
    assert (envsubst["pod_uid"], envsubst["image_user"]) == (100, "100:101")
    assert envsubst["image_audit"] == {"error": 2, "warning": 0, "info": 0}

    named = rows["named-site"]
    assert named["image_user"] == "nginx"
    assert any("not numeric" in p for p in named["problems"])
    assert rows["named-again"]["image_digest"] == named["image_digest"]

    for app, words in (
        ("gone-site", "image not read"),
        ("offline-site", "image not read"),
        ("locked-site", "image not read"),
    ):
        assert rows[app]["image_audit"] is None
        assert any(p.startswith(words) for p in rows[app]["problems"]), rows[app]["problems"]
    assert basic_registry.password not in out

    # one entry per digest: the NAMED image's two tags were read but audited once
    images = {i["digest"]: i for i in data["images"]}
    assert len(images) == 3
    assert sorted(images[named["image_digest"]]["references"]) == sorted(
        [pushed[NAMED.name][0], pushed[NAMED.name][0] + "-again"]
    )


@pytest.mark.kustomize
def test_fleet_registry_markdown(fleet_repo, registry_env, basic_registry, cli_main):
    registry_env(basic_registry)
    code, out, _ = cli_main("fleet", "--repo", str(fleet_repo), "--registry")
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| App |"))
    assert "| Image audit | Class | Notes |" in header
    root_line = next(line for line in out.splitlines() if line.startswith("| root-site |"))
    assert "| root (image) |" in root_line
    assert "## Images read from their registries" in out
    code, plain, _ = cli_main("fleet", "--repo", str(fleet_repo))
    assert "Image audit" not in plain  # without --registry, the table is as before


@pytest.mark.kustomize
def test_fleet_audits_an_image_once_per_digest(fleet_repo, pushed, registry_env, basic_registry, caplog):
    """NAMED is named by two tags (two apps): its layers are fetched once, by one audit. The client's
    request log (one DEBUG line per request) is what shows it."""
    from imgforge.audit import fleet_report
    from imgforge.registry import RegistryClient

    registry_env(basic_registry)
    ref = pushed[NAMED.name][0]
    name = ref.split("/", 1)[1].rsplit(":", 1)[0]
    with RegistryClient(basic_registry.host) as client:
        layers = [d["digest"] for d in json.loads(client.get_manifest(name, RUN)[0])["layers"]]
    caplog.set_level(logging.DEBUG, logger="imgforge")
    report = fleet_report(fleet_repo, jobs=4, registry=True)
    assert {r.app for r in report.rows if r.image_digest == pushed[NAMED.name][1]} == {"named-site", "named-again"}
    requests = [r.getMessage() for r in caplog.records]
    for layer in layers:
        assert sum(m.startswith(f"GET /v2/{name}/blobs/{layer} -> 200") for m in requests) == 1, layer
