"""Start-up steps (IMG020, IMG021): what a container runs before nginx, what it writes, what it needs.

A start-up step is a shell-form ENTRYPOINT/CMD or a shell script they run, read command by
command by :mod:`._shell` with the image's environment: ``OUT=/etc/nginx/conf.d; envsubst < t >
"$OUT/x.conf"`` writes ``/etc/nginx/conf.d/x.conf``. A write whose path is outside ``/tmp`` (and
``/dev``) breaks on a read-only root filesystem. Both audits use this module; they differ only in
how they find the steps and how they tell whether a tool is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from imgforge.audit._shell import commands
from imgforge.audit.findings import Finding, finding

# Template tools seen in entrypoints, and the packages (apk, apt, dnf) that provide them.
TEMPLATE_TOOLS: dict[str, frozenset[str]] = {
    "envsubst": frozenset({"gettext", "gettext-envsubst", "gettext-base", "gettext-tiny"}),
    "gomplate": frozenset({"gomplate"}),
    "dockerize": frozenset({"dockerize"}),
    "confd": frozenset({"confd"}),
    "j2": frozenset({"j2cli", "py3-j2cli"}),
    "sed": frozenset({"sed", "busybox"}),
}


@dataclass(frozen=True)
class Step:
    """Shell text that runs at start-up: a script (line 1 is its first line) or a shell-form command."""

    file: str
    line: int | None  # where ``text`` starts in ``file``; None for an image config field
    text: str


def install_hint(tool: str) -> str:
    return "install " + " or ".join(sorted(TEMPLATE_TOOLS[tool]))


def check_steps(steps: list[Step], env: dict[str, str], installed: Callable[[str, str], bool]) -> list[Finding]:
    """IMG020 and IMG021 for the steps, in order; ``installed(name, path)``: is that tool in the image."""
    out: list[Finding] = []
    for step in steps:
        scope = dict(env)  # a script's own assignments stay in that script
        for cmd in commands(step.text, step.line, scope):
            if cmd.name in TEMPLATE_TOOLS and not installed(cmd.name, cmd.path):
                out.append(
                    finding(
                        "IMG020",
                        step.file,
                        cmd.line,
                        f"{cmd.name} runs at start-up but is not installed in the image ({install_hint(cmd.name)})",
                    )
                )
            for where in dict.fromkeys(cmd.writes):
                if where.startswith("/") and not harmless(where):
                    out.append(
                        finding(
                            "IMG021",
                            step.file,
                            cmd.line,
                            f"{cmd.name or 'a redirection'} writes {where} at start-up: write under /tmp "
                            "(the root filesystem is read-only)",
                        )
                    )
    return out


def harmless(path: str) -> bool:
    """Paths a read-only root leaves writable: ``/tmp`` (the tmpfs or emptyDir) and devices."""
    path = os.path.normpath(path)
    return path == "/tmp" or path.startswith(("/tmp/", "/dev/", "/proc/self/fd/"))
