"""Property: no catalog string can add an instruction, a directive, a line or a shell word.

Every string field of ``sites/*.toml`` and ``imgforge.toml`` is fuzzed (line breaks, quotes, ``$``,
``;``, braces, ``#``, backslashes, NUL, unicode separators, and known payloads spliced into valid
values). Through the real CLI, each value either fails validation with one ``error:`` line and exit
3, or renders a context with the golden shape: the Dockerfile has the golden instruction list and
label keys (dockerfile-parse), every nginx file parses (crossplane) to the golden directives with
the same nesting and argument counts, and the entrypoint equals the golden one outside quotes.
Fields that reach no template are checked with ``imgforge sites --json``: nothing is fetched.
"""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import crossplane
import pytest
from dockerfile_parse import DockerfileParser
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helpers by name
from catalog_attack_helpers import (
    EXAMPLE_SITE,
    GOLDEN,
    VARIANTS,
    assert_one_error_line,
    cli,
    edit_toml,
    golden_catalog,
)

from imgforge import _git

SPECIALS = "\n\r\t\x00\x0b\x0c\"'$;{}#\\` |&<>()*?[]~=:@/.-\u2028\u2029\u0085\ufeff\u202e\u00a0"
PAYLOADS = (
    "\nRUN touch /pwned",
    '" \\\nRUN touch /pwned #',
    "$(touch /pwned)",
    "`touch /pwned`",
    "'; touch /pwned; '",
    'x"; add_header X-Evil 1; #',
    "}\nserver { listen 1; }",
    "${IFS}",
    "$http_authorization",
    "v1\n",
    "--upload-pack=touch /tmp/pwned",
    "a\\",
    "\\\n",
    "../../etc",
    "/etc/passwd",
    "x\x00y",
    "\u2028RUN id",
)
NGINX_FILES = ("nginx.conf", "imgforge/site.conf", "imgforge/headers.conf")
_CHARS = st.one_of(st.sampled_from(SPECIALS), st.characters(exclude_categories=("Cs",)))


def hostile(valid: str) -> st.SearchStrategy[str]:
    """Random text, known payloads, and valid values with junk spliced in anywhere."""
    text = st.text(_CHARS, max_size=30)
    junk = st.one_of(text, st.sampled_from(PAYLOADS))
    spliced = st.builds(lambda j, pos: valid[:pos] + j + valid[pos:], junk, st.integers(0, len(valid)))
    return st.one_of(text, spliced, st.sampled_from(PAYLOADS), st.sampled_from([valid, valid + "\n", "\n" + valid]))


@dataclass(frozen=True)
class Field:
    """One string field: where it lives, a valid value to mutate, and whether templates use it."""

    name: str  # site key path, "settings:<key path>", "headers:name" or "file name"
    valid: str
    templated: bool

    def apply(self, root: Path, variant: str, value: str) -> str:
        """Write ``value`` into the catalog at ``root``; returns the name of the site to render."""
        site_file = root / "sites" / f"{variant}.toml"
        profile = variant.split("-")[0]
        if self.name == "file name":
            assume(
                "/" not in value and "\x00" not in value and value not in ("", ".", "..") and len(value.encode()) < 200
            )
            site_file.rename(root / "sites" / f"{value}.toml")
            return value
        if self.name == "headers:name":
            assume(value.lower() not in ("x-content-type-options", "referrer-policy", "x-frame-options"))
            edit_toml(site_file, "headers", {value: "camera=()"})
        elif self.name.startswith("settings:"):
            edit_toml(root / "imgforge.toml", self.name.removeprefix("settings:").replace("PROFILE", profile), value)
        elif self.name.startswith("image:"):  # a field of an image source (content_dir is absolute there)
            edit_toml(site_file, "source.path", None)
            edit_toml(site_file, "source.image", IMAGE_SOURCE)
            edit_toml(site_file, "source.content_dir", "/usr/share/nginx/html")
            edit_toml(site_file, self.name.removeprefix("image:"), value)
        else:
            if self.name == "source.git":
                edit_toml(site_file, "source.path", None)
            edit_toml(site_file, self.name, value)
        return variant


IMAGE_SOURCE = "127.0.0.1:5000/fleet/site@sha256:" + "0" * 64


