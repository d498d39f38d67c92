"""plan/apply on every fixture shape, proved with ``kubectl kustomize`` on the real overlay after."""

from __future__ import annotations

import pytest

from imgforge import gitops
from imgforge.errors import KustomizeFailed

pytestmark = pytest.mark.kustomize

OVERLAYS = "fluxcd/apps/overlays/production"
SHAPES = ["alpha", "beta", "gamma", "epsilon", "delta"]  # patch, images+marker, base, trap, external base

# What the owner did by hand for the precedent, at --level minimal: tag bumped in the overlay
# patch, pod-level runAsUser/runAsGroup added, containerPort 80 -> 8080 in the base. Nothing else.
ALPHA_MINIMAL_DIFF = """\
--- a/fluxcd/apps/base/alpha-site/deployment.yaml
+++ b/fluxcd/apps/base/alpha-site/deployment.yaml
@@ -19,7 +19,7 @@
         - name: alpha-site
           image: PLACEHOLDER_IMAGE
           ports:
-            - containerPort: 80
+            - containerPort: 8080
               name: http
           resources:
             requests:
--- a/fluxcd/apps/overlays/production/alpha-site/deployment-patch.yaml
+++ b/fluxcd/apps/overlays/production/alpha-site/deployment-patch.yaml
@@ -13,4 +13,7 @@
       containers:
         # the real image; the base only has a placeholder
         - name: alpha-site
-          image: cr.pcfae.com/prplanit/alpha.com:v0.0.2
+          image: cr.pcfae.com/prplanit/alpha.com:v0.0.3
+      securityContext:
+        runAsUser: 100
+        runAsGroup: 101
"""

BETA_KUSTOMIZATION_DIFF = """\
--- a/fluxcd/apps/overlays/production/beta-site/kustomization.yaml
+++ b/fluxcd/apps/overlays/production/beta-site/kustomization.yaml
@@ -20,4 +20,4 @@
 images:
   - name: PLACEHOLDER_IMAGE
     newName: cr.pcfae.com/prplanit/beta.com
-    newTag: v0.0.2  # {"$imagepolicy": "flux-system:beta-site:tag"}
+    newTag: v0.0.3  # {"$imagepolicy": "flux-system:beta-site:tag"}
"""


