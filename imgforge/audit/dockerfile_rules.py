"""The repo audit's Dockerfile rules: what the final stage runs as, and what its build leaves behind.

The image audit sees the result (the config, every file's mode and owner); here the same contract
is judged from the instructions that produce it: USER/EXPOSE/STOPSIGNAL through
:mod:`.metadata`, RUN lines read as shell (``chmod 4755``, ``chown -R nginx /usr/share/nginx/html``,
``apt-get install`` without removing the lists), COPY ``--chown``/``--chmod`` flags, and what a
well-known base ships (Debian's setuid ``su`` and ``passwd``, world-writable ``/var/tmp``) when no
RUN line strips it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgforge.audit._repo import Instruction, Repo, Stage, base_name, copy_args, instructions, served_roots
from imgforge.audit._shell import Command, commands, expand
from imgforge.audit.findings import Finding, finding
from imgforge.audit.metadata import check_exposed, check_stop_signal, check_user, is_root_user
from imgforge.image_ref import ImageRef

_DEBIAN_SETUID = ("/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/umount", "/usr/bin/chsh")


@dataclass(frozen=True)
class BaseFacts:
    """What a well-known base image brings, so a Dockerfile is judged with it (and not blamed for it)."""

    stopsignal: bool = False  # sets STOPSIGNAL SIGQUIT itself
    tools: frozenset[str] = frozenset()  # start-up template tools it ships
    user: str | None = None  # its USER, when it is not root
    world_writable: tuple[str, ...] = ()  # folders outside /tmp it ships world-writable
    setuid: tuple[str, ...] = ()  # setuid/setgid files it ships


_DEBIAN = BaseFacts(world_writable=("/var/tmp", "/run/lock"), setuid=_DEBIAN_SETUID)
_ALPINE = BaseFacts(world_writable=("/var/tmp",))
_IMGFORGE_LOCAL = BaseFacts(world_writable=("/var/tmp", "/run/lock"))  # `imgforge base bootstrap`: no setuid files
_BASES = {
    "alpine": _ALPINE,
    "debian": _DEBIAN,
    "ubuntu": _DEBIAN,
    "imgforge/debian": _IMGFORGE_LOCAL,
    "imgforge/nginx-debian": _IMGFORGE_LOCAL,
    "cgr.dev/chainguard/nginx": BaseFacts(user="65532"),
}
_NGINX_FAMILY = {"nginx": None, "nginxinc/nginx-unprivileged": "101"}


def base_facts(image: str) -> BaseFacts:
    """Facts of ``image`` (``nginx:1.27-alpine`` takes the Alpine ones); an unknown base: none."""
    name = base_name(image)
    if name in _NGINX_FAMILY:
        os_facts = _ALPINE if "alpine" in (ImageRef.parse(image).tag or "") else _DEBIAN
        return BaseFacts(True, frozenset({"envsubst"}), _NGINX_FAMILY[name], os_facts.world_writable, os_facts.setuid)
    return _BASES.get(name, BaseFacts())


def check_dockerfile(repo: Repo) -> list[Finding]:
    assert repo.final is not None
    assert repo.dockerfile is not None
    df, final, env = repo.dockerfile, repo.final, repo.env
    facts = base_facts(final.external_base())
    out: list[Finding] = []
    users = instructions(final, "USER")
    user = expand(users[-1]["value"].strip(), env) if users else None
    if user is not None or facts.user is None:
        out += check_user(user, df, users[-1]["startline"] + 1 if users else None)
    for item in instructions(final, "EXPOSE"):
        out += check_exposed(expand(item["value"], env).split(), df, item["startline"] + 1)
    signals = instructions(final, "STOPSIGNAL")
    if signals or not facts.stopsignal:
        out += check_stop_signal(signals[-1]["value"].strip() if signals else None, df, _line(signals))
    out += _unpinned_bases(df, final)
    runtime = user if user is not None else facts.user
    out += _file_system(repo, facts, None if runtime is None or is_root_user(runtime) else runtime)
    return out


def _line(items: list[Instruction]) -> int | None:
    return int(items[-1]["startline"]) + 1 if items else None


def _unpinned_bases(df: str, final: Stage) -> list[Finding]:
    out = []
    stage: Stage | None = final
    while stage is not None:  # every stage's external base ends up in the build
        if stage.parent is None and stage.base.lower() != "scratch":
            ref = ImageRef.parse(stage.base)
            if ref.digest is None and ref.tag in (None, "latest"):
                out.append(
                    finding(
                        "IMG041", df, stage.line, f"FROM {stage.base}: pin a version tag (e.g. alpine:3.21) or a digest"
                    )
                )
        stage = stage.parent
    return out


# ---------------------------------------------------------------------------------- file system

_OCTAL = re.compile(r"[0-7]{3,4}")
_SYMBOLIC = re.compile(r"([ugoa]*)([-+=])([rwxXst]*)")
_STRIPS_SETUID = re.compile(r"(?<![\w-])[ugoa]*-[rwxXt]*s")
_STRIPS_OTHER_WRITE = re.compile(r"(?<![\w-])[ugo]*[ao][ugo]*-[rwxXst]*w")


def _grants(mode: str) -> tuple[bool, bool, bool]:
    """(world-writable, group-writable, setuid/setgid) that a chmod mode grants."""
    if _OCTAL.fullmatch(mode):
        digits = mode.rjust(4, "0")
        return int(digits[3]) & 2 != 0, int(digits[2]) & 2 != 0, int(digits[0]) & 6 != 0
    other = group = special = False
    for part in mode.split(","):
        m = _SYMBOLIC.fullmatch(part)
        if not m or m.group(2) == "-":
            continue
        who, perms = m.group(1) or "a", m.group(3)
        other |= "w" in perms and bool(set(who) & {"o", "a"})
        group |= "w" in perms and bool(set(who) & {"g", "a"})
        special |= "s" in perms
    return other, group, special


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _file_system(repo: Repo, facts: BaseFacts, runtime: str | None) -> list[Finding]:
    """IMG035, IMG050, IMG051, IMG052 from the final image's RUN and COPY lines and its base."""
    assert repo.final is not None
    assert repo.dockerfile is not None
    df, roots = repo.dockerfile, served_roots(repo)
    out: list[Finding] = []
    runs = instructions(repo.final, "RUN")
    for item in runs:
        line, text = item["startline"] + 1, item["value"]
        for cmd in commands(text, None, dict(repo.env)):
            out += _run_command(df, line, cmd, roots, runtime)
        out += _caches(df, line, text)
    for item in instructions(repo.final, "COPY") + instructions(repo.final, "ADD"):
        flags, words = copy_args(item)
        dest = expand(words[-1], repo.env) if words else ""
        into_root = any(_within(dest, r) or _within(r, dest) for r in roots)
        line = item["startline"] + 1
        owner = flags.get("chown", "").split(":")[0]
        if into_root and runtime is not None and owner and owner == runtime.split(":")[0]:
            out.append(finding("IMG035", df, line, f"COPY --chown={flags['chown']} into {dest}: {_KEEP_ROOT}"))
        if "chmod" in flags:
            other, _, special = _grants(flags["chmod"])
            if other:
                rule = "IMG035" if into_root else "IMG050"
                out.append(finding(rule, df, line, f"COPY --chmod={flags['chmod']}: makes {dest} world-writable"))
            if special:
                out.append(finding("IMG051", df, line, f"COPY --chmod={flags['chmod']}: sets setuid/setgid on {dest}"))
    texts = [str(i["value"]) for i in runs]
    left = [p for p in facts.world_writable if not _stripped(texts, p, _STRIPS_OTHER_WRITE)]
    if left:
        out.append(
            finding(
                "IMG050",
                df,
                _base_line(repo),
                f"the base ships {', '.join(left)} world-writable: add "
                "`find / -xdev -type d -perm -0002 ! -path /tmp -exec chmod o-w {} +`",
            )
        )
    suid = [p for p in facts.setuid if not _stripped(texts, p, _STRIPS_SETUID)]
    if suid:
        out.append(
            finding(
                "IMG051",
                df,
                _base_line(repo),
                f"the base ships setuid files ({', '.join(suid)}…): add "
                "`find / -xdev -type f -perm /6000 -exec chmod a-s {} +`",
            )
        )
    return out


