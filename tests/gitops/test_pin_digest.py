"""--pin-digest: the overlay deploys ``tag@digest`` (kustomize ``images:`` newTag + digest, or the
image string), the kustomize proof checks the rendered reference, and a later bump replaces both."""

from __future__ import annotations

import pytest

from imgforge import gitops
from imgforge.errors import GitopsError

pytestmark = pytest.mark.kustomize

OVERLAYS = "fluxcd/apps/overlays/production"
ONE, TWO = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def _rendered_image(fx, repo, app: str) -> str:
    return fx.deployment(fx.render(repo / OVERLAYS / app), app)["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize(("site", "where"), [("alpha", "image string"), ("beta", "images: newTag + digest")])
def test_pin_then_bump_replaces_tag_and_digest(gitops_repo, catalog, fx, site, where):
    app = f"{site}-site"
    image = catalog.site(site).image
    plan = gitops.plan(catalog, site, gitops_repo, digest=ONE)
    assert plan.digest == ONE
    gitops.apply(plan)
    assert _rendered_image(fx, gitops_repo, app) == f"{image}:v0.0.3@{ONE}"
    text = "".join(c.after for c in plan.changes)
    if where.startswith("images"):
        assert f"digest: {ONE}" in text
        assert "newTag: v0.0.3" in text
    else:
        assert f"{image}:v0.0.3@{ONE}" in text
    assert gitops.current_tag(catalog, site, gitops_repo) == "v0.0.3"
    assert gitops.plan(catalog, site, gitops_repo, digest=ONE).noop  # pinned: nothing to do

    bump = gitops.plan(catalog, site, gitops_repo, tag="v0.0.4", digest=TWO)
    gitops.apply(bump)
    assert _rendered_image(fx, gitops_repo, app) == f"{image}:v0.0.4@{TWO}"
    assert ONE not in "".join(c.after for c in bump.changes)
    assert fx.yamllint(gitops_repo, [gitops_repo / c.path for c in bump.changes]) == ""


def test_the_same_tag_with_a_new_digest_is_a_change(gitops_repo, catalog, fx):
    gitops.apply(gitops.plan(catalog, "alpha", gitops_repo, digest=ONE))
    again = gitops.plan(catalog, "alpha", gitops_repo, digest=TWO)  # the tag was re-pointed
    assert not again.noop
    assert f"-  {ONE}" not in again.diff
    assert TWO in again.diff


def test_a_pinned_images_entry_is_not_moved_without_its_digest(gitops_repo, catalog):
    gitops.apply(gitops.plan(catalog, "beta", gitops_repo, digest=ONE))
    with pytest.raises(GitopsError, match="pinned by digest; move tag and digest together with --pin-digest"):
        gitops.plan(catalog, "beta", gitops_repo, tag="v0.0.4")


def test_a_digest_that_is_not_one_is_refused(gitops_repo, catalog):
    with pytest.raises(GitopsError, match="digest to pin: expected sha256:<64 lowercase hex>"):
        gitops.plan(catalog, "alpha", gitops_repo, digest="sha256:abc\nimage: evil")
