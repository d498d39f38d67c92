"""The site catalog: ``imgforge.toml`` (defaults for all sites) plus ``sites/<name>.toml``.

Validation is strict on purpose: a typo in a catalog must never turn into a silently different
image. Every problem is reported as one line naming the file and the field
(``sites/foo.toml: uid: expected an integer ≥ 1, got "nginx"``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imgforge import _git as _gitrun
from imgforge._fs import atomic_write_text
from imgforge.errors import CatalogError, UnknownSite, UsageError

CATALOG_FILE = "imgforge.toml"
SITES_DIR = "sites"
PROFILES = ("alpine", "debian", "prebuilt")
BUILDERS = ("docker", "oci")
# Profiles whose image the oci builder can assemble: it puts files on a base, it runs nothing in it.
OCI_PROFILES = ("prebuilt",)
DEFAULT_OVERLAY_ROOT = "fluxcd/apps/overlays/production"

# Every string of the catalog must match one of these in full (``fullmatch``: ``$`` would accept
# a trailing newline, and a newline in a value is a new Dockerfile instruction or nginx line).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_TEXT = rf"(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG_TEXT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
REPOSITORY = _REPOSITORY = re.compile(_REPOSITORY_TEXT)
_TAG = re.compile(_TAG_TEXT)
_IMAGE_REF = re.compile(rf"{_REPOSITORY_TEXT}(?::{_TAG_TEXT})?(?:@sha256:[0-9a-f]{{64}})?")
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
# Visible ASCII, spaces inside: what an HTTP field value may hold (RFC 9110), minus obs-text.
HEADER_VALUE = re.compile(r"[!-~](?:[ -~]{0,4094}[!-~])?")
# A package version pin: Debian (epoch:upstream-revision, ~, +) or apk; ``*`` as apt's glob.
_VERSION_PIN = re.compile(r"[A-Za-z0-9*][A-Za-z0-9.+~:*_-]{0,63}")
# One line of text for a label: no control, line-separator or bidi/format characters.
_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]{0,256}")
_K8S_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # DNS-1123 label
_APP = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")  # a folder in the GitOps repo
# Folders: a local source path may be absolute or go up (../site); the others stay inside.
_LOCAL_PATH = re.compile(r"(?!-)[\w.+@,=~ /-]{1,4096}")
_INSIDE_PATH = re.compile(r"[\w.+@,=-]+(?:/[\w.+@,=-]+)*")
_IMAGE_FOLDER = re.compile(r"(?:/[\w.+@,=-]+)+")  # an absolute folder inside an image: /var/www/html
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _show(value: Any) -> str:
    """A value for a one-line message: JSON-quoted, URL userinfo as ``***``, nothing unprintable."""
    try:
        text = _gitrun.redact(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError):
        text = _gitrun.redact(repr(value))
    if len(text) > 120:
        text = text[:117] + "…"
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _key(name: Any) -> str:
    """A TOML key as shown in a field path: bare when plain, else quoted like any value."""
    return name if isinstance(name, str) and _PLAIN_KEY.fullmatch(name) else _show(name)


def _int_in(lo: int, hi: int) -> BeforeValidator:
    # Ranges a person would type ("from 1024 to 65535") are shown whole; a technical ceiling
    # (UIDs stop at 2^31-1) only when it is the bound that was crossed.
    whole = hi <= 65535

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or value > hi:
            if whole:
                expected = f"an integer from {lo} to {hi}"
            elif isinstance(value, int) and not isinstance(value, bool) and value > hi:
                expected = f"an integer ≤ {hi}"
            else:
                expected = f"an integer ≥ {lo}"
            raise ValueError(f"expected {expected}, got {_show(value)}")
        return value

    return BeforeValidator(check)


def _one_of(*choices: str) -> BeforeValidator:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {_show(value)}")
        return str(value)

    return BeforeValidator(check)


def _matching(pattern: re.Pattern[str], what: str) -> BeforeValidator:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"expected {what}, got {_show(value)}")
        return value

    return BeforeValidator(check)


def _path_inside(what: str) -> BeforeValidator:
    """A relative folder that cannot leave the place it is relative to (no ``..``, not absolute)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or not _INSIDE_PATH.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(f"expected {what} (a relative path without ..), got {_show(value)}")
        return value

    return BeforeValidator(check)


