"""Turn an existing root site repo into a catalog entry, so the hardened image behaves like the old one.

The owner fixed each root site by reading its files; this reads them the same way (crossplane for
nginx, the Dockerfile's COPY for the content folder) and writes down what the catalog can express:
content folder, SPA or 404 fallback (from ``try_files``), asset caching, response headers, gzip
and IPv6. Everything else the old config did is listed, with file and line, instead of being
dropped silently: a migration that loses a redirect must say so.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import Any

import tomlkit

from imgforge import _git as _gitrun
from imgforge import config
from imgforge._fs import atomic_write_text
from imgforge.audit._repo import Repo, base_name, instructions, read_repo
from imgforge.audit._shell import expand
from imgforge.audit.nginx_rules import Directive, Parsed, walk_directives
from imgforge.errors import CatalogError, GitError, Refused, UsageError

# Directives the hardened templates replace or that do not change what a visitor gets.
_REPLACED = {
    "user",
    "pid",
    "worker_processes",
    "worker_connections",
    "events",
    "http",
    "daemon",
    "error_log",
    "access_log",
    "listen",
    "server_name",
    "sendfile",
    "tcp_nopush",
    "tcp_nodelay",
    "keepalive_timeout",
    "server_tokens",
    "default_type",
    "types",
    "types_hash_max_size",
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "absolute_redirect",
    "multi_accept",
    "include",
    "root",
    "index",
    "try_files",
    "add_header",
    "expires",
    "gzip",
    "charset",
    "autoindex",
}
_SEMVER_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_IMAGE_IN_CI = re.compile(r"(?:-t|--tag)[ =]+['\"]?([a-z0-9][a-z0-9._/:-]*?)(?::[\w.$-]+)?['\"]?(?:\s|$)")


def carried_header(name: str, value: str) -> bool:
    """A header the catalog can hold with the same effect: valid there, and no nginx ``$variable``
    (the old config expanded it; the catalog sends header values as written)."""
    return bool(config.HEADER_NAME.fullmatch(name) and config.HEADER_VALUE.fullmatch(value)) and "$" not in value


def _where(rel: str, d: Directive) -> str:
    return f"{rel}:{d['line']}"


def _text(d: Directive) -> str:
    return " ".join([d["directive"], *d["args"]])


def _servers(repo: Repo) -> list[tuple[str, Directive]]:
    return [
        (rel, d)
        for rel, parsed in repo.nginx.items()
        for d, _ in walk_directives(parsed)
        if d["directive"] == "server" and "block" in d
    ]


def _is_asset_location(d: Directive) -> bool:
    """A regex location that sets long-lived caching: what ``cache_assets`` stands for."""
    if d["directive"] != "location" or not d["args"] or d["args"][0] not in ("~", "~*"):
        return False
    inner = d.get("block", [])
    return any(
        x["directive"] == "expires" and x["args"] and x["args"][0] not in ("off", "epoch") for x in inner
    ) or any(
        x["directive"] == "add_header" and x["args"][:1] == ["Cache-Control"] and "max-age" in " ".join(x["args"][1:])
        for x in inner
    )


def nginx_behaviour(nginx: dict[str, Parsed]) -> dict[str, Any]:
    """What visitors see from a set of parsed nginx files: fallback, gzip, caching, headers, IPv6.

    Also used by the tests to prove that ``render`` of a migrated site behaves like the old config.
    """
    out: dict[str, Any] = {
        "fallback": "404",
        "gzip": False,
        "cache_assets": False,
        "headers": {},
        "ipv6": False,
        "try_files": None,
    }

    def scan(rel: str, block: Parsed, nested: bool) -> None:
        for d in block:
            name, args = d["directive"], d["args"]
            if name == "location":
                out["cache_assets"] |= _is_asset_location(d)
                scan(rel, d.get("block", []), nested or args != ["/"])
            elif "block" in d:
                scan(rel, d["block"], nested)
            elif name == "gzip" and args == ["on"]:
                out["gzip"] = True
            elif name == "listen" and args and args[0].startswith("[::]"):
                out["ipv6"] = True
            elif name == "try_files" and not nested and args:
                out["try_files"] = (rel, d)
                out["fallback"] = "spa" if args[-1].endswith(".html") and args[-1] != "/404.html" else "404"
            elif name == "add_header" and len(args) >= 2 and not nested and args[0].lower() != "cache-control":
                out["headers"][args[0]] = args[1]

    for rel, parsed in nginx.items():
        scan(rel, parsed, False)
    return out


def _note(d: Directive, behaviour: dict[str, Any]) -> str | None:
    """Why a directive of the kept server is not carried ("" for no reason to add), or None if it is."""
    name, args = d["directive"], d["args"]
    if name == "include":
        return None if _harmless_include(args) else ""
    if name == "expires":
        return (
            None if args[:1] in (["1y"], ["365d"], ["max"], ["12M"]) else "assets are cached for one year (immutable)"
        )
    if name == "add_header":
        if len(args) >= 2 and "$" in args[1]:
            return "uses an nginx variable; catalog header values are sent as written"
        return None if len(args) >= 2 and carried_header(args[0], args[1]) else "value cannot be written in the catalog"
    if name == "index":
        return None if args == ["index.html"] else "only index.html is an index"
    if name == "charset":
        return None if args[:1] == ["utf-8"] else "pages are served as utf-8"
    if name == "autoindex":
        return None if args[:1] != ["on"] else "directory listings are off"
    if name == "try_files":
        return None if args[-1:] in (["=404"], ["/index.html"]) else f"fallback becomes {behaviour['fallback']!r}"
    if name == "gzip_types":
        return "imgforge compresses its own list of types"
    return None if name in _REPLACED or name.startswith("gzip_") else ""


def _not_carried(repo: Repo, behaviour: dict[str, Any]) -> list[str]:
    servers = _servers(repo)
    rooted = [d for _, d in servers if any(x["directive"] == "root" for x in d["block"])]
    candidates = rooted or [d for _, d in servers]
    main: Directive | None = candidates[0] if candidates else None
    notes: list[str] = []

    def scan(rel: str, block: Parsed, in_assets: bool) -> None:
        for d in block:
            name, args = d["directive"], d["args"]
            if name == "server" and d is not main:
                names = " ".join(a for x in d["block"] if x["directive"] == "server_name" for a in x["args"])
                notes.append(f"{_where(rel, d)}: server {names or '(unnamed)'} {{...}}: imgforge serves one site")
            elif name == "location" and args != ["/"] and not _is_asset_location(d):
                notes.append(f"{_where(rel, d)}: location {' '.join(args)} {{...}}")
            elif "block" in d:
                scan(rel, d["block"], in_assets or (name == "location" and args != ["/"]))
            elif in_assets and name == "add_header" and args[:1] != ["Cache-Control"]:
                notes.append(f"{_where(rel, d)}: {_text(d)}: assets get the site's headers and Cache-Control only")
            elif (why := _note(d, behaviour)) is not None:
                notes.append(f"{_where(rel, d)}: {_text(d)}" + (f": {why}" if why else ""))

    for rel, parsed in repo.nginx.items():
        scan(rel, parsed, False)
    return notes


def _harmless_include(args: list[str]) -> bool:
    """mime.types and the conf.d-style globs (whose files are read here anyway) change nothing."""
    target = args[0] if args else ""
    return target.endswith(("mime.types", "*.conf", "/*"))


def _content_dir(repo: Repo) -> str:
    roots = [
        d["args"][0].rstrip("/")
        for parsed in repo.nginx.values()
        for d, _ in walk_directives(parsed)
        if d["directive"] == "root" and d["args"]
    ]
    for src, dest in repo.dir_copies:
        if dest.rstrip("/") in roots or (not roots and dest.rstrip("/") == "/usr/share/nginx/html"):
            return src or "."
    for root in repo.webroots:
        if not root.startswith("/"):
            return root  # a conventional folder name found in the repo
    raise UsageError(
        f"{repo.root}: cannot tell which folder holds the site's files (no COPY into the nginx "
        "root, no www-data/ or public/)"
    )


def _profile(repo: Repo) -> tuple[str | None, str | None]:
    """(profile, note) from the old base image."""
    if repo.final is None:
        return None, None
    base = repo.final.external_base()
    name = base_name(base)
    if name in ("alpine", "nginx") and (name == "alpine" or "alpine" in base):
        return "alpine", None
    if name in ("debian", "ubuntu", "nginx"):
        return "debian", None
    if name == "nginxinc/nginx-unprivileged":
        return "prebuilt", None
    return (
        None,
        f"{repo.dockerfile}:{repo.final.line}: FROM {base}: not a known profile base; the catalog default is used",
    )


def _uid_gid(repo: Repo) -> tuple[int, int] | None:
    users = instructions(repo.final, "USER") if repo.final else []
    if users:
        user, _, group = expand(users[-1]["value"].strip(), repo.env).partition(":")
        if user.isdigit() and group.isdigit() and int(user) > 0 and int(group) > 0:
            return int(user), int(group)
    return None


def _git(repo: Path, *args: str) -> str:
    """What git says about the old repo, or "" when it cannot say (no git, not a repo, no remote)."""
    try:
        return _gitrun.out(*args, cwd=repo, timeout=30)
    except GitError:
        return ""


def _next_tag(repo: Path) -> tuple[str, str]:
    """The patch after the repo's newest v-semver tag: the hardened image is a new release."""
    versions = sorted(
        tuple(map(int, m.groups())) for t in _git(repo, "tag", "--list").split() if (m := _SEMVER_TAG.match(t))
    )
    if not versions:
        return "v0.0.1", "no version tag in the repo"
    major, minor, patch = versions[-1]
    return f"v{major}.{minor}.{patch + 1}", f"the repo's newest tag is v{major}.{minor}.{patch}"


