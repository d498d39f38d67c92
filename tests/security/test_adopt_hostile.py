"""Attacks through what ``adopt`` reads: the running image's nginx config and the GitOps repo.

Both are written by someone else. Whatever they say reaches a catalog entry only through the
catalog's own patterns (checked before anything is written), and a link in an image's web root
cannot ship a host file or a left-out file's bytes.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.adopt.conftest import RootImage, root_images  # noqa: F401 (fixture)
from tests.audit.audit_fixture_repos import fleet_app
from tests.registry.conftest import basic_registry, registry_env  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.kustomize]

CLIMBING_ROOT = RootImage(
    "climbing-root",
    """
    FROM {base}
    RUN rm /etc/nginx/sites-enabled/default && mkdir -p /srv/www && echo '<p>x</p>' > /srv/www/index.html
    COPY site.conf /etc/nginx/conf.d/site.conf
    """,
    {
        "site.conf": """
            server {
                listen 80;
                root /srv/www/../../etc;
                add_header X-Evil "a; add_header X-Injected 1";
            }
        """
    },
)


def test_a_web_root_that_climbs_is_not_adopted(root_images, basic_registry, registry_env, cli_main, tmp_path):
    """``root /srv/www/../../etc`` is /etc: it must never become an image source's content_dir."""
    registry_env(basic_registry)
    pushed = root_images(CLIMBING_ROOT)
    repo = tmp_path / "gitops"
    for rel, text in fleet_app("climbing-site", pushed.reference).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(textwrap.dedent(text).lstrip("\n"))
    root = tmp_path / "catalog"
    (root / "sites").mkdir(parents=True)
    (root / "imgforge.toml").write_text("[defaults]\n")
    code, out, err = cli_main("adopt", "--repo", str(repo), "--root", str(root), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["adopted"] == []
    [reason] = [n["reason"] for n in data["not_adopted"]]
    assert reason.startswith("the entry would not be valid: sites/climbing.toml: source.content_dir: ")
    assert list((root / "sites").iterdir()) == []
