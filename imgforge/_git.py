"""The one way imgforge runs git: bounded in time, never prompting, never reading a value as an option.

Catalog values (a source's URL and ref) and command-line values (a remote name) reach git, and
git reads anything that starts with ``-`` as an option wherever it appears (``--upload-pack=CMD``
runs CMD). So values from outside never go into ``args``: they go into ``operands``, which follow
``--end-of-options``, and the ones typed :class:`Url` or :class:`Ref` are checked against strict
rules before git starts. Every run has a timeout, no terminal or askpass prompt (CI has nobody to
answer one), ssh in batch mode, the C locale (messages callers can read), and only the git
transports imgforge speaks (no ``ext::``, which runs commands). Failures are typed once here;
their messages never hold credentials embedded in a URL.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from imgforge.errors import GitFailed, GitNotFound, GitTimeout, UnsafeGitInput

LOCAL_TIMEOUT = 120.0  # seconds for a command that only reads or writes a local repository
NETWORK_TIMEOUT = 300.0  # seconds for fetch, push, ls-remote: a hung remote must not hang CI
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"  # GIT_ALLOW_PROTOCOL: no ext::/fd:: command transports

# A strict subset of git's ref-name rules (git check-ref-format --allow-onelevel): slash-separated
# parts of letters, digits, ``_ + . -``; no part starts with ``.`` or ``-`` or ends with ``.lock``;
# no ``..``; no trailing ``.``. A full 40-hex commit is such a name too.
_REF = re.compile(
    r"(?!.*\.\.)(?!.*\.lock(?:/|\Z))(?!.*\.\Z)"
    r"[A-Za-z0-9_+][A-Za-z0-9_+.-]*(?:/[A-Za-z0-9_+][A-Za-z0-9_+.-]*)*"
)
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
_PATH_CHARS = r"[A-Za-z0-9._~+=,%@-]"
_URLS = (
    re.compile(rf"https://{_HOST}(?::[0-9]{{1,5}})?(?:/{_PATH_CHARS}*)*"),
    re.compile(rf"ssh://(?:[A-Za-z0-9._-]+@)?{_HOST}(?::[0-9]{{1,5}})?(?:/{_PATH_CHARS}*)+"),
    re.compile(rf"[A-Za-z0-9._-]+@{_HOST}:(?!-){_PATH_CHARS}+(?:/{_PATH_CHARS}*)*"),
    re.compile(rf"(?:file://)?(?:/{_PATH_CHARS}+)+/?"),
)
URL_FORMS = "an https://, ssh:// or git@host:path URL, a file:// URL or an absolute path"
# Userinfo of any URL form: ``scheme://user[:password]@`` and scp-like ``user[:password]@host:``.
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<info>[^/@\s]+)@", re.IGNORECASE)
_SCP_USERINFO = re.compile(r"\A(?P<info>[^/@\s:]+(?::[^/@\s]*)?)@(?=[^/:\s]+:)")
# ``user:password@host:path`` anywhere in a text (after a space, a quote or the start).
_SCP_PASSWORD = re.compile(r"(?<![^\s\"'(=])[^/@\s:\"']+:[^/@\s\"']*@(?=[^/:\s]+:)")


class Ref(str):
    """A branch, tag or commit that came from outside: checked by :func:`ref_problem` before use."""


class Url(str):
    """A repository URL that came from outside: checked by :func:`url_problem` before use."""


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not an acceptable branch, tag or commit name, or None when it is."""
    if isinstance(ref, str) and len(ref) <= 255 and _REF.fullmatch(ref):
        return None
    return "expected a branch, tag or full 40-hex commit (git ref-name rules)"


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an acceptable repository location, or None when it is."""
    if not isinstance(url, str):
        return f"expected {URL_FORMS}"
    if has_credentials(url):
        return "the URL holds credentials; use a credential helper (git config credential.helper) or an SSH key instead"
    if len(url) > 2048 or not any(form.fullmatch(url) for form in _URLS):
        return f"expected {URL_FORMS}"
    return None


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a password or token: ``https://`` userinfo at all (a token alone
    works as a user name), or ``user:password@`` in any form."""
    scheme = _USERINFO.search(url)
    if scheme and (scheme["scheme"].lower().startswith("http") or ":" in scheme["info"]):
        return True
    scp = _SCP_USERINFO.match(url)
    return bool(scp and ":" in scp["info"])


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it shown as ``***`` (for messages)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
    return _SCP_PASSWORD.sub("***@", text)


