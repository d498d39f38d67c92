"""How the image runs (IMG010–IMG013, IMG040): its USER, exposed ports and stop signal.

A Dockerfile states them in instructions, an image carries them in its config (``User``,
``ExposedPorts``, ``StopSignal``); both audits hand the values here, with where they were found
(``Dockerfile`` and a line, or ``config.User``), so the two never judge them differently.
"""

from __future__ import annotations

from imgforge.audit.findings import Finding, finding

_GRACEFUL = ("QUIT", "3")


def is_root_user(user: str) -> bool:
    """``""`` (no USER), ``root``, ``0``, ``0:0``, ``root:nginx``: the process starts as UID 0."""
    return user.split(":")[0] in ("", "root", "0")


def check_user(user: str | None, file: str, line: int | None) -> list[Finding]:
    """IMG010 (None: no USER at all), IMG011 (root), IMG012 (a name the kubelet cannot verify)."""
    if user is None or user == "":
        return [finding("IMG010", file, line, "no USER: the container runs as root; add a numeric USER (e.g. 100:101)")]
    if is_root_user(user):
        return [finding("IMG011", file, line, f"USER {user}: run as a non-root numeric UID (e.g. 100:101)")]
    if not user.split(":")[0].isdigit():
        return [finding("IMG012", file, line, f"USER {user}: use the numeric UID:GID so runAsNonRoot can be verified")]
    return []


def check_exposed(ports: list[str], file: str, line: int | None) -> list[Finding]:
    """IMG013 for each ``80``, ``443/tcp`` below 1024."""
    out = []
    for word in ports:
        port = word.split("/")[0]
        if port.isdigit() and int(port) < 1024:
            out.append(finding("IMG013", file, line, f"EXPOSE {word}: expose the unprivileged port (e.g. 8080)"))
    return out


def check_stop_signal(signal: str | None, file: str, line: int | None) -> list[Finding]:
    """IMG040 unless the stop signal is SIGQUIT (``SIGQUIT``, ``QUIT`` or ``3``); None: not set."""
    if not signal:
        return [finding("IMG040", file, line, "no STOPSIGNAL: add STOPSIGNAL SIGQUIT for a graceful nginx shutdown")]
    if signal.upper().removeprefix("SIG") not in _GRACEFUL:
        return [
            finding(
                "IMG040", file, line, f"STOPSIGNAL {signal}: nginx stops gracefully on SIGQUIT; use STOPSIGNAL SIGQUIT"
            )
        ]
    return []
