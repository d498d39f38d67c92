"""Audit one site/image repo: its Dockerfile, its nginx configs and the files it serves.

The checks are the ones that broke the owner's hand-made non-root migrations: nginx directives
that need root, a USER the kubelet cannot verify, a runtime template step whose tool was never
installed (the sm-lickitung v0.0.4 bug) or that writes into a read-only root, and web roots that
ship PHP mailers with their SMTP passwords. nginx configs are read with crossplane (a real nginx
parser, so line numbers and nesting are right); the Dockerfile with dockerfile-parse.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from pathlib import Path

from imgforge.audit._repo import (
    CONVENTIONAL_WEBROOTS,
    Repo,
    Stage,
    base_name,
    copy_args,
    expand,
    instructions,
    read_repo,
    walk_directives,
)
from imgforge.audit.findings import Finding, finding, sort_key

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_NGINX_FAMILY = ("nginx", "nginxinc/nginx-unprivileged")
# What well-known bases already provide, so a Dockerfile relying on them is not blamed for it.
_BASE_FACTS = {
    "nginx": {"stopsignal": True, "tools": {"envsubst"}, "user": None},
    "nginxinc/nginx-unprivileged": {"stopsignal": True, "tools": {"envsubst"}, "user": "101"},
    "cgr.dev/chainguard/nginx": {"stopsignal": False, "tools": set(), "user": "65532"},
}
# Template tools seen in entrypoints, and the packages (apk, apt, dnf) that provide them.
_TOOLS = {
    "envsubst": {"gettext", "gettext-envsubst", "gettext-base", "gettext-tiny"},
    "gomplate": {"gomplate"},
    "dockerize": {"dockerize"},
    "confd": {"confd"},
    "j2": {"j2cli", "py3-j2cli"},
    "sed": None,  # None: part of every base (busybox, coreutils)
}
_TOOL_RE = re.compile(r"(?<![\w./-])(envsubst|gomplate|dockerize|confd|j2|sed)\b(.*)")
_OUT_RE = re.compile(r"(?:>>?|\btee(?:\s+-a)?|\s-o|--out(?:put)?[= ])\s*(\S+)")
_SERVER_SIDE = {
    ".php",
    ".php3",
    ".php4",
    ".php5",
    ".php7",
    ".phtml",
    ".phar",
    ".inc",
    ".py",
    ".pl",
    ".cgi",
    ".rb",
    ".asp",
    ".aspx",
    ".jsp",
    ".sh",
}
_SECRET_NAMES = (
    "*.key",
    "*.pem",
    "*.p12",
    "*.pfx",
    "*.kdbx",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    ".env",
    ".env.*",
    "*.env",
    ".htpasswd",
    ".git-credentials",
    ".npmrc",
    ".pgpass",
)
_JUNK_NAMES = (
    "thumbs.db",
    "desktop.ini",
    ".ds_store",
    "*.psd",
    "*.ai",
    "*.xcf",
    "*.sketch",
    "*.swp",
    "*.swo",
    "*~",
    "*.bak",
    "*.orig",
    "*.tmp",
)
_TEXT_EXTS = _SERVER_SIDE | {".env", ".ini", ".conf", ".json", ".yml", ".yaml", ".js", ".txt", ".cfg"}
_CREDENTIAL = re.compile(
    r"""(\w*(?:pass(?:word|wd)?|pwd|secret|token|api_?key)\w*)['"]?\s*(?:[,:=]|=>)\s*"""
    r"""['"]([^'"\s$]{4,})['"]""",
    re.IGNORECASE,
)


def audit_repo(path: str | os.PathLike[str]) -> list[Finding]:
    """All findings for the repo at ``path``, sorted by file and line; AuditUnreadable if unreadable."""
    repo = read_repo(path)
    found: list[Finding] = []
    for rel, parsed in repo.nginx.items():
        found += _check_nginx(rel, parsed)
    if repo.final is not None:
        found += _check_dockerfile(repo)
        found += _check_templates(repo)
    found += _check_webroots(repo)
    return sorted(found, key=sort_key)