def _checked_by(problem: Callable[[str], str | None]) -> BeforeValidator:
    """A string that ``problem(value)`` finds nothing wrong with (the git runner's own rules)."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_show(value)}")  # noqa: TRY004 (pydantic reports only ValueError)
        if why := problem(value):
            raise ValueError(f"{why}, got {_show(value)}")
        return value

    return BeforeValidator(check)


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f'expected a table of header = "value", got {_show(value)}')  # noqa: TRY004 (as above)
    for name, text in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(f"expected header names of letters, digits and dashes, got {_show(name)}")
        if not isinstance(text, str) or not HEADER_VALUE.fullmatch(text):
            raise ValueError(
                f"{name}: expected a non-empty value of printable ASCII (spaces inside only), got {_show(text)}"
            )
    return value


_ImageRef = Annotated[str, _matching(_IMAGE_REF, "an image reference like registry.example.com/team/nginx:1.27")]
_Text = Annotated[str, _matching(_TEXT, "one line of text, at most 256 characters, without control characters")]
_GitopsFolder = Annotated[str, _path_inside("a folder of the GitOps repo")]
_Id = Annotated[int, _int_in(1, 2**31 - 1)]
_LocalPath = Annotated[str, _matching(_LOCAL_PATH, "a folder path of letters, digits, spaces and ._+@,=~/-")]
_GitUrl = Annotated[str, _checked_by(_gitrun.url_problem)]
_GitRef = Annotated[str, _checked_by(_gitrun.ref_problem)]
_AppFolder = Annotated[str, _matching(_APP, "a folder name of letters, digits and ._- like mysite-site")]
_Namespace = Annotated[str, _matching(_K8S_NAME, "a Kubernetes namespace (lowercase letters, digits, dashes)")]
_Container = Annotated[str, _matching(_K8S_NAME, "a container name (lowercase letters, digits, dashes)")]
_VersionPin = Annotated[str, _matching(_VERSION_PIN, "a package version like 1.26 or 1.22.*")]
_Repository = Annotated[str, _matching(_REPOSITORY, "an image repository without tag, like cr.example.com/team/site")]
_SiteName = Annotated[str, _matching(SITE_NAME, "a site name of lowercase letters, digits and dashes")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _content_dir(value: Any) -> str:
    """A folder inside the source: relative for a folder or repo, absolute for an image (checked
    against the kind of source by ``Source``); never ``..``."""
    plain = isinstance(value, str) and (_INSIDE_PATH.fullmatch(value) or _IMAGE_FOLDER.fullmatch(value))
    if not plain or ".." in value.split("/"):
        raise ValueError(f"expected a folder inside the source (a relative path without ..), got {_show(value)}")
    return str(value)


class Source(_Strict):
    """Where the site's static files come from: a local folder, a git repository at a ref, or a
    folder inside a container image (the root image a site runs as today)."""

    path: _LocalPath | None = None
    git: _GitUrl | None = None
    image: _ImageRef | None = None
    ref: _GitRef = "main"
    content_dir: Annotated[str, BeforeValidator(_content_dir)] = "www-data"

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if sum(x is not None for x in (self.path, self.git, self.image)) > 1:
            raise ValueError("set one of path, git or image, not several")
        absolute = self.content_dir.startswith("/")
        if self.image is not None and not absolute:
            raise ValueError(
                "content_dir: an image source needs the absolute folder in the image, like "
                f"/usr/share/nginx/html, got {_show(self.content_dir)}"
            )
        if self.image is None and absolute:
            raise ValueError(
                f"content_dir: expected a folder inside the source (a relative path without ..), "
                f"got {_show(self.content_dir)}"
            )
        return self


class GitopsTarget(_Strict):
    """Where the site's app lives in the GitOps repo (used by ``imgforge gitops``)."""

    app: _AppFolder | None = None
    namespace: _Namespace | None = None
    overlay: _GitopsFolder | None = None
    container: _Container | None = None


class Profile(_Strict):
    """A base profile: which base image, and how nginx gets into it."""

    base_image: _ImageRef
    nginx_version: _VersionPin | None = None


