"""The error tree and the exit codes it maps to.

Every failure a user can cause or meet is an ``ImgforgeError``: the library raises it with a
finished one-line message, and the CLI prints that line and exits with the class's code. Errors
of the libraries underneath (docker, requests, tomllib, pydantic, ruamel, git) are translated once,
where they are called, with ``raise ... from e`` so ``--debug`` still shows the cause.
"""

from __future__ import annotations

# Exit codes, documented in the README. 2 is also what typer uses for bad command-line usage.
EXIT_OK = 0
EXIT_FAILED = 1  # a check failed: verification, audit findings at error level
EXIT_USAGE = 2  # bad usage or input that could not be read
EXIT_CATALOG = 3  # the site catalog is invalid
EXIT_NOT_FOUND = 4  # unknown site, missing content, unknown app or image
EXIT_DOCKER = 5  # Docker engine unreachable or refused a call
EXIT_BUILD = 6  # docker build failed (includes nginx -t)
EXIT_REGISTRY = 7  # registry unreachable, auth rejected, digest mismatch
EXIT_GITOPS = 8  # GitOps repo: patch, kustomize proof or git failed
EXIT_FORGE = 9  # forge API (GitLab, GitHub, Gitea) failed
EXIT_REFUSED = 10  # a safety rule refused the action (unverified image, existing tag)
EXIT_INTERRUPTED = 130


class ImgforgeError(Exception):
    """Base of every error imgforge reports; ``str(e)`` is the whole user-facing message."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ImgforgeError):
    exit_code = EXIT_USAGE


class CatalogError(ImgforgeError):
    """The catalog (imgforge.toml, sites/*.toml) is malformed or invalid."""

    exit_code = EXIT_CATALOG

    def __init__(self, file: str, message: str):
        super().__init__(f"{file}: {message}")
        self.file = file


class NotFound(ImgforgeError):
    exit_code = EXIT_NOT_FOUND


class UnknownSite(NotFound):
    def __init__(self, name: str, known: list[str]):
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(sorted(known)) or 'none'})"
        super().__init__(f"unknown site '{name}'{hint}")
        self.name = name


class ContentMissing(NotFound):
    pass


class DockerUnavailable(ImgforgeError):
    exit_code = EXIT_DOCKER

    def __init__(self, detail: str):
        super().__init__(
            f"cannot reach the Docker engine ({detail}); start it (e.g. `./example.sh` starts one, "
            "or `dockerd &`) or point DOCKER_HOST at a running engine"
        )


class DockerError(ImgforgeError):
    exit_code = EXIT_DOCKER


class BuildFailed(ImgforgeError):
    """docker build failed; carries the failing step and the tail of the build log."""

    exit_code = EXIT_BUILD

    def __init__(self, site: str, step: str, detail: str, log_tail: list[str]):
        where = f" at step {step!r}" if step else ""
        super().__init__(f"build of '{site}' failed{where}: {detail}")
        self.site = site
        self.step = step
        self.detail = detail
        self.log_tail = log_tail


class VerifyFailed(ImgforgeError):
    exit_code = EXIT_FAILED


class RegistryError(ImgforgeError):
    exit_code = EXIT_REGISTRY


class GitopsError(ImgforgeError):
    exit_code = EXIT_GITOPS


class ForgeError(ImgforgeError):
    exit_code = EXIT_FORGE


class Refused(ImgforgeError):
    exit_code = EXIT_REFUSED
