"""Which tags are versions, their order, and the next tag."""

from __future__ import annotations

import pytest

from imgforge.registry import versions


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("v1.2.3", "1.2.3"),
        ("1.2.3", "1.2.3"),
        ("V0.0.5", "0.0.5"),
        ("v1.0.0-rc.1", "1.0.0-rc.1"),
        ("v1.0.0+build.7", "1.0.0+build.7"),
    ],
)
def test_semver_tags_parse_with_or_without_v(tag, expected):
    assert str(versions.parse(tag).semver) == expected


@pytest.mark.parametrize("tag", ["latest", "dev-1a2b3c4d", "v1.2", "1.2.3.4", "stable", "v01.2.3", "vv1.2.3", ""])
def test_non_semver_tags_are_ignored(tag):
    assert versions.parse(tag) is None


def test_order_is_semver_precedence_not_text_order():
    found, other = versions.split(
        ["v0.0.10", "latest", "v0.0.9", "v1.0.0", "v1.0.0-rc.1", "v1.0.0-alpha", "dev-deadbeef", "v0.10.0"]
    )
    assert [v.tag for v in found] == ["v0.0.9", "v0.0.10", "v0.10.0", "v1.0.0-alpha", "v1.0.0-rc.1", "v1.0.0"]
    assert other == ["dev-deadbeef", "latest"]


def test_highest_release_skips_prereleases():
    found, _ = versions.split(["v1.0.0", "v2.0.0-rc.1", "v1.4.2"])
    assert versions.highest_release(found).tag == "v1.4.2"
    assert versions.highest_release(versions.split(["v2.0.0-rc.1"])[0]) is None


@pytest.mark.parametrize(
    ("base", "part", "expected"),
    [
        ("v0.0.5", "patch", "v0.0.6"),
        ("v0.0.5", "minor", "v0.1.0"),
        ("v0.9.5", "major", "v1.0.0"),
        ("v1.3.0-rc.1", "patch", "v1.3.0"),
        (None, "patch", "v0.0.1"),
    ],
)
def test_bump(base, part, expected):
    assert versions.bump(versions.parse(base) if base else None, part) == expected


def test_bump_rejects_an_unknown_part():
    with pytest.raises(ValueError, match="part must be one of"):
        versions.bump(versions.parse("v1.0.0"), "micro")


def test_same_version_in_another_spelling_is_found():
    found, _ = versions.split(["1.2.3", "v1.2.4"])
    assert versions.find_same(found, versions.parse("v1.2.3")).tag == "1.2.3"
    assert versions.find_same(found, versions.parse("v1.2.5")) is None


def test_sort_key_orders_exactly_as_semver_precedence():
    """``split`` sorts by a precomputed key (fast for 20,000 tags): it must agree with ``<``."""
    import functools
    import random

    rng = random.Random(7)
    ids = ["alpha", "beta", "rc", "1", "2", "10", "alpha-1", "0a", "x"]
    tags = {
        f"{rng.choice(['v', ''])}{rng.randint(0, 2)}.{rng.randint(0, 2)}.{rng.randint(0, 2)}"
        + (("-" + ".".join(rng.choice(ids) for _ in range(rng.randint(1, 3)))) if rng.random() < 0.6 else "")
        + ("+build." + str(rng.randint(1, 3)) if rng.random() < 0.2 else "")
        for _ in range(600)
    }
    found, _ = versions.split(tags)
    by_lt = sorted(found, key=functools.cmp_to_key(lambda a, b: -1 if a < b else (1 if b < a else 0)))
    assert [v.tag for v in found] == [v.tag for v in by_lt]
    assert versions.highest_release(found) == max(v for v in found if not v.prerelease)