class Site(_Strict):
    name: _SiteName
    file: str
    image: _Repository
    tag: Annotated[str, _matching(_TAG, "an image tag like v1.2.3")]
    description: _Text = ""
    profile: Annotated[str, _one_of(*PROFILES)] = "alpine"
    builder: Annotated[str, _one_of(*BUILDERS)] = "docker"
    base_image: _ImageRef | None = None
    uid: _Id = 100
    gid: _Id = 101
    port: Annotated[int, _int_in(1024, 65535)] = 8080
    fallback: Annotated[str, _one_of("spa", "404")] = "404"
    ipv6: Annotated[str, _one_of("auto", "on", "off")] = "auto"
    read_only_root: bool = True
    gzip: bool = True
    cache_assets: bool = True
    headers: Annotated[dict[str, str], BeforeValidator(_headers)] = Field(default_factory=dict)
    source: Source | None = None
    gitops: GitopsTarget = Field(default_factory=GitopsTarget)

    @field_validator("builder")
    @classmethod
    def _builder_fits_profile(cls, value: str, info: ValidationInfo) -> str:
        profile = info.data.get("profile")
        if value == "oci" and profile is not None and profile not in OCI_PROFILES:
            raise ValueError(
                f"the oci builder needs profile {' or '.join(OCI_PROFILES)} (profile {profile} installs nginx "
                'with a package manager, which only the docker builder can run), got "oci"'
            )
        return value

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}"

    @property
    def app(self) -> str:
        return self.gitops.app or f"{self.name}-site"


class Signing(_Strict):
    """``[signing]``: the public key ``update``, ``pr``, ``verify`` and ``fleet`` check images with."""

    public_key: (
        Annotated[str, _matching(_LOCAL_PATH, "a file path of letters, digits, spaces and ._+@,=~/-")] | None
    ) = None


class Settings(_Strict):
    """``imgforge.toml``: defaults merged under every site, profile overrides, GitOps layout."""

    defaults: dict[str, Any] = Field(default_factory=dict)
    profiles: dict[str, Profile] = Field(default_factory=dict)
    overlay_root: _GitopsFolder = DEFAULT_OVERLAY_ROOT
    vendor: _Text = ""
    signing: Signing = Field(default_factory=Signing)
    pin_digest: bool = False  # gitops/pr/update write tag@digest unless --no-pin-digest


BUILTIN_PROFILES = {
    "alpine": Profile(base_image="alpine:3.21", nginx_version="1.26"),
    "debian": Profile(base_image="debian:bookworm-slim", nginx_version="1.22.*"),
    "prebuilt": Profile(base_image="nginxinc/nginx-unprivileged:1.27-alpine"),
}


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    settings: Settings
    sites: dict[str, Site]

    def site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise UnknownSite(name, list(self.sites)) from None

    def profile(self, site: Site) -> Profile:
        """The site's profile with the catalog's overrides and the site's own ``base_image``."""
        profile = self.settings.profiles.get(site.profile, BUILTIN_PROFILES[site.profile])
        if site.base_image:
            profile = profile.model_copy(update={"base_image": site.base_image})
        return profile

    def site_path(self, site: Site) -> Path:
        return self.root / site.file

    @property
    def public_key(self) -> Path | None:
        """``[signing] public_key``, relative to the catalog folder (None when not set)."""
        key = self.settings.signing.public_key
        return self.root / key if key else None


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or os.environ.get("IMGFORGE_ROOT") or ".").resolve()


def load_catalog(root: str | os.PathLike[str] | None = None) -> Catalog:
    root = resolve_root(root)
    settings_file = root / CATALOG_FILE
    if not settings_file.is_file():
        raise CatalogError(str(settings_file), "not found (is --root / IMGFORGE_ROOT the catalog folder?)")
    settings = _validate(Settings, _read_toml(settings_file, root), _rel(settings_file, root))
    if unknown := sorted(set(settings.profiles) - set(PROFILES)):
        raise CatalogError(
            CATALOG_FILE, f"profiles.{_key(unknown[0])}: unknown profile; expected one of {', '.join(PROFILES)}"
        )
    _check_defaults(settings.defaults)
    sites: dict[str, Site] = {}
    for path in sorted((root / SITES_DIR).glob("*.toml")):
        rel = _rel(path, root)
        if not SITE_NAME.fullmatch(path.stem):
            raise CatalogError(
                f"{SITES_DIR}/{_key(path.name)}", "site file names must be lowercase letters, digits and dashes"
            )
        data = _merge(settings.defaults, _read_toml(path, root))
        sites[path.stem] = _validate(Site, {**data, "name": path.stem, "file": rel}, rel)
    return Catalog(root=root, settings=settings, sites=sites)