def _stripped(runs: list[str], path: str, removal: re.Pattern[str]) -> bool:
    """Whether a RUN line takes the bit away from ``path``: a ``chmod`` with the removal on that
    path, or in the same line as a ``find`` (which reaches every path)."""
    return any(
        "chmod" in run and removal.search(run) and ("find " in run or re.search(rf"{re.escape(path)}(?![\w/.-])", run))
        for run in runs
    )


_KEEP_ROOT = "served files must stay owned by root and not writable by the runtime user"


def _base_line(repo: Repo) -> int:
    assert repo.final is not None
    return repo.final.chain()[0].line


def _run_command(df: str, line: int, cmd: Command, roots: list[str], runtime: str | None) -> list[Finding]:
    operands = [a for a in cmd.args if not a.startswith("-")]
    recursive = any(a in ("-R", "-r", "--recursive") for a in cmd.args)
    out = []
    if cmd.name in ("chmod", "chown") and len(operands) >= 2:
        what, targets = operands[0], [t for t in operands[1:] if t.startswith("/")]
        for target in targets:
            in_root = any(_within(target, r) or (recursive and _within(r, target)) for r in roots)
            shown = f"RUN {cmd.name} {' '.join(cmd.args)}"
            if cmd.name == "chown":
                if in_root and runtime is not None and what.split(":")[0] == runtime.split(":")[0]:
                    out.append(finding("IMG035", df, line, f"{shown}: {_KEEP_ROOT}"))
                continue
            other, _, special = _grants(what)
            if other and not (target == "/tmp" or target.startswith("/tmp/")):
                out.append(
                    finding("IMG035" if in_root else "IMG050", df, line, f"{shown}: makes {target} world-writable")
                )
            if special:
                out.append(finding("IMG051", df, line, f"{shown}: sets setuid/setgid on {target}"))
    elif cmd.name == "mkdir":
        modes = [cmd.args[i + 1] for i, a in enumerate(cmd.args[:-1]) if a in ("-m", "--mode")]
        if modes and _grants(modes[-1])[0]:
            for target in [t for t in operands if t.startswith("/") and not _within(t, "/tmp")]:
                out.append(finding("IMG050", df, line, f"RUN mkdir -m {modes[-1]}: makes {target} world-writable"))
    return out