def _listen_port(arg: str) -> int | None:
    if arg.startswith("unix:"):
        return None
    text = arg.rsplit("]:", 1)[-1] if arg.startswith("[") else arg.rsplit(":", 1)[-1]
    return int(text) if text.isdigit() else None


def _check_nginx(rel: str, parsed: list[dict]) -> list[Finding]:
    out: list[Finding] = []
    seen: set[str] = set()
    for d, ctx in walk_directives(parsed):
        name, args, line = d["directive"], d["args"], d["line"]
        seen.add(name)
        if name == "user":
            out.append(finding("IMG001", rel, line, f"`user {' '.join(args)};`: remove it; the image's USER decides"))
        elif name == "pid" and args and not args[0].startswith("/tmp/"):
            out.append(finding("IMG002", rel, line, f"pid {args[0]}: move it to /tmp (e.g. /tmp/nginx.pid)"))
        elif name.endswith("_temp_path") and args and not args[0].startswith("/tmp/"):
            out.append(finding("IMG003", rel, line, f"{name} {args[0]}: move it under /tmp"))
        elif name == "listen" and args and (port := _listen_port(args[0])) is not None and port < 1024:
            out.append(finding("IMG004", rel, line, f"listen {args[0]}: use a port ≥ 1024 (e.g. 8080)"))
    top = {d["directive"] for d in parsed}
    if "events" in top or "http" in top:  # a main config: nginx's compiled-in defaults apply to it
        if "pid" not in seen:
            out.append(
                finding(
                    "IMG002",
                    rel,
                    None,
                    "no pid directive: the compiled-in default (/run or "
                    "/var/run) is not writable by a non-root user; set pid /tmp/nginx.pid",
                )
            )
        missing = [p for p in _TEMP_PATHS if f"{p}_temp_path" not in seen]
        if "http" in top and missing:
            out.append(
                finding(
                    "IMG003",
                    rel,
                    None,
                    "no "
                    + ", ".join(f"{p}_temp_path" for p in missing)
                    + ": the defaults are outside /tmp; set each under /tmp",
                )
            )
    return out


def _base_facts(image: str) -> dict:
    return _BASE_FACTS.get(base_name(image), {"stopsignal": False, "tools": set(), "user": None})


def _check_dockerfile(repo: Repo) -> list[Finding]:
    out: list[Finding] = []
    df, final, env = repo.dockerfile, repo.final, repo.env
    facts = _base_facts(final.external_base())
    users = instructions(final, "USER")
    if users:
        line, user = users[-1]["startline"] + 1, expand(users[-1]["value"].strip(), env)
        name = user.split(":")[0]
        if name in ("root", "0"):
            out.append(finding("IMG011", df, line, f"USER {user}: run as a non-root numeric UID (e.g. 100:101)"))
        elif not name.isdigit():
            out.append(
                finding("IMG012", df, line, f"USER {user}: use the numeric UID:GID so runAsNonRoot can be verified")
            )
    elif facts["user"] is None:
        out.append(finding("IMG010", df, None, "no USER: add a numeric non-root USER (e.g. USER 100:101)"))
    for item in instructions(final, "EXPOSE"):
        for word in expand(item["value"], env).split():
            port = word.split("/")[0]
            if port.isdigit() and int(port) < 1024:
                out.append(
                    finding(
                        "IMG013", df, item["startline"] + 1, f"EXPOSE {word}: expose the unprivileged port (e.g. 8080)"
                    )
                )
    if not instructions(final, "STOPSIGNAL") and not facts["stopsignal"]:
        out.append(finding("IMG040", df, None, "no STOPSIGNAL: add STOPSIGNAL SIGQUIT for a graceful nginx shutdown"))
    stage: Stage | None = final
    while stage is not None:  # every stage's external base ends up in the build
        if stage.parent is None and stage.base.lower() != "scratch":
            ref = stage.base.split("@")[0]
            tag = ref.rsplit("/", 1)[-1].partition(":")[2]
            if "@" not in stage.base and tag in ("", "latest"):
                out.append(
                    finding(
                        "IMG041", df, stage.line, f"FROM {stage.base}: pin a version tag (e.g. alpine:3.21) or a digest"
                    )
                )
        stage = stage.parent
    return out


