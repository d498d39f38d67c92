"""What an audit reports: a finding with a stable rule id, and the table of rules behind the ids.

Rule ids never change meaning once published (people suppress and grep for them), so new checks
get new ids. Each rule names the hadolint / trivy / dockle check it corresponds to, where one
exists, so a finding can be compared with what those scanners say about the same repo or image.
The ids group by what they look at: ``IMG00x`` nginx configuration, ``IMG01x`` who the image runs
as and on which port, ``IMG02x`` start-up steps, ``IMG03x`` the web root, ``IMG04x`` image
metadata, ``IMG05x`` the file system outside the web root.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    anchors: tuple[str, ...] = ()  # ids of the matching hadolint / trivy / dockle checks


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    file: str  # relative to the audited repo, or the path inside the audited image (``config.User`` for its config)
    line: int | None  # 1-based; None when the finding is about a missing instruction or a whole file
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


_RULES = [
    # nginx configuration
    Rule("IMG001", ERROR, "nginx `user` directive: only root can switch user; non-root nginx fails or warns"),
    Rule("IMG002", ERROR, "nginx pid file outside /tmp (or left at the compiled-in default under /run)"),
    Rule("IMG003", ERROR, "nginx *_temp_path outside /tmp: not writable by a non-root user on a read-only root"),
    Rule("IMG004", ERROR, "nginx `listen` on a port below 1024: needs root or NET_BIND_SERVICE"),
    Rule("IMG005", WARNING, "nginx shows its version (`server_tokens` is on unless set off)"),
    Rule("IMG006", WARNING, "nginx log written to a file outside /tmp instead of stdout/stderr"),
    Rule("IMG007", INFO, "no nginx configuration found: the nginx rules were not checked"),
    # user and ports
    Rule("IMG010", ERROR, "no USER in the final stage: the container runs as root", ("DS002", "CIS-DI-0001")),
    Rule("IMG011", ERROR, "final USER is root", ("DL3002", "DS002")),
    Rule(
        "IMG012", ERROR, "non-numeric USER: the kubelet cannot verify runAsNonRoot and refuses to start it", ("DL3066",)
    ),
    Rule("IMG013", WARNING, "EXPOSE of a port below 1024"),
    # start-up steps
    Rule("IMG020", ERROR, "start-up template step uses a tool the image does not install"),
    Rule("IMG021", ERROR, "start-up step writes outside /tmp: breaks with a read-only root filesystem", ("KSV014",)),
    # web root content
    Rule("IMG030", ERROR, "server-side source in the web root: nginx serves it as plain text"),
    Rule("IMG031", ERROR, "secret-looking file in the web root (.env, private keys, password files)", ("CIS-DI-0010",)),
    Rule("IMG032", ERROR, "credential written in a file of the web root", ("CIS-DI-0010",)),
    Rule("IMG033", WARNING, "junk or dotfile in the web root (editor folders, Thumbs.db, design sources)"),
    Rule("IMG034", INFO, "web root not found: its files were not checked"),
    Rule("IMG035", ERROR, "served files owned by or writable by the runtime user: one nginx bug away from defacement"),
    # image metadata
    Rule("IMG040", WARNING, "no STOPSIGNAL SIGQUIT: nginx gets SIGTERM (fast shutdown) instead of SIGQUIT (graceful)"),
    Rule("IMG041", WARNING, "unpinned base image (no tag, or `latest`)", ("DL3006", "DL3007")),
    # file system
    Rule("IMG050", WARNING, "world-writable path outside /tmp"),
    Rule("IMG051", WARNING, "setuid or setgid file", ("CIS-DI-0008",)),
    Rule("IMG052", WARNING, "package manager cache or index left in the image", ("DL3009", "DL3019", "DL3042")),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def finding(rule_id: str, file: str, line: int | None, message: str) -> Finding:
    """A finding whose severity comes from the rule table, so one rule never has two severities."""
    return Finding(rule_id, RULES[rule_id].severity, file, line, message)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """``{"error": n, "warning": n, "info": n}``: the counts every audit output carries."""
    counts = Counter(f.severity for f in findings)
    return {s: counts.get(s, 0) for s in SEVERITIES}


def sort_key(f: Finding) -> tuple[str, int, str]:
    return (f.file, f.line or 0, f.rule)
