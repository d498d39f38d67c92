"""The traps of gitops-shape.md and bad input: each ends in one clear error and an untouched tree."""

from __future__ import annotations

import subprocess

import pytest

from imgforge import gitops
from imgforge.errors import EXIT_GITOPS, EXIT_NOT_FOUND, EXIT_USAGE, GitopsError, ImgforgeError
from imgforge.gitops import policy

pytestmark = pytest.mark.kustomize

OVERLAYS = "fluxcd/apps/overlays/production"


def test_duplicate_port_trap_is_real_and_avoided(gitops_repo, catalog, fx):
    """Adding containerPort 8080 in the overlay patch ADDS a port; imgforge edits where it is defined."""
    overlay = gitops_repo / OVERLAYS / "epsilon-site"
    patch = overlay / "deployment-patch.yaml"
    original = patch.read_text()
    # the naive edit: change the overlay's copy of the port only
    patch.write_text(original.replace("containerPort: 80", "containerPort: 8080"))
    naive = fx.deployment(fx.render(overlay), "epsilon-site")["spec"]["template"]["spec"]["containers"][0]
    assert sorted(p["containerPort"] for p in naive["ports"]) == [80, 8080]  # two ports, both named http
    patch.write_text(original)

    plan = gitops.plan(catalog, "epsilon", gitops_repo)
    assert {str(c.path) for c in plan.changes} == {
        "fluxcd/apps/base/epsilon-site/deployment.yaml",
        f"{OVERLAYS}/epsilon-site/deployment-patch.yaml",
    }
    gitops.apply(plan)
    container = fx.deployment(fx.render(overlay), "epsilon-site")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 8080, "name": "http"}]
    assert container["livenessProbe"]["httpGet"]["port"] == 8080  # numeric probe port moved
    assert container["readinessProbe"]["tcpSocket"]["port"] == "http"  # named probe port stays


def test_proof_refuses_a_second_port(gitops_repo, fx):
    """The naive edit (the overlay's copy of the port only) renders two ports: the proof says so."""
    overlay = gitops_repo / OVERLAYS / "epsilon-site"
    patch = overlay / "deployment-patch.yaml"
    before = fx.render(overlay)
    patch.write_text(patch.read_text().replace("containerPort: 80", "containerPort: 8080"))
    after = fx.render(overlay)
    container = fx.deployment(after, "epsilon-site")["spec"]["template"]["spec"]["containers"][0]
    want = policy.Expectation("epsilon-site", container["name"], container["image"], 8080, 80)
    reasons = "; ".join(policy.check(before, after, want))
    assert "old port 80 is still declared (ports [8080, 80])" in reasons
    assert "duplicate port names" in reasons
    assert "livenessProbe.httpGet still points at port 80" in reasons


def test_check_reports_each_broken_condition():
    def deploy(ports, image="r/x:v2", pod_sc=None):
        return {
            "kind": "Deployment",
            "metadata": {"name": "x"},
            "spec": {
                "template": {
                    "spec": {
                        "securityContext": pod_sc or {},
                        "containers": [{"name": "x", "image": image, "ports": ports}],
                    }
                }
            },
        }

    want = policy.Expectation("x", "x", "r/x:v2", 8080, 80, {"runAsUser": 100}, {}, True)
    svc = {"kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}}
    good = deploy([{"containerPort": 8080, "name": "http"}], pod_sc={"runAsUser": 100})
    reasons = policy.check([svc], [svc, good], want)
    assert reasons == ["no emptyDir volume mounted at /tmp"]
    bad = deploy([{"containerPort": 80, "name": "http"}, {"containerPort": 8080, "name": "http"}], image="r/x:v1")
    reasons = policy.check([svc], [{**svc, "spec": {}}, bad], want)
    text = "; ".join(reasons)
    for part in (
        "image is 'r/x:v1'",
        "pod securityContext.runAsUser is None",
        "old port 80 is still declared",
        "duplicate port names",
        "other objects changed: Service/x",
    ):
        assert part in text


def test_external_base_gets_a_json6902_port_patch_wired_into_patches(gitops_repo, catalog, fx):
    overlay = gitops_repo / OVERLAYS / "delta-site"
    external = gitops_repo.parent / "external" / "delta-site" / "deployment.yaml"
    base_before = external.read_text()
    plan = gitops.plan(catalog, "delta", gitops_repo)
    created = [c for c in plan.changes if c.created]
    assert [c.path.name for c in created] == ["deployment-port-patch.yaml"]
    assert created[0].after == (
        "- op: replace\n  path: /spec/template/spec/containers/0/ports/0/containerPort\n  value: 8080\n"
    )
    kust = next(c for c in plan.changes if c.path.name == "kustomization.yaml")
    assert "patchesStrategicMerge" not in kust.after
    assert (
        "  - path: deployment-port-patch.yaml\n    target:\n      kind: Deployment\n      name: delta-site\n"
        in kust.after
    )
    gitops.apply(plan)
    assert external.read_text() == base_before  # outside the repo: never edited
    container = fx.deployment(fx.render(overlay), "delta-site")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 8080, "name": "http"}]
    assert fx.yamllint(gitops_repo, [overlay]) == ""
    assert gitops.plan(catalog, "delta", gitops_repo).noop