def test_fixture_repo_renders_and_lints_before_any_change(gitops_repo, fx):
    for app in fx.gen.SHAPES:
        objects = fx.render(gitops_repo / OVERLAYS / app)
        container = fx.deployment(objects, app)["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].endswith(":v0.0.2")
        assert [p["containerPort"] for p in container["ports"]] == [80]
    assert fx.yamllint(gitops_repo, [gitops_repo]) == ""
    assert fx.git_status(gitops_repo) == ""


def test_minimal_level_diff_is_exactly_the_precedent(gitops_repo, catalog):
    plan = gitops.plan(catalog, "alpha", gitops_repo, level="minimal")
    assert plan.diff == ALPHA_MINIMAL_DIFF
    assert plan.security_changes == ["pod runAsUser: 100", "pod runAsGroup: 101"]
    assert plan.port_change == "80 → 8080"
    assert (plan.old_tag, plan.new_tag, plan.noop) == ("v0.0.2", "v0.0.3", False)
    assert [str(c.path) for c in plan.changes] == [
        "fluxcd/apps/base/alpha-site/deployment.yaml",
        "fluxcd/apps/overlays/production/alpha-site/deployment-patch.yaml",
    ]


def test_images_entry_tag_moves_and_flux_marker_survives(gitops_repo, catalog):
    plan = gitops.plan(catalog, "beta", gitops_repo, level="minimal")
    kust = next(c for c in plan.changes if c.path.name == "kustomization.yaml")
    diff = plan.diff[plan.diff.index("--- a/fluxcd/apps/overlays/production/beta-site/kustomization.yaml") :]
    assert diff == BETA_KUSTOMIZATION_DIFF
    assert '# {"$imagepolicy": "flux-system:beta-site:tag"}' in kust.after


def test_plan_changes_nothing(gitops_repo, catalog, fx):
    before = fx.snapshot(gitops_repo.parent)
    for site in SHAPES:
        assert not gitops.plan(catalog, site, gitops_repo).noop
    assert fx.snapshot(gitops_repo.parent) == before
    assert fx.git_status(gitops_repo) == ""


@pytest.mark.parametrize("site", SHAPES)
def test_apply_then_kustomize_proves_image_security_and_one_port(gitops_repo, catalog, fx, site):
    app = f"{site}-site"
    overlay = gitops_repo / OVERLAYS / app
    before = fx.render(overlay)
    plan = gitops.plan(catalog, site, gitops_repo)
    written = gitops.apply(plan)
    assert written == [c.path for c in plan.changes]
    assert written

    after = fx.render(overlay)
    pod = fx.deployment(after, app)["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == app)
    assert container["image"] == f"{fx.gen.image_of(app)}:v0.0.3"
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    assert container["ports"][0]["name"] == "http"
    assert pod["securityContext"] == {
        "runAsUser": 100,
        "runAsGroup": 101,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}} in pod["volumes"]
    # everything but the Deployment renders as before: the Service keeps targetPort http
    assert [o for o in after if o["kind"] != "Deployment"] == [o for o in before if o["kind"] != "Deployment"]

    changed = [gitops_repo / p for p in written]
    assert fx.yamllint(gitops_repo, [p for p in changed if p.exists()]) == ""
    status = {line[3:] for line in fx.git_status(gitops_repo).splitlines()}
    assert status == {str(p) for p in written}
    assert not any(p.name.endswith(".enc.yaml") for p in written)


@pytest.mark.parametrize("site", SHAPES)
def test_second_apply_changes_nothing(gitops_repo, catalog, fx, site):
    gitops.apply(gitops.plan(catalog, site, gitops_repo))
    tree = fx.snapshot(gitops_repo.parent)
    again = gitops.plan(catalog, site, gitops_repo)
    assert again.noop
    assert again.changes == []
    assert again.diff == ""
    assert again.security_changes == []
    assert again.port_change is None
    assert gitops.apply(again) == []
    assert fx.snapshot(gitops_repo.parent) == tree


def test_edits_keep_comments_quotes_order_and_final_newline(gitops_repo, catalog):
    plan = gitops.plan(catalog, "gamma", gitops_repo)
    for change in plan.changes:
        before, after = change.before.splitlines(), change.after.splitlines()
        assert change.after.endswith("\n")
        assert not change.after.endswith("\n\n")
        assert [ln for ln in before if ln.lstrip().startswith("#")] == [
            ln for ln in after if ln.lstrip().startswith("#")
        ]
        removed = [ln for ln in before if ln not in after]
        # only the two lines that carry a changed value disappear; everything else stays in order
        assert all("v0.0.2" in ln or "containerPort: 80" in ln for ln in removed), removed
        kept = [ln for ln in before if ln in after]
        assert kept == [ln for ln in after if ln in kept]
    base = next(c for c in plan.changes if c.path.name == "deployment.yaml")
    assert 'image: cr.pcfae.com/prplanit/gamma.com:v0.0.3 # {"$imagepolicy": "flux-system:gamma-site"}' in base.after
    assert (
        "targetPort: http  # named: survives" in (gitops_repo / "fluxcd/apps/base/gamma-site/service.yaml").read_text()
    )


def test_quoted_label_and_tag_quotes_survive(gitops_repo, catalog):
    patch = gitops_repo / OVERLAYS / "alpha-site/deployment-patch.yaml"
    patch.write_text(
        patch.read_text().replace("alpha.com:v0.0.2", 'alpha.com:v0.0.2"').replace("image: cr", 'image: "cr')
    )
    plan = gitops.plan(catalog, "alpha", gitops_repo)
    after = next(c.after for c in plan.changes if c.path.name == "deployment-patch.yaml")
    assert 'image: "cr.pcfae.com/prplanit/alpha.com:v0.0.3"' in after
    assert 'policy.prplanit.com/ingress: "true"' in after


def test_explicit_tag_and_current_tag(gitops_repo, catalog):
    assert gitops.current_tag(catalog, "beta", gitops_repo) == "v0.0.2"
    plan = gitops.plan(catalog, catalog.site("beta"), gitops_repo, tag="v0.1.0")
    gitops.apply(plan)
    assert gitops.current_tag(catalog, "beta", gitops_repo) == "v0.1.0"


def test_restricted_after_minimal_adds_only_the_rest(gitops_repo, catalog):
    gitops.apply(gitops.plan(catalog, "alpha", gitops_repo, level="minimal"))
    plan = gitops.plan(catalog, "alpha", gitops_repo)
    assert plan.port_change is None
    assert plan.old_tag == plan.new_tag
    assert "pod runAsUser: 100" not in plan.security_changes
    assert "pod runAsNonRoot: true" in plan.security_changes
    patch = next(c for c in plan.changes if c.path.name == "deployment-patch.yaml")
    # the existing pod securityContext grows in place; no second securityContext key
    assert patch.after.splitlines().count("      securityContext:") == 1
    gitops.apply(plan)
    assert gitops.plan(catalog, "alpha", gitops_repo).noop


def test_read_only_root_off_means_no_tmp_volume(gitops_repo, make_catalog, fx):
    from imgforge.config import load_catalog

    cat = load_catalog(
        make_catalog(
            sites={
                "alpha": {
                    "image": fx.gen.image_of("alpha-site"),
                    "tag": "v0.0.3",
                    "read_only_root": False,
                    "uid": 10000,
                    "gid": 10001,
                    "gitops": {"app": "alpha-site"},
                }
            }
        )
    )
    plan = gitops.plan(cat, "alpha", gitops_repo)
    assert "readOnlyRootFilesystem" not in plan.diff
    assert "emptyDir" not in plan.diff
    assert "runAsUser: 10000" in plan.diff
    assert "runAsGroup: 10001" in plan.diff


def test_to_dict_is_json_ready(gitops_repo, catalog):
    import json

    data = json.loads(json.dumps(gitops.plan(catalog, "delta", gitops_repo).to_dict()))
    assert data["app"] == "delta-site"
    assert data["port_change"] == "80 → 8080"
    assert {"path": "fluxcd/apps/overlays/production/delta-site/deployment-port-patch.yaml", "created": True} in data[
        "files"
    ]


def test_plan_many_matches_plan_site_by_site(gitops_repo, catalog):
    sites = ["alpha", "beta", "gamma", "epsilon", "delta"]
    many = gitops.plan_many(catalog, sites, gitops_repo, tags={"beta": "v0.2.0"})
    single = [gitops.plan(catalog, s, gitops_repo, tag="v0.2.0" if s == "beta" else None) for s in sites]
    assert [p.to_dict() for p in many] == [p.to_dict() for p in single]
    assert many[1].new_tag == "v0.2.0"


def test_plan_many_falls_back_when_overlays_collide(gitops_repo, catalog, make_catalog, fx):
    """Two overlays of one base render the same objects: no batch possible, same plans anyway."""
    import shutil

    from imgforge.config import load_catalog
    from imgforge.gitops import kustomize, locate

    overlays = gitops_repo / OVERLAYS
    shutil.copytree(overlays / "alpha-site", overlays / "alpha-copy")
    cat = load_catalog(
        make_catalog(
            sites={
                name: {"image": fx.gen.image_of("alpha-site"), "tag": "v0.0.3", "gitops": {"app": app}}
                for name, app in (("alpha", "alpha-site"), ("copy", "alpha-copy"))
            }
        )
    )
    # The batch itself is refused by kustomize (the same object twice), not by any other error.
    with pytest.raises(
        KustomizeFailed,
        match=r"^kubectl kustomize 2 overlays \(batch\) failed: .*"
        r"already registered id",
    ):
        kustomize.render_many(
            [
                (overlays / a, [n.dir for n in locate.load_graph(gitops_repo, overlays / a).nodes], {})
                for a in ("alpha-site", "alpha-copy")
            ]
        )
    many = gitops.plan_many(cat, ["alpha", "copy"], gitops_repo)
    assert [p.diff for p in many] == [gitops.plan(cat, s, gitops_repo).diff for s in ("alpha", "copy")]
