"""The oci builder against the docker builder, on the local prebuilt base: the same image, no engine.

Both builders render from the same templates; the docker builder runs the Dockerfile, the oci
builder writes the layers itself. The images are read back with imgforge's engine-free reader
(the docker one through ``docker save``, the oci one from its layout) and compared entry by entry.
"""

from __future__ import annotations

import json

import pytest

from imgforge import build, config
from imgforge.oci import build_site_oci, store
from imgforge.oci.transfer import layout_top
from tests.oci.image_tree import engine_tree, layout_tree

pytestmark = pytest.mark.docker


@pytest.fixture
def web(make_catalog, nginx_base, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    catalog = config.load_catalog(make_catalog(sites={"web": {"builder": "oci", "tag": "v0.3.0"}}))
    return catalog, catalog.site("web")


def test_both_builders_hold_the_same_files_with_the_same_modes_and_owners(web, cleanup_images, docker_client):
    catalog, site = web
    oci = build_site_oci(catalog, site)
    docker_site = site.model_copy(update={"builder": "docker"})
    cleanup_images.append(docker_site.reference)
    built = build.build_site(catalog, docker_site, force=True)

    from_docker = engine_tree(built.id)
    from_oci = layout_tree(store.site_layout("web"))
    # The docker builder's last RUN (nginx -t as the runtime user) touches /tmp and then removes
    # what it wrote: only /tmp's own mtime changes, which these rows leave out.
    differ = {p: (from_docker.get(p), from_oci.get(p)) for p in from_docker.keys() | from_oci.keys()}
    differ = {p: pair for p, pair in differ.items() if pair[0] != pair[1]}
    assert differ == {}
    assert len(from_oci) > 1000  # the whole Debian tree, not only imgforge's files
    assert from_oci["/usr/local/bin/imgforge-entrypoint"][1:4] == ("0o755", 0, 0)
    assert from_oci["/etc/imgforge/manifest.json"][1:4] == ("0o644", 0, 0)
    assert "/etc/nginx/sites-enabled" not in from_oci  # the stock site, removed like `rm -rf` does
    assert oci.id != built.id  # different configs (history, created), the same files
    # Both record their base: the docker builder a local base's image ID (no registry ever served it).
    labels = docker_client.images.get(built.id).labels
    assert labels["org.opencontainers.image.base.name"] == "imgforge/nginx-debian:bookworm"
    assert labels["org.opencontainers.image.base.digest"] == docker_client.images.get(site.base_image).id
    assert oci.base_digest.startswith("sha256:")


def test_the_config_carries_what_the_dockerfile_sets(web):
    catalog, site = web
    result = build_site_oci(catalog, site)
    top = layout_top(site)
    manifest = json.loads(store.read_blob(top["digest"]))
    image = json.loads(store.read_blob(manifest["config"]["digest"]))
    run = image["config"]
    assert run["User"] == "100:101"
    assert "8080/tcp" in run["ExposedPorts"]
    assert "LISTEN_PORT=8080" in run["Env"]
    assert run["Entrypoint"] == ["/usr/local/bin/imgforge-entrypoint"]
    assert run["Cmd"] == ["nginx", "-e", "stderr"]
    assert run["StopSignal"] == "SIGQUIT"
    labels = run["Labels"]
    assert labels["org.opencontainers.image.base.name"] == "imgforge/nginx-debian:bookworm"
    assert labels["org.opencontainers.image.base.digest"] == result.base_digest
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["io.imgforge.manifest-digest"] == result.manifest_digest
    assert len(image["rootfs"]["diff_ids"]) == len(manifest["layers"])
    assert [h for h in image["history"] if not h.get("empty_layer")].__len__() == len(manifest["layers"])
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == result.base_digest


def test_an_unchanged_site_is_not_assembled_again(web):
    catalog, site = web
    first = build_site_oci(catalog, site, force=True)
    again = build_site_oci(catalog, site)
    assert (first.skipped, again.skipped) == (False, True)
    assert again.digest == first.digest


def test_builder_oci_is_refused_for_a_profile_that_runs_a_package_manager(make_catalog, cli_main):
    root = make_catalog(sites={"web": {"builder": "oci", "profile": "debian", "base_image": None}})
    code, _, err = cli_main("sites", "--root", str(root))
    assert code == 3
    assert "sites/web.toml: builder: the oci builder needs profile prebuilt" in err


def test_skopeo_reads_and_copies_the_layout(web, tmp_path):
    """An independent OCI implementation (skopeo, containers/image) accepts the layout: it reads
    the index, verifies every blob against its digest while copying, and reports our digest."""
    import shutil
    import subprocess

    catalog, site = web
    result = build_site_oci(catalog, site)
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is installed by the set-up (scripts/env.sh)"
    layout = store.site_layout("web")
    info = json.loads(subprocess.run([skopeo, "inspect", f"oci:{layout}"], check=True, capture_output=True).stdout)
    assert info["Digest"] == result.digest
    assert info["Labels"]["io.imgforge.manifest-digest"] == result.manifest_digest
    assert info["Architecture"] == "amd64"
    copy = subprocess.run(
        [skopeo, "copy", "--preserve-digests", f"oci:{layout}", f"oci:{tmp_path / 'copy'}:again"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copy.returncode == 0, copy.stderr
    again = json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"][0]
    assert again["digest"] == result.digest


def test_nginx_t_runs_before_the_checks_and_stops_a_broken_image(make_catalog, debian_base, cli_main, cleanup_images):
    """A prebuilt base without nginx assembles fine (no engine runs anything), but `nginx -t` in the
    loaded image fails as the Dockerfile's RUN would: exit 6, no check runs, nothing recorded as tested."""
    root = make_catalog(sites={"web": {"builder": "oci", "base_image": debian_base}})
    cleanup_images.append("127.0.0.1:5000/test/web:v0.0.1")
    code, _, err = cli_main("build", "web", "--test", "--root", str(root))
    assert code == 6
    assert "nginx -t" in err
    assert "nginx" in err.split("nginx -t", 1)[1]  # the engine's own words about the missing nginx