def test_graveyard_and_encrypted_files_are_never_touched(gitops_repo, catalog, fx):
    keep = [gitops_repo / "zz-graveyard/old-site/deployment.yaml", *sorted(gitops_repo.rglob("*.enc.yaml"))]
    texts = [p.read_text() for p in keep]
    for site in ("alpha", "beta", "gamma", "epsilon", "delta"):
        gitops.apply(gitops.plan(catalog, site, gitops_repo))
    assert [p.read_text() for p in keep] == texts


def _commit(repo) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@x",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-qam",
            "break it",
        ],
        cwd=repo,
        check=True,
    )


def _fails(catalog, site, repo, fx, exc=ImgforgeError, **kw) -> ImgforgeError:
    tree = fx.snapshot(repo.parent)
    with pytest.raises(exc) as e:
        gitops.apply(gitops.plan(catalog, site, repo, **kw))
    assert fx.snapshot(repo.parent) == tree, "a failed plan/apply must leave every file as it was"
    assert fx.git_status(repo) == ""
    assert "\n" not in str(e.value)
    return e.value


def test_unknown_app_names_the_folder_and_the_close_match(gitops_repo, catalog, fx):
    err = _fails(catalog, "nowhere", gitops_repo, fx)
    assert err.exit_code == EXIT_NOT_FOUND
    assert str(err) == (
        f"unknown app 'alpha-sight': no kustomization in {OVERLAYS}/alpha-sight; did you mean 'alpha-site'?"
    )


def test_two_matching_containers_are_ambiguous(gitops_repo, catalog, fx):
    err = _fails(catalog, "twin", gitops_repo, fx)
    assert err.exit_code == EXIT_GITOPS
    assert "container twin-site," in str(err)
    assert "container twin-site-worker" in str(err)
    assert "gitops.container" in str(err)


def test_container_setting_resolves_the_ambiguity(gitops_repo, make_catalog, fx):
    from imgforge.config import load_catalog

    cat = load_catalog(
        make_catalog(
            sites={
                "twin": {
                    "image": fx.gen.image_of("twin-site"),
                    "tag": "v0.0.3",
                    "gitops": {"app": "twin-site", "container": "twin-site-worker"},
                }
            }
        )
    )
    plan = gitops.plan(cat, "twin", gitops_repo, level="minimal")
    assert not plan.noop
    assert "-          image: cr.pcfae.com/prplanit/twin.com:v0.0.2" in plan.diff
    gitops.apply(plan)
    pod = fx.deployment(fx.render(gitops_repo / OVERLAYS / "twin-site"), "twin-site")["spec"]["template"]["spec"]
    assert {c["name"]: c["image"].rsplit(":", 1)[1] for c in pod["containers"]} == {
        "twin-site": "v0.0.2",
        "twin-site-worker": "v0.0.3",
    }


@pytest.mark.parametrize(
    ("rel", "garbage"),
    [
        (f"{OVERLAYS}/alpha-site/deployment-patch.yaml", "      containers: [\n"),
        (f"{OVERLAYS}/alpha-site/kustomization.yaml", "patches:\n  - path: x\n bad: ["),
        ("fluxcd/apps/base/alpha-site/deployment.yaml", "spec:\n\ttemplate: {}\n"),
    ],
)
def test_malformed_yaml_names_the_file(gitops_repo, catalog, fx, rel, garbage):
    path = gitops_repo / rel
    path.write_text(path.read_text() + garbage)
    _commit(gitops_repo)
    err = _fails(catalog, "alpha", gitops_repo, fx, GitopsError)
    assert str(err).startswith(f"{rel}: malformed YAML: line ")


def test_bad_level_and_tag_are_usage_errors(gitops_repo, catalog, fx):
    assert _fails(catalog, "alpha", gitops_repo, fx, level="paranoid").exit_code == EXIT_USAGE
    assert _fails(catalog, "alpha", gitops_repo, fx, tag="not a tag").exit_code == EXIT_USAGE


def test_missing_repo_and_missing_base(gitops_repo, catalog, fx, tmp_path):
    with pytest.raises(GitopsError, match="not a directory"):
        gitops.plan(catalog, "alpha", tmp_path / "nope")
    kust = gitops_repo / OVERLAYS / "alpha-site/kustomization.yaml"
    kust.write_text(kust.read_text().replace("base/alpha-site", "base/alpha-gone"))
    _commit(gitops_repo)
    err = _fails(catalog, "alpha", gitops_repo, fx, GitopsError)
    assert str(err) == f"{OVERLAYS}/alpha-site/kustomization.yaml: resources: ../../../base/alpha-gone does not exist"


def test_apply_refuses_a_file_changed_since_the_plan(gitops_repo, catalog, fx):
    plan = gitops.plan(catalog, "alpha", gitops_repo)
    patch = gitops_repo / plan.changes[1].path
    patch.write_text(patch.read_text() + "# edited meanwhile\n")
    tree = fx.snapshot(gitops_repo.parent)
    with pytest.raises(GitopsError, match="changed since the plan was made"):
        gitops.apply(plan)
    assert fx.snapshot(gitops_repo.parent) == tree


def test_digest_pinned_images_entry_is_refused(gitops_repo, catalog, fx):
    kust = gitops_repo / OVERLAYS / "beta-site/kustomization.yaml"
    kust.write_text(kust.read_text() + "    digest: sha256:" + "a" * 64 + "\n")
    _commit(gitops_repo)
    err = _fails(catalog, "beta", gitops_repo, fx, GitopsError)
    assert "pinned by digest" in str(err)
