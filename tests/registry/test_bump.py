"""bump: next version from the catalog and the registry, refusal of existing tags, TOML kept."""

from __future__ import annotations

import pytest

from imgforge import config, release
from imgforge.errors import Refused, UsageError

pytestmark = pytest.mark.registry

SITE_TOML = """\
# The public site. Keep this comment.
image = "{image}"   # pushed by CI
tag = "{tag}"       # bumped by imgforge
profile = "prebuilt"

[source]
path = "{content}"
"""


@pytest.fixture
def catalog_for(basic_registry, build_file_tree, tmp_path, registry_env, seed, unique_repo):
    """``catalog_for(tag, registry_tags)``: a hand-written site file and a seeded repository."""
    from tests.conftest import EXAMPLE_CONTENT

    registry_env(basic_registry)

    def make(tag: str, registry_tags: list[str]):
        repo = unique_repo("bump")
        if registry_tags:
            seed(basic_registry, repo, registry_tags)
        root = build_file_tree(
            tmp_path / "catalog",
            {
                "imgforge.toml": "[defaults]\n",
                "sites/web.toml": SITE_TOML.format(
                    image=f"{basic_registry.host}/{repo}", tag=tag, content=EXAMPLE_CONTENT.parent
                ),
            },
        )
        return config.load_catalog(root)

    return make


def test_patch_bump_starts_from_the_registry_highest_release(catalog_for):
    catalog = catalog_for("v0.0.2", ["v0.0.1", "v0.0.2", "v0.0.5", "v0.1.0-rc.1", "latest", "dev-1a2b3c4d"])
    before = (catalog.root / "sites/web.toml").read_text()
    plan = release.bump(catalog, "web", "patch")
    assert (plan.current, plan.base, plan.new, plan.written) == ("v0.0.2", "v0.0.5", "v0.0.6", True)
    after = (catalog.root / "sites/web.toml").read_text()
    assert after == before.replace('tag = "v0.0.2"', 'tag = "v0.0.6"')  # comments and layout kept
    assert config.load_catalog(catalog.root).site("web").tag == "v0.0.6"


def test_catalog_ahead_of_registry_is_the_base(catalog_for):
    catalog = catalog_for("v1.4.0", ["v1.0.0"])
    assert release.plan_bump(catalog, "web", "minor").new == "v1.5.0"


def test_first_release_into_an_empty_repository(catalog_for):
    catalog = catalog_for("dev", [])
    assert release.plan_bump(catalog, "web", "patch").new == "v0.0.1"


def test_dry_run_changes_nothing(catalog_for):
    catalog = catalog_for("v0.0.2", ["v0.0.2"])
    before = (catalog.root / "sites/web.toml").read_text()
    plan = release.bump(catalog, "web", "major", dry_run=True)
    assert (plan.new, plan.written) == ("v1.0.0", False)
    assert (catalog.root / "sites/web.toml").read_text() == before


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("v0.0.4", "tag v0.0.4 already exists in"),
        ("0.0.4", "tag 0.0.4 already exists in .* \\(as v0.0.4\\)"),
    ],
)
def test_to_refuses_a_tag_the_registry_has(catalog_for, to, message):
    catalog = catalog_for("v0.0.2", ["v0.0.2", "v0.0.4"])
    before = (catalog.root / "sites/web.toml").read_text()
    with pytest.raises(Refused, match=message) as e:
        release.bump(catalog, "web", to=to)
    assert e.value.exit_code == 10
    assert (catalog.root / "sites/web.toml").read_text() == before


def test_to_sets_an_exact_new_version(catalog_for):
    catalog = catalog_for("v0.0.2", ["v0.0.2"])
    assert release.bump(catalog, "web", to="v2.0.0-rc.1").new == "v2.0.0-rc.1"


def test_to_refuses_going_backwards_and_non_semver(catalog_for):
    catalog = catalog_for("v0.3.0", ["v0.3.0"])
    with pytest.raises(Refused, match=r"v0\.2\.0 is not above the catalog's current v0\.3\.0 for site 'web'"):
        release.bump(catalog, "web", to="v0.2.0")
    with pytest.raises(UsageError, match=r"--to: expected a semver tag like v1\.2\.3, got 'latest'"):
        release.bump(catalog, "web", to="latest")


def test_exactly_one_bump_kind(catalog_for):
    catalog = catalog_for("v0.0.1", ["v0.0.1"])
    with pytest.raises(UsageError, match="choose exactly one"):
        release.plan_bump(catalog, "web", "patch", "v1.0.0")
    with pytest.raises(UsageError, match="choose exactly one"):
        release.plan_bump(catalog, "web")


def test_list_versions_marks_the_current_tag(catalog_for):
    catalog = catalog_for("v0.0.2", ["v0.0.10", "v0.0.2", "v0.0.9", "latest"])
    listing = release.list_versions(catalog, "web").to_dict()
    assert [(v["tag"], v["current"]) for v in listing["versions"]] == [
        ("v0.0.2", True),
        ("v0.0.9", False),
        ("v0.0.10", False),
    ]
    assert listing["other"] == ["latest"]


def test_malformed_to_is_rejected_before_the_registry_is_asked(make_catalog):
    from imgforge.errors import UsageError

    # The registry host is a closed loopback port: reaching it would be a RegistryError instead.
    root = make_catalog(sites={"web": {"image": "127.0.0.1:9/team/web", "tag": "v0.1.0"}})
    with pytest.raises(UsageError, match=r"--to: expected a semver tag like v1.2.3, got '1.x'"):
        release.plan_bump(config.load_catalog(root), "web", to="1.x")