_CACHE_CHECKS = (
    # (installs, cleaned-up-when, what to add)
    (
        re.compile(r"\bapt(?:-get)?\s+(?:-\S+\s+)*install\b"),
        re.compile(r"rm\s+-\S*\s+[^;&|]*/var/lib/apt/lists"),
        "apt lists left in /var/lib/apt/lists: add `&& rm -rf /var/lib/apt/lists/*` to the same RUN",
    ),
    (
        re.compile(r"\bapk\s+(?:-\S+\s+)*add\b"),
        re.compile(r"--no-cache|rm\s+-\S*\s+[^;&|]*/var/cache/apk"),
        "apk cache left in /var/cache/apk: use `apk add --no-cache`",
    ),
    (
        re.compile(r"\b(?:pip3?|python3?\s+-m\s+pip)\s+install\b"),
        re.compile(r"--no-cache-dir|PIP_NO_CACHE_DIR"),
        "pip cache left in ~/.cache/pip: use `pip install --no-cache-dir`",
    ),
    (
        re.compile(r"\b(?:dnf|yum|microdnf)\s+(?:-\S+\s+)*install\b"),
        re.compile(r"\b(?:dnf|yum|microdnf)\s+clean\s+all|rm\s+-\S*\s+[^;&|]*/var/cache/(?:dnf|yum)"),
        "dnf/yum cache left in /var/cache: add `&& dnf clean all` to the same RUN",
    ),
)


def _caches(df: str, line: int, text: str) -> list[Finding]:
    """IMG052: a package install whose cache is not removed in the same RUN (a later RUN cannot:
    the bytes stay in the earlier layer)."""
    return [
        finding("IMG052", df, line, message)
        for installs, cleaned, message in _CACHE_CHECKS
        if installs.search(text) and not cleaned.search(text)
    ]
