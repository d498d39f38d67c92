"""``imgforge gitops plan|apply`` through the real entry point: output, exit codes, no side effects."""

from __future__ import annotations

import json

import pytest

from imgforge.errors import EXIT_GITOPS, EXIT_NOT_FOUND

pytestmark = pytest.mark.kustomize


def test_plan_prints_the_diff_and_writes_nothing(gitops_repo, catalog, cli_main, fx):
    tree = fx.snapshot(gitops_repo.parent)
    code, out, err = cli_main(
        "gitops", "plan", "alpha", "--repo", str(gitops_repo), "--root", str(catalog.root), "--level", "minimal"
    )
    assert code == 0, err
    assert out.startswith("alpha (alpha-site): cr.pcfae.com/prplanit/alpha.com v0.0.2 → v0.0.3\n")
    assert "  containerPort    80 → 8080\n" in out
    assert "+          image: cr.pcfae.com/prplanit/alpha.com:v0.0.3\n" in out
    assert fx.snapshot(gitops_repo.parent) == tree


def test_apply_twice_says_nothing_to_change(gitops_repo, catalog, cli_main):
    args = ("--repo", str(gitops_repo), "--root", str(catalog.root), "--tag", "v0.0.9")
    code, out, _ = cli_main("gitops", "apply", "gamma", *args)
    assert code == 0
    assert "  wrote fluxcd/apps/base/gamma-site/deployment.yaml\n" in out
    code, out, _ = cli_main("gitops", "apply", "gamma", *args)
    assert (code, out) == (0, "gamma: nothing to change\n")
    code, out, _ = cli_main("gitops", "plan", "gamma", *args, "--json")
    data = json.loads(out)
    assert code == 0
    assert data["noop"] is True
    assert data["old_tag"] == data["new_tag"] == "v0.0.9"


def test_errors_are_one_line_with_exit_codes(gitops_repo, catalog, cli_main):
    code, out, err = cli_main("gitops", "plan", "nowhere", "--repo", str(gitops_repo), "--root", str(catalog.root))
    assert code == EXIT_NOT_FOUND
    assert out == ""
    assert err.startswith("error: unknown app 'alpha-sight'")
    assert err.count("\n") == 1
    code, _, err = cli_main("gitops", "apply", "twin", "--repo", str(gitops_repo), "--root", str(catalog.root))
    assert code == EXIT_GITOPS
    assert "2 containers could match" in err


@pytest.mark.parametrize("tag", ["v0.0.9\n", "v0.0.9\nRUN x", "-v1", "v 1"])
def test_a_tag_option_that_is_not_a_tag_is_refused_and_nothing_is_written(gitops_repo, catalog, cli_main, fx, tag):
    """``--tag`` is checked with the catalog's fully anchored rule: a trailing newline is not a tag."""
    tree = fx.snapshot(gitops_repo.parent)
    code, out, err = cli_main(
        "gitops", "apply", "gamma", "--repo", str(gitops_repo), "--root", str(catalog.root), "--tag", tag
    )
    assert code == 2
    assert err.startswith("error: tag: expected an image tag") and err.count("\n") == 1
    assert out == ""
    assert fx.snapshot(gitops_repo.parent) == tree


def test_update_refuses_a_bad_level_before_touching_the_remote(gitops_repo, catalog, cli_main):
    """One check of ``--level`` (gitops.policy), before git or the forge is asked anything."""
    code, _, err = cli_main(
        "update",
        "--all",
        "--repo",
        str(gitops_repo),
        "--root",
        str(catalog.root),
        "--level",
        "strict",
        "--remote",
        "no-such-remote",
    )
    assert code == 2
    assert err == "error: --level: expected one of minimal, restricted, got 'strict'\n"