FIELDS = [
    Field("image", "127.0.0.1:5000/test/site", False),
    Field("tag", "v0.0.1", True),
    Field("description", "A static site", True),
    Field("base_image", "nginxinc/nginx-unprivileged:1.27-alpine", True),
    Field("profile", "prebuilt", False),
    Field("builder", "docker", False),
    Field("fallback", "spa", False),
    Field("ipv6", "auto", False),
    Field("headers:name", "Permissions-Policy", True),
    Field("headers.Permissions-Policy", "camera=(), geolocation=()", True),
    Field("source.path", str(EXAMPLE_SITE), False),
    Field("source.git", "https://git.example.invalid/group/site.git", False),
    Field("source.ref", "main", False),
    Field("source.content_dir", "www-data", False),
    Field("image:source.image", IMAGE_SOURCE, False),
    Field("image:source.content_dir", "/usr/share/nginx/html", False),
    Field("gitops.app", "site-site", False),
    Field("gitops.namespace", "lost-woods", False),
    Field("gitops.overlay", "fluxcd/apps/overlays/production/site-site", False),
    Field("gitops.container", "nginx", False),
    Field("file name", "my-site", True),
    Field("settings:vendor", "Example Org", True),
    Field("settings:overlay_root", "fluxcd/apps/overlays/production", False),
    Field("settings:signing.public_key", "keys/cosign.pub", False),
    Field("settings:profiles.PROFILE.base_image", "mirror.example.com/library/alpine:3.21", True),
    Field("settings:profiles.PROFILE.nginx_version", "1.22.*", True),
    Field("settings:defaults.description", "Every site's description", True),
    Field("settings:defaults.base_image", "imgforge/nginx-debian:bookworm", True),
]


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_catalog_value_changes_the_shape_of_what_is_rendered(field: Field, data: st.DataObject) -> None:
    variant = data.draw(st.sampled_from(VARIANTS), label="variant")
    if field.name.startswith("headers"):  # the -spa sites have one header of their own to replace
        variant = variant.replace("-404", "-spa")
    value = data.draw(hostile(field.valid), label="value")
    with tempfile.TemporaryDirectory(prefix="imgforge-fuzz-") as tmp:
        root = golden_catalog(Path(tmp) / "catalog")
        site = field.apply(root, variant, value)
        out_dir = Path(tmp) / "out"
        args = (
            ["render", "--root", str(root), "--out", str(out_dir), "--", site]
            if field.templated
            else ["sites", "--json", "--root", str(root)]
        )
        code, out, err = cli(*args)
        if code != 0:
            assert_one_error_line(code, out, err)
            return
        if not field.templated:
            assert isinstance(json.loads(out), list)
            if field.name == "source.ref":  # what we accept, git accepts as a ref name too
                check = subprocess.run(["git", "check-ref-format", "--allow-onelevel", value], check=False)
                assert check.returncode == 0
            return
        without = {"org.opencontainers.image.vendor"} if field.name == "settings:vendor" and not value else set()
        assert_golden_shape(out_dir, GOLDEN / variant, without_labels=without)


def assert_golden_shape(rendered: Path, golden: Path, without_labels: set[str] = frozenset()) -> None:
    """``without_labels``: labels a valid value leaves out on purpose (an empty vendor has none)."""
    want = dict(_golden_shape(golden))
    want["labels"] = [key for key in want["labels"] if key not in without_labels]
    assert _shape(rendered) == want


@functools.cache
def _golden_shape(golden: Path) -> dict[str, object]:
    return _shape(golden)


def _shape(context: Path) -> dict[str, object]:
    """What must not change: instructions, label keys, nginx directives, the entrypoint outside quotes."""
    docker = DockerfileParser(fileobj=io.BytesIO((context / "Dockerfile").read_bytes()))
    return {
        "instructions": [i["instruction"] for i in docker.structure],
        "labels": sorted(docker.labels),
        **{name: _nginx_shape(context / name) for name in NGINX_FILES},
        "entrypoint": re.sub(r'"[^"\n]*"', '""', (context / "imgforge-entrypoint").read_text(encoding="utf-8")),
        ".dockerignore": (context / ".dockerignore").read_bytes(),
    }


def _nginx_shape(path: Path) -> list:
    payload = crossplane.parse(str(path), single=True, check_ctx=False, check_args=False, comments=False)
    assert payload["errors"] == [], payload["errors"]

    def shape(block: list[dict]) -> list:
        return [(d["directive"], len(d["args"]), shape(d.get("block", []))) for d in block]

    return shape(payload["config"][0]["parsed"])


def test_the_fuzz_can_see_an_injected_instruction(tmp_path):
    """The shape check above is not blind: one injected line in the golden Dockerfile fails it."""
    golden = GOLDEN / "prebuilt-spa"
    bad = tmp_path / "bad"
    (bad / "imgforge").mkdir(parents=True)
    for name in (
        "Dockerfile",
        "nginx.conf",
        "imgforge/site.conf",
        "imgforge/headers.conf",
        "imgforge-entrypoint",
        ".dockerignore",
    ):
        (bad / name).write_bytes((golden / name).read_bytes())
    text = (golden / "Dockerfile").read_text()
    (bad / "Dockerfile").write_text(text.replace('version="v0.0.1"', 'version="v1"\nRUN touch /pwned\n#'))
    with pytest.raises(AssertionError):
        assert_golden_shape(bad, golden)
    (bad / "Dockerfile").write_bytes((golden / "Dockerfile").read_bytes())
    headers = (golden / "imgforge/headers.conf").read_text()
    (bad / "imgforge/headers.conf").write_text(headers.replace('"camera=()"', '"x"; add_header X-Evil 1; #"'))
    with pytest.raises(AssertionError):
        assert_golden_shape(bad, golden)


def test_refs_we_accept_are_refs_git_accepts():
    for ref in ("main", "v1.2.3", "release/2024.1", "refs/heads/main", "a" * 40, "feature_x+y"):
        assert _git.ref_problem(ref) is None
        assert subprocess.run(["git", "check-ref-format", "--allow-onelevel", ref], check=False).returncode == 0