def strip_userinfo(url: str) -> str:
    """``url`` without its userinfo in every form (for labels and documents that must not hold it)."""
    url = _USERINFO.sub(lambda m: m["scheme"], url.strip())
    return _SCP_USERINFO.sub("", url)


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every git run gets: no prompts, batch ssh, C locale, safe transports."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "LC_ALL": "C",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
    }
    env.setdefault("GIT_SSH_COMMAND", "ssh -oBatchMode=yes -oConnectTimeout=20")
    env.update(extra or {})
    return env


def run(
    *args: str,
    cwd: Path | str | None = None,
    operands: Sequence[str] = (),
    network: bool = False,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS --end-of-options OPERANDS`` in ``cwd``.

    ``args`` are the subcommand and options imgforge itself wrote; every value that came from a
    catalog, a command line or another program goes into ``operands``. :class:`Url` and
    :class:`Ref` operands are checked first; an operand with a NUL or a line break is refused.
    """
    command = args[0] if args else "git"
    if command == "rev-parse" and operands and "--verify" not in args:
        raise ValueError("rev-parse with operands needs --verify: before 2.43, git prints --end-of-options")
    for operand in operands:
        _check_operand(command, operand)
    argv = ["git", *args, *(["--end-of-options", *operands] if operands else [])]
    limit = timeout if timeout is not None else NETWORK_TIMEOUT if network else LOCAL_TIMEOUT
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=git_env(env),
            input=input,
            capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=limit,
            check=False,
        )
    except FileNotFoundError as e:
        if cwd is not None and not Path(cwd).is_dir():
            raise GitFailed(command, f"{cwd} does not exist") from e
        raise GitNotFound(command, "git is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise GitTimeout(command, f"no answer within {limit:g} s") from e
    if check and proc.returncode != 0:
        raise GitFailed(command, last_line(proc.stderr) or f"exited with {proc.returncode}", proc.returncode)
    return proc


def out(*args: str, strip: bool = True, **kwargs: object) -> str:
    """What ``run`` printed on stdout, as text."""
    text = run(*args, **kwargs).stdout.decode("utf-8", "replace")  # type: ignore[arg-type]
    return text.strip() if strip else text


def tail(output: bytes, lines: int = 6) -> str:
    """The last ``lines`` non-empty lines of git's output on one line, credentials redacted."""
    text = redact(output.decode("utf-8", "replace")).splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip()) or "no output"


def last_line(stderr: bytes) -> str:
    """git's last non-empty stderr line without its ``fatal:``/``error:`` prefix, redacted."""
    lines = [line.strip() for line in redact(stderr.decode("utf-8", "replace")).splitlines() if line.strip()]
    return lines[-1].removeprefix("fatal: ").removeprefix("error: ") if lines else ""


def _check_operand(command: str, operand: str) -> None:
    problem = (
        url_problem(operand)
        if isinstance(operand, Url)
        else ref_problem(operand)
        if isinstance(operand, Ref)
        else "contains a NUL or a line break"
        if re.search(r"[\x00\n\r]", operand)
        else None
    )
    if problem:
        kind = "URL" if isinstance(operand, Url) else "ref" if isinstance(operand, Ref) else "argument"
        raise UnsafeGitInput(command, f"refused {kind} {_shown(operand)}: {problem}")


def _shown(value: str) -> str:
    """A value for a one-line message: redacted, control characters escaped, cut at 100 characters."""
    text = redact(value)
    text = "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text[:100]
    )
    return repr(text + ("…" if len(value) > 100 else ""))
