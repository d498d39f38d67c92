"""Audit one site/image repo: its Dockerfile, its nginx configs and the files it serves.

The checks are the ones that broke the owner's hand-made non-root migrations: nginx directives
that need root, a USER the kubelet cannot verify, a start-up step whose tool was never installed
(the sm-lickitung v0.0.4 bug) or that writes into a read-only root, web roots that ship PHP
mailers with their SMTP passwords, and the rest of the README's hardening contract. nginx configs
are read with crossplane (a real nginx parser, so line numbers and nesting are right); the
Dockerfile with dockerfile-parse. The rules themselves live in modules both audits share.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from imgforge.audit._repo import CONVENTIONAL_WEBROOTS, Repo, base_name, copy_args, instructions, read_repo
from imgforge.audit._shell import is_shell_script, shell_text
from imgforge.audit.dockerfile_rules import base_facts, check_dockerfile
from imgforge.audit.findings import Finding, finding, sort_key
from imgforge.audit.nginx_rules import check_config, check_server_tokens, refusals
from imgforge.audit.startup import TEMPLATE_TOOLS, Step, check_steps
from imgforge.audit.webroot import check_name, credentials, wants_text

_NGINX_FAMILY = ("nginx", "nginxinc/nginx-unprivileged")
_ALWAYS_THERE = frozenset({"sed"})  # part of every base (busybox, coreutils' neighbours)


def audit_repo(path: str | os.PathLike[str]) -> list[Finding]:
    """All findings for the repo at ``path``, sorted by file and line; AuditUnreadable if unreadable."""
    repo = read_repo(path)
    found: list[Finding] = []
    for rel, parsed in repo.nginx.items():
        found += check_config(rel, parsed)
    found += check_server_tokens(repo.nginx)
    if repo.final is not None:
        found += check_dockerfile(repo)
        found += _check_templates(repo)
    found += _check_webroots(repo)
    return sorted(found, key=sort_key)


def _runtime_scripts(repo: Repo) -> list[Step]:
    """What runs when the container starts: shell-form ENTRYPOINT/CMD, the repo's shell scripts
    they name, and scripts copied into /docker-entrypoint.d/."""
    assert repo.final is not None
    assert repo.dockerfile is not None
    out = []
    starters = instructions(repo.final, "ENTRYPOINT")[-1:] + instructions(repo.final, "CMD")[-1:]
    words: list[str] = []
    for item in starters:
        value = item["value"].strip()
        try:
            argv = json.loads(value) if value.startswith("[") else ["sh", "-c", value]
        except ValueError:
            argv = ["sh", "-c", value]
        words += [str(w) for w in argv]
        if (text := shell_text([str(w) for w in argv])) is not None:
            out.append(Step(repo.dockerfile, item["startline"] + 1, text))
    for cpath, rel in repo.copies.items():
        name = os.path.basename(cpath)
        named = any(w in (cpath, name) or w.endswith("/" + name) for w in words)
        if named or cpath.startswith("/docker-entrypoint.d/"):
            try:
                data = (repo.root / rel).read_bytes()
                text = data.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if is_shell_script(data) or rel.endswith(".sh"):
                out.append(Step(rel, 1, text))
    return out


def _check_templates(repo: Repo) -> list[Finding]:
    assert repo.final is not None
    assert repo.dockerfile is not None
    packages, runs = _installed(repo)
    base_tools = base_facts(repo.final.external_base()).tools
    copied_bins = {os.path.basename(c) for c in repo.copies} | {
        os.path.basename(w)
        for i in instructions(repo.final, "COPY") + instructions(repo.final, "ADD")
        for w in copy_args(i)[1][-1:]
    }

    def installed(tool: str, _path: str) -> bool:
        return (
            tool in _ALWAYS_THERE
            or tool in base_tools
            or tool in copied_bins
            or bool(TEMPLATE_TOOLS[tool] & packages)
            or f"/bin/{tool}" in runs
        )

    out = check_steps(_runtime_scripts(repo), dict(repo.env), installed)
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


def _installed(repo: Repo) -> tuple[set[str], str]:
    """Packages installed by RUN lines of the final image, and the text of those RUN lines."""
    assert repo.final is not None
    packages: set[str] = set()
    runs = " ".join(i["value"] for i in instructions(repo.final, "RUN"))
    for m in re.finditer(r"\b(?:apk\s+add|apt(?:-get)?\s+install|(?:dnf|yum|microdnf)\s+install)\s+([^;&|]*)", runs):
        packages |= {w.split("=")[0].split("~")[0] for w in m.group(1).split() if not w.startswith("-")}
    return packages, runs


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
    refused_by = refusals(repo.nginx)
    for root, served in repo.webroots.items():
        for rel_served, rel in sorted(served.items()):
            is_dir = (repo.root / rel).is_dir()
            uri = "/" + rel_served + ("/" if is_dir else "")
            found = check_name(rel, root, uri, is_dir, any(p.search(uri) for p in refused_by))
            if found is not None:
                out.append(found)
            path = repo.root / rel
            if not is_dir and wants_text(path.name, _size(path)):
                out += _credentials(path, rel)
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 1 << 62


def _credentials(path: Path, rel: str) -> list[Finding]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return credentials(text, rel)
