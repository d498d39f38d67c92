"""Same inputs, same digest: two oci builds in two empty caches, and ``rebuild --verify`` against a registry."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from imgforge import config
from imgforge.oci import build_site_oci, push
from tests.conftest import EXAMPLE_CONTENT

pytestmark = [pytest.mark.docker]


def test_two_builds_in_two_empty_caches_give_the_same_digest(make_catalog, nginx_base, tmp_path, monkeypatch):
    """Different caches, different content mtimes (a fresh checkout), a day apart: one digest.

    The content is the example site's, in this repository: its commit time is the layers' mtime
    (no SOURCE_DATE_EPOCH here).
    """
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    catalog = config.load_catalog(make_catalog(sites={"web": {"builder": "oci"}}))
    digests = []
    for run in ("a", "b"):
        monkeypatch.setenv("IMGFORGE_CACHE_DIR", str(tmp_path / f"cache-{run}"))
        result = build_site_oci(catalog, catalog.site("web"))
        assert not result.skipped
        digests.append(result.digest)
        for path in EXAMPLE_CONTENT.rglob("*"):  # what a new checkout does to every file
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 86_400 * 10**9))
    assert digests[0] == digests[1]


@pytest.mark.registry
def test_rebuild_verify_matches_then_names_the_layer_and_file_that_differ(
    basic_registry, registry_env, unique_repo, make_catalog, nginx_base, tmp_path, monkeypatch, cli_main
):
    registry_env(basic_registry)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    content = tmp_path / "site"
    shutil.copytree(EXAMPLE_CONTENT.parent, content)
    image = f"{basic_registry.host}/{unique_repo('rebuild')}"
    root = make_catalog(sites={"web": {"builder": "oci", "image": image, "source": {"path": str(content)}}})
    catalog = config.load_catalog(root)
    web = catalog.site("web")
    build_site_oci(catalog, web)
    pushed = push(web, [web.tag])

    code, out, err = cli_main("rebuild", f"{image}:{web.tag}", "--verify", "--json", "--root", str(root))
    assert code == 0, err
    assert json.loads(out)["rebuilt"] == pushed.digest

    (content / "www-data" / "index.html").write_text("<p>changed after the release</p>\n")
    code, out, err = cli_main("rebuild", f"{image}:{web.tag}", "--verify", "--root", str(root))
    assert code == 1
    assert f"the registry serves {pushed.digest}" in err
    assert (
        "layer 3 (content) differs: files /etc/imgforge/manifest.json (size, sha256), "
        "/usr/share/nginx/html/index.html (size, sha256)\n"
    ) in err


@pytest.mark.registry
def test_rebuild_verify_of_a_candidate_tag_and_of_a_digest(
    basic_registry, registry_env, unique_repo, make_catalog, nginx_base, tmp_path, monkeypatch, cli_main
):
    """CI pushes the catalog tag's build as ``candidate-<sha>``: the rebuild is of the catalog's
    site (its version label holds the catalog tag), the candidate tag only says what to fetch."""
    registry_env(basic_registry)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image = f"{basic_registry.host}/{unique_repo('candidate')}"
    root = make_catalog(sites={"web": {"builder": "oci", "image": image}})
    assert cli_main("build", "web", "--root", str(root))[0] == 0
    code, out, err = cli_main("push", "web", "--tag", "candidate-x", "--skip-verify", "--json", "--root", str(root))
    assert code == 0, err
    pushed = json.loads(out)["digest"]

    code, out, err = cli_main("rebuild", f"{image}:candidate-x", "--verify", "--json", "--root", str(root))
    assert code == 0, err
    assert json.loads(out)["registry"] == pushed

    code, out, err = cli_main("rebuild", f"{image}@{pushed}", "--verify", "--json", "--root", str(root))
    assert code == 0, err
    report = json.loads(out)
    assert report["registry"] == report["rebuilt"] == pushed

    # A digest the repository does not hold is asked for by that digest, not by the catalog's tag.
    other = "sha256:" + "0" * 64
    code, _, err = cli_main(
        "rebuild", f"{image}:{config.load_catalog(root).site('web').tag}@{other}", "--verify", "--root", str(root)
    )
    assert code != 0
    assert other in err


def test_shallow_and_full_clones_give_the_same_source_time_and_digest(make_catalog, nginx_base, tmp_path, monkeypatch):
    """The content folder was last changed a commit before HEAD: a depth-1 clone (CI) only has
    HEAD, a full clone has both; the source time is HEAD's commit time in both, so one digest."""
    import subprocess

    from imgforge.oci.assemble import source_time
    from imgforge.render import prepare

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    origin = tmp_path / "origin"
    shutil.copytree(EXAMPLE_CONTENT.parent, origin / "site")

    def git(*args: str, when: str = "", cwd=origin) -> None:
        env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when} if when else None
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "site")
    git("commit", "-q", "-m", "content", when="@1600000000 +0000")
    (origin / "README").write_text("not the content\n")
    git("add", "README")
    git("commit", "-q", "-m", "other", when="@1700000000 +0000")

    found = {}
    clone = tmp_path / "clone"  # one path: the source label names it
    root = make_catalog(sites={"web": {"builder": "oci", "source": {"path": str(clone / "site")}}})
    for depth in ("full", "shallow"):
        shutil.rmtree(clone, ignore_errors=True)
        git("clone", "-q", *(["--depth", "1"] if depth == "shallow" else []), f"file://{origin}", str(clone))
        catalog = config.load_catalog(root)
        when = source_time(prepare(catalog, catalog.site("web")))
        found[depth] = (when, build_site_oci(catalog, catalog.site("web"), force=True).digest)
    assert found["full"][0] == found["shallow"][0] == 1700000000
    assert found["full"][1] == found["shallow"][1]
