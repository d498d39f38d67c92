"""The registry commands: flags reach the library, output and exit codes are right."""

from __future__ import annotations

import json

import pytest

from imgforge.cli import main
from imgforge.verify.state import record_result

pytestmark = pytest.mark.registry


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.fixture
def root(basic_registry, make_catalog, registry_env, seed, unique_repo):
    registry_env(basic_registry)
    repo = unique_repo("cli")
    seed(basic_registry, repo, ["v0.0.1", "v0.0.2", "v0.0.5", "v0.1.0-rc.1", "latest"])
    return str(make_catalog(sites={"web": {"image": f"{basic_registry.host}/{repo}", "tag": "v0.0.2"}}))


def test_tags_json(capsys, root, basic_registry):
    code, out, err = run(capsys, "tags", "web", "--root", root, "--json")
    data = json.loads(out)
    assert code == 0
    assert err == ""
    assert [v["tag"] for v in data["versions"]] == ["v0.0.1", "v0.0.2", "v0.0.5", "v0.1.0-rc.1"]
    assert [v["tag"] for v in data["versions"] if v["current"]] == ["v0.0.2"]
    assert data["other"] == ["latest"]
    assert data["repository"].startswith(basic_registry.host)


def test_tags_table_marks_the_catalog_tag(capsys, root):
    code, out, _ = run(capsys, "tags", "web", "--root", root)
    assert code == 0
    line = next(line for line in out.splitlines() if "v0.0.2" in line)
    assert "← catalog" in line
    assert "ignored (not semver): latest" in out


def test_bump_dry_run(capsys, root):
    code, out, _ = run(capsys, "bump", "web", "--patch", "--dry-run", "--root", root)
    assert code == 0
    assert "web: would change tag v0.0.2 -> v0.0.6" in out


def test_bump_to_an_existing_tag_exits_10(capsys, root):
    code, out, err = run(capsys, "bump", "web", "--to", "v0.0.5", "--root", root)
    assert code == 10
    assert out == ""
    assert err.startswith("error: tag v0.0.5 already exists in ")
    assert err.count("\n") == 1


def test_bump_needs_exactly_one_part(capsys, root):
    code, _, err = run(capsys, "bump", "web", "--patch", "--minor", "--root", root)
    assert code == 2
    assert err == "error: choose exactly one of --patch, --minor, --major or --to vX.Y.Z\n"
    code, _, err = run(capsys, "release", "web", "--root", root)
    assert code == 2
    assert err == "error: choose exactly one of --patch, --minor, --major\n"


def test_tags_of_a_missing_repository_exits_7(capsys, basic_registry, make_catalog, registry_env):
    registry_env(basic_registry)
    root = make_catalog(sites={"web": {"image": f"{basic_registry.host}/no/such", "tag": "v0.0.1"}})
    code, _, err = run(capsys, "tags", "web", "--root", str(root))
    assert code == 7
    assert err == f"error: repository no/such not found on registry {basic_registry.host}\n"


def test_unknown_site(capsys, root):
    code, _, err = run(capsys, "tags", "wbe", "--root", root)
    assert code == 4
    assert err == "error: unknown site 'wbe'; did you mean 'web'?\n"


@pytest.mark.docker
def test_push_json_and_warning_on_skip_verify(capsys, root, tiny_image, basic_registry):
    from imgforge import config

    web = config.load_catalog(root).site("web")
    tiny_image(web.reference)
    # The catalog's v0.0.2 is already in the registry with other bytes: a release tag is immutable.
    code, out, err = run(capsys, "push", "web", "--skip-verify", "--root", root)
    assert code == 10
    assert "release tags are immutable" in err
    assert out == ""
    code, out, err = run(capsys, "push", "web", "--skip-verify", "--tag", "dev-0000aaaa", "--json", "--root", root)
    assert code == 0
    assert json.loads(out)["reference"] == f"{web.image}:dev-0000aaaa"
    assert json.loads(out)["digest"].startswith("sha256:")
    assert err.startswith("WARNING: --skip-verify: pushing ")
    assert "(never tested)" in err


@pytest.mark.docker
def test_push_refused_exits_10(capsys, root, tiny_image):
    from imgforge import config

    web = config.load_catalog(root).site("web")
    record_result(tiny_image(web.reference).id, {"ok": False})
    code, _, err = run(capsys, "push", "web", "--root", root)
    assert code == 10
    assert "failed its last `imgforge test`" in err


def test_release_hands_the_part_to_the_library_and_prints_json(capsys, root, monkeypatch):
    from imgforge import release

    seen = {}

    def fake_release(catalog, site, part, *, on_event=None):
        seen.update(site=site, part=part, root=str(catalog.root))
        return release.ReleaseResult(site, "v0.0.2", "v0.1.0", "r:v0.1.0", "sha256:" + "a" * 64, "sha256:" + "b" * 64)

    monkeypatch.setattr(release, "release", fake_release)
    code, out, _ = run(capsys, "release", "web", "--minor", "--json", "--root", root)
    assert code == 0
    assert seen == {"site": "web", "part": "minor", "root": root}
    assert json.loads(out) == {
        "site": "web",
        "previous": "v0.0.2",
        "tag": "v0.1.0",
        "reference": "r:v0.1.0",
        "digest": "sha256:" + "a" * 64,
        "image_id": "sha256:" + "b" * 64,
        "signed": None,
    }
    code, out, _ = run(capsys, "release", "web", "--major", "--root", root)
    assert code == 0
    assert seen["part"] == "major"
    assert out == f"released r:v0.1.0@sha256:{'a' * 64} (was v0.0.2)\n"


def test_push_flags_reach_the_library(capsys, root, monkeypatch):
    from imgforge import release

    seen = {}

    def fake_push(catalog, site, *, also_latest, skip_verify, tag, force, on_event):
        seen.update(site=site, also_latest=also_latest, skip_verify=skip_verify, tag=tag, force=force)
        return release.PushResult(site, "r:v1", "sha256:" + "c" * 64, True, ["r:latest"])

    monkeypatch.setattr(release, "push", fake_push)
    code, out, _ = run(capsys, "push", "web", "--also-latest", "--root", root)
    assert code == 0
    assert seen == {"site": "web", "also_latest": True, "skip_verify": False, "tag": None, "force": False}
    assert out.splitlines() == [f"pushed r:v1@sha256:{'c' * 64}", f"pushed r:latest@sha256:{'c' * 64}"]
