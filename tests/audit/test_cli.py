"""The ``audit``, ``migrate`` and ``fleet`` commands: what they print and the exit codes they return."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from audit_fixture_repos import FIXED, FLEET, HALF_FIXED, ROOT_SITE

REPO = Path(__file__).resolve().parents[2]


def test_audit_exit_codes(site_repo, tmp_path, cli_main):
    code, out, _ = cli_main("audit", str(site_repo(FIXED)))
    assert code == 0
    assert "no findings" in out
    code, out, _ = cli_main("audit", str(site_repo(ROOT_SITE)))
    assert code == 1
    assert "nginx.conf:1: error IMG001 `user nginx;`" in out
    assert out.rstrip().splitlines()[-1] == "15 findings: 8 errors, 7 warnings, 0 info"
    code, _, err = cli_main("audit", str(tmp_path / "missing"))
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'missing'}: no such folder"


def test_audit_warnings_only_exit_zero(site_repo, cli_main):
    repo = site_repo(FIXED, {"Dockerfile": FIXED["Dockerfile"].replace("STOPSIGNAL SIGQUIT\n", "")})
    code, out, _ = cli_main("audit", str(repo))
    assert code == 0
    assert "IMG040" in out


def test_audit_unparseable_nginx_exits_2(site_repo, cli_main):
    code, _, err = cli_main("audit", str(site_repo(FIXED, {"nginx.conf": "http {\n"})))
    assert code == 2
    assert err.startswith("error: nginx.conf")
    assert len(err.strip().splitlines()) == 1


def test_audit_json(site_repo, cli_main):
    code, out, _ = cli_main("audit", str(site_repo(HALF_FIXED)), "--json")
    data = json.loads(out)
    assert code == 1
    assert data["summary"] == {"error": 2, "warning": 0, "info": 0}
    assert [(f["rule"], f["file"], f["line"]) for f in data["findings"]] == [
        ("IMG020", "entrypoint.sh", 3),
        ("IMG021", "entrypoint.sh", 3),
    ]


def test_migrate_writes_once(site_repo, tmp_path, cli_main):
    catalog = tmp_path / "catalog"
    (catalog / "sites").mkdir(parents=True)
    shutil.copy(REPO / "imgforge.toml", catalog)
    repo = site_repo(ROOT_SITE)
    args = ("migrate", str(repo), "--site", "astral", "--root", str(catalog), "--image", "cr.example.com/t/astral")
    code, out, _ = cli_main(*args)
    assert code == 0
    assert out.splitlines()[0] == f"wrote {catalog / 'sites' / 'astral.toml'}"
    assert "not carried over (1):" in out
    assert "gzip_types" in out
    assert 'image = "cr.example.com/t/astral"' in (catalog / "sites" / "astral.toml").read_text()
    code, _, err = cli_main(*args)
    assert code == 10
    assert "sites/astral.toml already exists" in err
    code, out, _ = cli_main("sites", "--root", str(catalog), "--json")
    assert code == 0
    assert json.loads(out)[0]["fallback"] == "spa"


@pytest.mark.kustomize
def test_fleet_formats_and_exit_code(tmp_path, cli_main):
    for rel, text in FLEET.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text).lstrip("\n"))
    code, out, _ = cli_main("fleet", "--repo", str(tmp_path))
    assert code == 1  # broken-site did not render
    assert out.startswith("# Fleet audit: 8 apps")
    assert "| hardened-site |" in out
    code, out, _ = cli_main("fleet", "--repo", str(tmp_path), "--format", "json", "--jobs", "3")
    assert code == 1
    assert json.loads(out)["failed"][0]["app"] == "broken-site"


def test_fleet_bad_repo_and_format(tmp_path, cli_main):
    code, _, err = cli_main("fleet", "--repo", str(tmp_path))
    assert code == 2
    assert "no such folder" in err
    code, _, _ = cli_main("fleet", "--repo", str(tmp_path), "--format", "csv")
    assert code == 2
