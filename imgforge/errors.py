"""The error tree and the exit codes it maps to.

Every failure a user can cause or meet is an ``ImgforgeError``: the library raises it with a
finished one-line message, and the CLI prints that line and exits with the class's code. Errors
of the libraries underneath (docker, requests, tomllib, pydantic, ruamel, git) are translated once,
where they are called, with ``raise ... from e`` so ``--debug`` still shows the cause.
"""

from __future__ import annotations

from pathlib import Path

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


# --- git (the one runner, imgforge/_git.py) ---------------------------------------------------


class GitError(ImgforgeError):
    """git could not do what was asked. Callers translate it into their own error (and exit code)."""

    def __init__(self, command: str, detail: str, returncode: int | None = None):
        super().__init__(f"git {command}: {detail}")
        self.command = command
        self.detail = detail
        self.returncode = returncode


class GitNotFound(GitError):
    pass


class GitTimeout(GitError):
    pass


class GitFailed(GitError):
    """git exited non-zero; ``detail`` is the last line it wrote to stderr, credentials removed."""


class UnsafeGitInput(GitError):
    """A URL, ref or operand that git could misread; refused before git starts."""


# --- rendering templates ----------------------------------------------------------------------


class RenderError(ImgforgeError):
    pass


# --- reading images (imgforge/image) ----------------------------------------------------------


class ImageNotFound(NotFound):
    """A reference, manifest, blob or file that the source does not hold."""


class PlatformNotFound(ImageNotFound):
    """No manifest of an index matches the wanted platform; the message lists those there are."""

    def __init__(self, where: str, wanted: str, available: list[str]):
        have = ", ".join(available) if available else "none"
        super().__init__(f"{where}: no image for platform {wanted} (available: {have})")
        self.wanted = wanted
        self.available = available


class ImageInvalid(RegistryError):
    """Served bytes that do not match their descriptor, or a manifest, config or layer that is malformed."""


class ImageUnsupported(ImageInvalid):
    """Well-formed content the reader does not handle (Docker schema 1, zstd without its library)."""


class ImageRefused(Refused):
    """A safety rule refused the content: a path escaping the image view, or a cap exceeded."""


class LimitExceeded(ImageRefused):
    """A documented cap of :class:`~imgforge.image.limits.Limits` was reached; names the cap."""

    def __init__(self, where: str, what: str, limit_name: str, limit: int):
        super().__init__(f"{where}: {what} exceeds the limit {limit_name}={limit}")
        self.limit_name = limit_name
        self.limit = limit


# --- registries -------------------------------------------------------------------------------


class RegistryUnavailable(RegistryError):
    """Connection refused, timeout, TLS failure, or 429/5xx past the retry budget."""


class AuthRejected(RegistryError):
    """401/403: credentials missing, wrong, or without access to the repository."""


class RepositoryNotFound(RegistryError):
    """404 on a repository-level call: the repository does not exist (yet)."""


class BadRequest(RegistryError):
    """400: the registry rejected the request's parameters (Harbor: ``last`` must be a tag)."""


class ManifestNotFound(RegistryError):
    """404 for a manifest: no such tag or digest in an existing repository."""


class BlobNotFound(RegistryError):
    """404 for a blob: the repository does not hold it."""


class PushFailed(RegistryError):
    """The engine's push stream reported an error (auth, network, quota...)."""


class DigestMismatch(RegistryError):
    """The registry served or stored bytes whose digest is not the one that named them."""


# --- GitOps -----------------------------------------------------------------------------------


class KustomizeFailed(GitopsError):
    def __init__(self, where: str, detail: str):
        super().__init__(f"kubectl kustomize {where} failed: {detail}")
        self.detail = detail


class ProofFailed(GitopsError):
    def __init__(self, app: str, reasons: list[str]):
        super().__init__(
            f"{app}: the patched overlay does not render as planned, nothing written: " + "; ".join(reasons)
        )
        self.reasons = reasons


class DirtyWorkTree(Refused):
    def __init__(self, repo: Path, files: list[str]):
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        super().__init__(
            f"{repo} has uncommitted changes ({shown}); commit or stash them first: the "
            "branch is built from the remote's default branch and would not include them"
        )


class ForeignCommits(Refused):
    def __init__(self, branch: str, remote: str, commits: list[tuple[str, str, str]]):
        shown = "; ".join(f"{sha[:8]} {author}: {subject}" for sha, author, subject in commits[:3])
        more = f" and {len(commits) - 3} more" if len(commits) > 3 else ""
        super().__init__(
            f"branch {branch!r} on {remote!r} has {len(commits)} commit(s) not made by imgforge ({shown}{more}); "
            "imgforge will not overwrite someone's work: merge or close that request and delete the branch, "
            "or pass --branch with another name"
        )


class MalformedYaml(GitopsError):
    def __init__(self, rel: str, detail: str):
        super().__init__(f"{rel}: malformed YAML: {detail}")


class UneditableYaml(GitopsError):
    """The change is well defined but cannot be written without reformatting the user's file."""


class UnknownApp(NotFound):
    pass


class AmbiguousContainer(GitopsError):
    pass


class UpdateFailed(ImgforgeError):
    """Some sites failed in ``update``: named with their errors, exits with the first one's code."""

    def __init__(self, failures: list[tuple[str, ImgforgeError]]) -> None:
        super().__init__(
            f"update failed for {len(failures)} site(s): " + "; ".join(f"{site}: {error}" for site, error in failures)
        )
        self.failures = failures
        self.exit_code = failures[0][1].exit_code


# --- forges -----------------------------------------------------------------------------------


class ForgeUnauthorized(ForgeError):
    """The forge answered 401: the token is missing, expired or lacks the scope."""


class DuplicateRequest(ForgeError):
    """The forge refused to create a request because one already exists for the branch."""


# --- signing (imgforge/signing) ---------------------------------------------------------------


class KeyFileError(UsageError):
    """A key file that cannot be read as a cosign key: bad PEM, bad JSON, unsupported parameters."""


class WrongPassword(KeyFileError):
    """The password does not open ``cosign.key`` (or the file was changed after it was written)."""


class PasswordMissing(UsageError):
    """Neither IMGFORGE_SIGNING_PASSWORD nor COSIGN_PASSWORD is set, or it is empty where that is refused."""


class KeyExists(Refused):
    """``keys generate`` never overwrites a key pair: a lost private key cannot be recovered."""


class FormatError(UsageError):
    """Input for a payload, statement or SBOM that does not have the documented shape."""


class SignatureInvalid(VerifyFailed):
    """A signature, envelope or payload that does not verify against the given public key."""


class SigningFailed(ImgforgeError):
    """The image was pushed, but signing or attesting it failed (exit code: the cause's)."""

    def __init__(self, message: str, cause: ImgforgeError):
        super().__init__(message)
        self.exit_code = cause.exit_code


class Unverified(Refused):
    """``pr``/``update`` would propose (or ``gitops --pin-digest`` pin, with a key configured) a tag
    whose signature or test attestation does not verify."""


# --- local base images ------------------------------------------------------------------------


class BootstrapFailed(ImgforgeError):
    pass


# --- audits -----------------------------------------------------------------------------------


class AuditUnreadable(UsageError):
    """The repo (or one of its files) could not be read: exit 2, one line naming the file."""