def _installed(final: Stage) -> tuple[set[str], str]:
    """Packages installed by RUN lines of the final image, and the text of those RUN lines."""
    packages: set[str] = set()
    runs = " ".join(i["value"] for i in instructions(final, "RUN"))
    for m in re.finditer(r"\b(?:apk\s+add|apt(?:-get)?\s+install|(?:dnf|yum|microdnf)\s+install)\s+([^;&|]*)", runs):
        packages |= {w.split("=")[0].split("~")[0] for w in m.group(1).split() if not w.startswith("-")}
    return packages, runs


def _runtime_scripts(repo: Repo) -> list[tuple[str, int, str]]:
    """(file, first line, shell text) of what runs when the container starts: shell-form
    ENTRYPOINT/CMD, the repo's shell scripts they name, and scripts in /docker-entrypoint.d/."""
    out = []
    starters = instructions(repo.final, "ENTRYPOINT")[-1:] + instructions(repo.final, "CMD")[-1:]
    words: list[str] = []
    for item in starters:
        value = item["value"].strip()
        try:
            argv = json.loads(value) if value.startswith("[") else ["sh", "-c", value]
        except ValueError:
            argv = ["sh", "-c", value]
        words += argv
        if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"]) and len(argv) > 2:
            out.append((repo.dockerfile, item["startline"] + 1, argv[2]))
    for cpath, rel in repo.copies.items():
        named = any(
            w == cpath or (w.endswith("/" + os.path.basename(cpath))) or w == os.path.basename(cpath) for w in words
        )
        if named or cpath.startswith("/docker-entrypoint.d/"):
            try:
                text = (repo.root / rel).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text.startswith("#!") or rel.endswith(".sh"):
                out.append((rel, 1, text))
    return out


def _check_templates(repo: Repo) -> list[Finding]:
    out: list[Finding] = []
    packages, runs = _installed(repo.final)
    base_tools = _base_facts(repo.final.external_base())["tools"]
    copied_bins = {os.path.basename(c) for c in repo.copies} | {
        os.path.basename(w)
        for i in instructions(repo.final, "COPY") + instructions(repo.final, "ADD")
        for w in copy_args(i)[1][-1:]
    }
    for file, first, text in _runtime_scripts(repo):
        env = dict(repo.env)
        for n, line in enumerate(text.splitlines(), start=first):
            stripped = line.strip()
            if m := re.match(r"(?:export\s+)?(\w+)=(\S*)$", stripped):
                env[m.group(1)] = expand(m.group(2).strip("\"'"), env)
            if stripped.startswith("#") or not (m := _TOOL_RE.search(stripped)):
                continue
            tool, rest = m.group(1), m.group(2)
            if tool == "sed" and not re.search(r"\s-i", rest):
                continue
            provided = (
                _TOOLS[tool] is None
                or tool in base_tools
                or tool in copied_bins
                or bool(_TOOLS[tool] & packages)
                or f"/bin/{tool}" in runs
            )
            if not provided:
                pkgs = " or ".join(sorted(_TOOLS[tool]))
                out.append(
                    finding(
                        "IMG020", file, n, f"{tool} runs at start-up but is not installed in the image (install {pkgs})"
                    )
                )
            targets = list(_OUT_RE.findall(rest))
            if tool == "sed":
                try:
                    words = shlex.split(rest, comments=True)
                except ValueError:  # an unbalanced quote: fall back to plain words
                    words = rest.split()
                targets += [w for w in words[1:] if w.startswith("/")][-1:]
            for target in targets:
                where = expand(target.strip("\"'"), env)
                if where.startswith("/") and not where.startswith(("/tmp/", "/dev/")) and where != "/tmp":
                    out.append(
                        finding(
                            "IMG021",
                            file,
                            n,
                            f"{tool} writes {where} at start-up: write under /tmp (the root filesystem is read-only)",
                        )
                    )
    entrypoints = instructions(repo.final, "ENTRYPOINT")
    base_entrypoint = not entrypoints or "docker-entrypoint.sh" in entrypoints[-1]["value"]
    if base_name(repo.final.external_base()) in _NGINX_FAMILY and base_entrypoint:  # the base's envsubst step
        outdir = repo.env.get("NGINX_ENVSUBST_OUTPUT_DIR", "/etc/nginx/conf.d")
        templates = [c for c in repo.copies if c.startswith("/etc/nginx/templates/")]
        if templates and not outdir.startswith("/tmp"):
            line = next(
                (i["startline"] + 1 for i in instructions(repo.final, "COPY") if "/etc/nginx/templates" in i["value"]),
                None,
            )
            out.append(
                finding(
                    "IMG021",
                    repo.dockerfile,
                    line,
                    f"the base renders /etc/nginx/templates into {outdir} at "
                    "start-up: set NGINX_ENVSUBST_OUTPUT_DIR under /tmp",
                )
            )
    return out