def check_new_site(catalog: Catalog, name: str, text: str) -> None:
    """CatalogError when ``text`` would not be a valid ``sites/<name>.toml`` of ``catalog``
    (checked with the catalog's defaults, before anything is written)."""
    rel = f"{SITES_DIR}/{name}.toml"
    try:
        own = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(rel, f"invalid TOML: {e}") from e
    _validate(Site, {**_merge(catalog.settings.defaults, own), "name": name, "file": rel}, rel)


def _check_defaults(defaults: dict[str, Any]) -> None:
    """Validate ``[defaults]`` on its own so its mistakes are reported against imgforge.toml."""
    for key in ("image", "tag", "name", "file"):
        if key in defaults:
            raise CatalogError(CATALOG_FILE, f"defaults.{key}: cannot be a default; set it in each site file")
    try:
        Site.model_validate({**defaults, "name": "defaults", "file": CATALOG_FILE, "image": "x/x", "tag": "v0"})
    except ValidationError as e:
        err = e.errors()[0]
        raise CatalogError(CATALOG_FILE, "defaults." + _describe(Site, err)) from None


def check_tag(tag: str) -> str:
    """A valid image tag, or UsageError naming what is wrong."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise UsageError(f"tag: expected an image tag like v1.2.3 or dev-1a2b3c4d, got {_show(tag)}")
    return tag


def set_site_base(catalog: Catalog, site: Site, base_image: str) -> None:
    """Rewrite only the ``base_image`` value of a site file (``base update`` moving a digest pin)."""
    if not _IMAGE_REF.fullmatch(base_image):
        raise CatalogError(site.file, f"base_image: expected an image reference, got {_show(base_image)}")
    _set_site_value(catalog, site, "base_image", base_image)


def set_site_tag(catalog: Catalog, site: Site, tag: str) -> None:
    """Rewrite only the ``tag`` value of a site file; comments and layout stay as they were."""
    if not _TAG.fullmatch(tag):
        raise CatalogError(site.file, f"tag: expected an image tag like v1.2.3, got {_show(tag)}")
    _set_site_value(catalog, site, "tag", tag)


def _set_site_value(catalog: Catalog, site: Site, key: str, value: str) -> None:
    """Rewrite one top-level value of a site file (already checked); comments and layout stay."""
    import tomlkit  # only these rewrites need a round-trip TOML library

    path = catalog.site_path(site)
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    doc[key] = value
    atomic_write_text(path, tomlkit.dumps(doc))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read_toml(path: Path, root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CatalogError(_rel(path, root), f"invalid TOML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(_rel(path, root), f"cannot read: {e}") from e


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(model: type[BaseModel], data: dict[str, Any], file: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise CatalogError(file, _describe(model, e.errors()[0])) from None


def _describe(model: type[BaseModel], err: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    field = ".".join(_key(p) for p in loc) or "(file)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(allowed)}"
        return f"{field}: unknown key{hint}"
    if kind == "missing":
        return f"{field}: required key is missing"
    if kind == "value_error":
        return f"{field}: {err['ctx']['error']}"
    expected = {
        "string_type": "a string",
        "bool_type": "true or false",
        "dict_type": "a table",
        "model_type": "a table",
        "model_attributes_type": "a table",
    }.get(kind, err["msg"].lower())
    return f"{field}: expected {expected}, got {_show(err.get('input'))}"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = next((a for a in candidates if issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return sorted(n for n in model.model_fields if n not in ("name", "file"))


def catalog_public_key(root: str | os.PathLike[str] | None = None) -> Path | None:
    """``[signing] public_key`` of the catalog at ``root`` (None: no catalog there, or no key set).

    Reads ``imgforge.toml`` only, so ``imgforge verify`` works from any folder and from a catalog
    whose sites do not concern it.
    """
    folder = resolve_root(root)
    settings_file = folder / CATALOG_FILE
    if not settings_file.is_file():
        return None
    settings = _validate(Settings, _read_toml(settings_file, folder), _rel(settings_file, folder))
    key = settings.signing.public_key
    return folder / key if key else None