def _image(repo: Path, catalog: config.Catalog) -> tuple[str, str]:
    """The image repository: from the repo's CI files, else the catalog's registry path + folder name."""
    ci = [repo / ".gitlab-ci.yml", *sorted((repo / ".github" / "workflows").glob("*.y*ml")), repo / "Makefile"]
    for path in ci:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for m in _IMAGE_IN_CI.finditer(text):
            if "$" not in m.group(1) and "/" in m.group(1):
                return m.group(1), f"from {path.relative_to(repo)}"
    prefixes = collections.Counter(s.image.rsplit("/", 1)[0] for s in catalog.sites.values() if "/" in s.image)
    name = repo.resolve().name.lower()
    if prefixes and re.match(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$", name):
        prefix = prefixes.most_common(1)[0][0]
        return f"{prefix}/{name}", f"guessed: the catalog's {prefix}/ + the folder name; check it"
    raise UsageError(f"{repo}: cannot tell the image repository (no `-t` in its CI files); pass --image")


def migrate_repo(
    path: str | os.PathLike[str],
    site_name: str,
    catalog_root: str | os.PathLike[str] | None,
    *,
    image: str | None = None,
    tag: str | None = None,
) -> tuple[str, list[str]]:
    """The text of ``sites/<site_name>.toml`` for the repo at ``path``, and what it could not carry."""
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", site_name):
        raise UsageError(f"site name {site_name!r}: use lowercase letters, digits and dashes")
    catalog = config.load_catalog(catalog_root)
    if site_name in catalog.sites:
        raise Refused(f"{config.SITES_DIR}/{site_name}.toml already exists; not overwriting it")
    repo = read_repo(path)
    if not repo.nginx:
        raise UsageError(f"{repo.root}: no nginx config found: nothing to migrate")
    behaviour = nginx_behaviour(repo.nginx)
    not_carried = _not_carried(repo, behaviour)
    defaults = catalog.settings.defaults
    image, image_why = (image, "given on the command line") if image else _image(repo.root, catalog)
    tag, tag_why = (tag, "given on the command line") if tag else _next_tag(repo.root)

    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"{site_name} — migrated by `imgforge migrate` from {repo.root.name}."))
    doc.add(tomlkit.comment("`imgforge audit` on the old repo lists what the hardening changes."))
    doc.add("image", tomlkit.string(image))
    doc["image"].comment(image_why)
    doc.add("tag", tomlkit.string(tag))
    doc["tag"].comment(tag_why)
    doc.add("description", f"{repo.root.name} static site")
    profile, note = _profile(repo)
    if note:
        not_carried.append(note)
    if profile and profile != defaults.get("profile", "alpine"):
        doc.add("profile", profile)
    if (ids := _uid_gid(repo)) and ids != (defaults.get("uid", 100), defaults.get("gid", 101)):
        doc.add("uid", ids[0])
        doc.add("gid", ids[1])
    doc.add("fallback", behaviour["fallback"])
    doc["fallback"].comment("from try_files" if behaviour["try_files"] else "no try_files: missing files are 404")
    doc.add("ipv6", "auto" if behaviour["ipv6"] else "off")
    doc["ipv6"].comment("the old config listened on [::]" if behaviour["ipv6"] else "the old config had no [::] listen")
    doc.add("gzip", behaviour["gzip"])
    doc.add("cache_assets", behaviour["cache_assets"])
    source = tomlkit.table()
    source.add("path", _relative_to(repo.root, catalog.root))
    source.add("content_dir", _content_dir(repo))
    if remote := _gitrun.strip_userinfo(_git(repo.root, "remote", "get-url", "origin")):
        source.add(tomlkit.comment(f"git = {_toml_string(remote)}  # use instead of path to build from the repo"))
    doc.add(tomlkit.nl())
    doc.add("source", source)
    headers = {n: v for n, v in behaviour["headers"].items() if carried_header(n, v)}
    if headers:
        doc.add(tomlkit.nl())
        doc.add("headers", tomlkit.table())
        for name, value in headers.items():
            doc["headers"].add(name, value)
    return tomlkit.dumps(doc), not_carried


def _toml_string(text: str) -> str:
    """``text`` as one TOML basic string (a comment line must not be broken by a newline in it)."""
    return tomlkit.string(text).as_string()


def _relative_to(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def write_site(catalog_root: str | os.PathLike[str] | None, site_name: str, text: str) -> Path:
    """Write the new site file (never over an existing one) and prove the catalog still loads."""
    root = config.resolve_root(catalog_root)
    path = root / config.SITES_DIR / f"{site_name}.toml"
    if path.exists():
        raise Refused(f"{config.SITES_DIR}/{site_name}.toml already exists; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    try:
        config.load_catalog(root)
    except CatalogError:
        path.unlink(missing_ok=True)
        raise
    return path
