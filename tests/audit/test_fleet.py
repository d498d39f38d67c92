"""``fleet_report``: the owner's audit table, computed from kustomize-rendered overlays."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from audit_fixture_repos import FLEET, HARDENED_POD, OVERLAYS, fleet_app

from imgforge.audit.fleet import ContainerRow, classify, fleet_report, to_markdown, workload_rows
from imgforge.errors import GitopsError, UsageError
from imgforge.gitops import kustomize


@pytest.fixture(scope="module")
def fleet_repo(tmp_path_factory):
    import textwrap

    root = tmp_path_factory.mktemp("fleet")
    for rel, text in FLEET.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture(scope="module")
def report(fleet_repo):
    return fleet_report(fleet_repo)


def _by_app(report) -> dict[str, ContainerRow]:
    return {r.app: r for r in report.rows}


@pytest.mark.kustomize
def test_each_app_gets_its_class(report):
    classes = {app: row.cls for app, row in _by_app(report).items()}
    assert classes == {
        "hardened-site": "hardened",
        "partial-site": "partial",
        "root-site": "root",
        "plain-site": "unknown",
        "sonarr": "linuxserver",
        "radarr": "linuxserver",
    }
    assert report.summary() == {"hardened": 1, "partial": 1, "root": 1, "linuxserver": 2, "unknown": 1}


@pytest.mark.kustomize
def test_overlay_patches_count(report):
    partial = _by_app(report)["partial-site"]
    # The base has no securityContext and a placeholder image: both come from the overlay patch.
    assert (partial.pod_uid, partial.pod_gid, partial.uid, partial.container_uid) == (100, 101, 100, None)
    assert partial.image == "cr.pcfae.com/prplanit/sm-lickitung-oci:v0.0.5"
    assert partial.namespace == "lost-woods"


@pytest.mark.kustomize
def test_hardened_row_has_every_column(report):
    row = _by_app(report)["hardened-site"]
    assert (row.uid, row.gid, row.fs_group, row.run_as_non_root) == (10000, 10001, 10001, True)
    assert (row.read_only_root, row.allow_privilege_escalation, row.capabilities_dropped, row.seccomp) == (
        True,
        False,
        ["ALL"],
        "RuntimeDefault",
    )
    assert row.resources == {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}


@pytest.mark.kustomize
def test_linuxserver_app_must_not_get_run_as_user(report):
    rows = _by_app(report)
    assert rows["sonarr"].puid_pgid
    assert rows["sonarr"].problems == []
    assert any("runAsUser on a LinuxServer.io image" in p for p in rows["radarr"].problems)


@pytest.mark.kustomize
def test_failed_render_is_listed_with_kustomizes_error(report):
    assert [(f.app, f.path) for f in report.failures] == [("broken-site", f"{OVERLAYS}/broken-site")]
    error = report.failures[0].error
    assert "does-not-exist" in error
    assert not error.startswith("E1")
    assert "broken-site" not in _by_app(report)


@pytest.mark.kustomize
def test_apps_without_pods_and_graveyard(report):
    assert report.without_workloads == {"podinfo": ["HelmRelease"]}
    assert "zz-graveyard" not in report.apps
    assert len(report.apps) == 8


@pytest.mark.kustomize
def test_markdown_table(report):
    text = to_markdown(report)
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith("| App"))
    for column in ("UID:GID", "fsGroup", "readOnlyRoot", "noPrivEsc", "capDrop", "seccomp", "resources", "Class"):
        assert f"| {column} |" in header
    hardened = next(ln for ln in lines if ln.startswith("| hardened-site"))
    assert "| 10000:10001 (pod) | yes | 10001 | yes | yes | ALL | RuntimeDefault | req+lim | hardened |" in hardened
    assert "| partial-site | Deployment/partial-site | partial-site |" in text
    assert "## Apps that failed to render" in text
    assert "| broken-site |" in text
    assert "- podinfo: HelmRelease" in text
    # every table row has as many cells as the header
    table = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| App |")]
    assert {ln.count(" | ") for ln in table if "(pod)" in ln or "| ? |" in ln} == {header.count(" | ")}


@pytest.mark.kustomize
def test_json_is_serialisable(report):
    data = json.loads(json.dumps(report.as_dict()))
    assert data["apps"] == 8
    assert data["summary"]["linuxserver"] == 2
    assert {c["class"] for c in data["containers"]} == {"hardened", "partial", "root", "linuxserver", "unknown"}
    assert data["failed"][0]["app"] == "broken-site"


@pytest.mark.kustomize
def test_same_report_whatever_the_parallelism(fleet_repo, report):
    single = fleet_report(fleet_repo, jobs=1)
    assert single.as_dict() == report.as_dict()


@pytest.fixture
def kubectl_log(tmp_path, monkeypatch):
    """``kubectl`` first on PATH: records each run's start and end, then runs the real kubectl."""
    real = shutil.which("kubectl")
    if real is None:
        pytest.fail("these tests need kubectl on PATH")
    folder, log = tmp_path / "bin", tmp_path / "kubectl.log"
    folder.mkdir()
    (folder / "kubectl").write_text(
        f'#!/bin/sh\necho "start $$ $(date +%s%N)" >>"{log}"\n"{real}" "$@"\nrc=$?\n'
        f'sleep 0.3\necho "end $$ $(date +%s%N)" >>"{log}"\nexit $rc\n'
    )
    (folder / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")

    def runs() -> list[tuple[int, int]]:
        spans: dict[str, list[int]] = {}
        for line in log.read_text().splitlines():
            _, pid, at = line.split()
            spans.setdefault(pid, []).append(int(at))
        return sorted((s[0], s[1]) for s in spans.values())

    return runs


@pytest.mark.kustomize
def test_renders_run_in_parallel(tmp_path, build_file_tree, kubectl_log):
    apps = {}
    for i in range(6):
        apps.update(fleet_app(f"app{i}", f"r.example.com/a{i}:v1"))
    result = fleet_report(build_file_tree(tmp_path / "repo", apps), jobs=3)
    runs = kubectl_log()
    assert len(runs) == 3  # three batches of two
    overlapping = max(sum(1 for s, e in runs if s <= start < e) for start, _ in runs)
    assert overlapping >= 2  # several kubectl runs were alive at the same moment
    assert sorted(r.app for r in result.rows) == [f"app{i}" for i in range(6)]


@pytest.mark.kustomize
def test_overlays_are_rendered_in_batches(tmp_path, build_file_tree, kubectl_log):
    apps = {}
    for i in range(6):
        apps.update(fleet_app(f"app{i}", f"r.example.com/a{i}:v1", pod_extra=HARDENED_POD))
    result = fleet_report(build_file_tree(tmp_path / "repo", apps), jobs=2)
    assert len(kubectl_log()) == 2  # two kubectl runs of three overlays each, not six
    assert sorted((r.app, r.uid, r.image) for r in result.rows) == [
        (f"app{i}", 10000, f"r.example.com/a{i}:v1") for i in range(6)
    ]


@pytest.mark.kustomize
def test_apps_declaring_the_same_object_still_render(tmp_path, build_file_tree):
    apps = {**fleet_app("a", "r.example.com/a:v1"), **fleet_app("b", "r.example.com/b:v1")}
    for app in ("a", "b"):
        apps[f"{OVERLAYS}/{app}/namespace.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shared\n"
        apps[f"{OVERLAYS}/{app}/kustomization.yaml"] = apps[f"{OVERLAYS}/{app}/kustomization.yaml"].replace(
            "resources:\n", "resources:\n  - namespace.yaml\n"
        )
    result = fleet_report(build_file_tree(tmp_path, apps), jobs=1)  # one batch: kustomize rejects the duplicate
    assert result.failures == []
    assert sorted(r.app for r in result.rows) == ["a", "b"]


def test_missing_overlay_root(tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        fleet_report(tmp_path)
    (tmp_path / OVERLAYS / "empty").mkdir(parents=True)
    with pytest.raises(UsageError, match="no app folder"):
        fleet_report(tmp_path)


def test_missing_kubectl(tmp_path, build_file_tree, monkeypatch):
    repo = build_file_tree(tmp_path, fleet_app("a", "r.example.com/a:v1"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(GitopsError, match="kubectl not found"):
        fleet_report(repo)


def test_kustomize_error_text():
    stderr = 'E1125 19:13:18.277274    4759 run.go:72] "command failed" err="accumulating resources: \\"x\\" missing"\n'
    assert kustomize.error_line(stderr) == 'accumulating resources: "x" missing'
    assert kustomize.error_line("error: must build at directory\n") == "must build at directory"


def _row(**kw) -> ContainerRow:
    base = {
        "app": "a",
        "kind": "Deployment",
        "workload": "a",
        "namespace": None,
        "container": "a",
        "init": False,
        "image": "x",
        "pod_uid": None,
        "pod_gid": None,
        "container_uid": None,
        "container_gid": None,
        "run_as_non_root": None,
        "fs_group": None,
        "read_only_root": None,
        "allow_privilege_escalation": None,
        "capabilities_dropped": [],
        "seccomp": None,
        "resources": {},
        "puid_pgid": False,
    }
    return ContainerRow(**{**base, **kw})


RESTRICTED = {
    "allow_privilege_escalation": False,
    "capabilities_dropped": ["ALL"],
    "seccomp": "RuntimeDefault",
    "read_only_root": True,
}


@pytest.mark.parametrize(
    ("fields", "cls"),
    [
        ({}, "unknown"),
        (dict(run_as_non_root=True, **RESTRICTED), "hardened"),  # non-root proven by the kubelet, UID from the image
        (dict(pod_uid=100, **{**RESTRICTED, "read_only_root": False}), "partial"),
        (dict(pod_uid=100, **{**RESTRICTED, "seccomp": "Unconfined"}), "partial"),
        (dict(pod_uid=1000, container_uid=0, **RESTRICTED), "root"),  # the container overrides the pod
        ({"fs_group": 2000}, "partial"),
        ({"image": "lscr.io/linuxserver/plex:latest"}, "linuxserver"),
    ],
)
def test_classify(fields, cls):
    assert classify(_row(**fields))[0] == cls


def test_privileged_is_root():
    assert classify(_row(pod_uid=1000, **RESTRICTED), privileged=True) == ("root", ["privileged container"])


def test_cronjob_and_init_containers_are_read():
    doc = {
        "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": "ops"},
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                            "initContainers": [
                                {"name": "init", "image": "busybox:1", "securityContext": {"runAsUser": 0}}
                            ],
                            "containers": [
                                {"name": "job", "image": "restic:1", "env": [{"name": "PGID", "value": "1"}]}
                            ],
                        }
                    }
                }
            }
        },
    }
    rows = workload_rows("backup", doc)
    assert [(r.container, r.init, r.uid, r.cls) for r in rows] == [
        ("init", True, 0, "root"),
        ("job", False, 1000, "linuxserver"),
    ]
    assert workload_rows("x", {"kind": "Service", "metadata": {"name": "x"}}) == []