def _refusals(repo: Repo) -> list[re.Pattern]:
    """Regex locations that answer 403/404 (or ``deny all``): files they match ship but are not served."""
    out = []
    for parsed in repo.nginx.values():
        for d, _ in walk_directives(parsed):
            args, block = d["args"], d.get("block", [])
            if d["directive"] != "location" or len(args) != 2 or args[0] not in ("~", "~*"):
                continue
            if any(
                (x["directive"] == "return" and x["args"][:1] in (["403"], ["404"]))
                or (x["directive"] == "deny" and x["args"] == ["all"])
                for x in block
            ):
                try:
                    out.append(re.compile(args[1], re.IGNORECASE if args[0] == "~*" else 0))
                except re.error:
                    continue
    return out


def _check_webroots(repo: Repo) -> list[Finding]:
    if not repo.webroots:
        where = ", ".join(CONVENTIONAL_WEBROOTS)
        return [
            finding(
                "IMG034",
                repo.dockerfile or next(iter(repo.nginx)),
                None,
                f"no files are copied under the nginx root and none of {where} exists",
            )
        ]
    out: list[Finding] = []
    refusals = _refusals(repo)
    for root, served in repo.webroots.items():
        for rel_served, rel in sorted(served.items()):
            name = os.path.basename(rel_served).lower()
            ext = os.path.splitext(name)[1]
            is_dir = (repo.root / rel).is_dir()
            uri = "/" + rel_served + ("/" if is_dir else "")
            refused = any(p.search(uri) for p in refusals)
            at = f"in the image at {root}{uri}" + (" (nginx refuses to serve it)" if refused else "")
            if name == ".git" and is_dir:
                out.append(finding("IMG031", rel, None, f"git history {at}: exclude it"))
            elif not is_dir and any(fnmatch.fnmatch(name, p) for p in _SECRET_NAMES):
                out.append(finding("IMG031", rel, None, f"{at}: keep secrets out of the web root"))
            elif ext in _SERVER_SIDE:
                what = "" if refused else ", served as plain text"
                out.append(
                    finding("IMG030", rel, None, f"{ext} file {at}{what}: remove it or exclude it in .dockerignore")
                )
            elif any(fnmatch.fnmatch(name, p) for p in _JUNK_NAMES) or name.startswith("."):
                out.append(finding("IMG033", rel, None, f"{at}: exclude it"))
            if not is_dir and (ext in _TEXT_EXTS or name.startswith(".env")):
                out += _credentials(repo.root / rel, rel)
    return out


def _credentials(path: Path, rel: str) -> list[Finding]:
    try:
        if path.stat().st_size > 512 * 1024:
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [
        finding("IMG032", rel, n, f"{m.group(1)} with a literal value: rotate it and move it out of the image")
        for n, line in enumerate(text.splitlines(), start=1)
        if (m := _CREDENTIAL.search(line))
    ][:5]
