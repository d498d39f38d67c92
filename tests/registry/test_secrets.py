"""Passwords and tokens never appear in output, exception text, tracebacks, reprs or log records."""

from __future__ import annotations

import base64
import logging
import traceback

import pytest

from imgforge import config, release
from imgforge.cli import main
from imgforge.errors import ImgforgeError
from imgforge.registry import Credentials, RegistryClient

pytestmark = [pytest.mark.registry, pytest.mark.docker]

WRONG = "Wr0ng-pa55word-do-not-print"


def _secrets(*regs, tokens) -> list[str]:
    found = [WRONG, base64.b64encode(f"x:{WRONG}".encode()).decode()[4:]]
    for reg in regs:
        found += [reg.password, base64.b64encode(f"{reg.user}:{reg.password}".encode()).decode()]
    for token in tokens.issued:
        found += [token, token.rsplit(".", 1)[-1]]  # the whole JWT and its signature alone
    return found


def test_no_secret_in_any_output(
    capsys,
    caplog,
    monkeypatch,
    basic_registry,
    token_registry,
    tokens,
    make_catalog,
    registry_env,
    seed,
    unique_repo,
    tiny_image,
):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included
    texts: list[str] = []

    def cli(*args: str) -> None:
        with pytest.raises(SystemExit):
            main(list(args))

    def failing(call) -> None:
        with pytest.raises(ImgforgeError) as e:
            call()
        texts.append(str(e.value))
        texts.append("".join(traceback.format_exception(e.value)))

    sites = {}
    for name, reg in (("basic", basic_registry), ("token", token_registry)):
        repo = unique_repo("secret")
        seed(reg, repo, ["v0.0.1", "v0.0.2"])
        sites[name] = {"image": f"{reg.host}/{repo}", "tag": "v0.0.2"}
    root = make_catalog(sites=sites)
    catalog = config.load_catalog(root)

    for name, reg in (("basic", basic_registry), ("token", token_registry)):
        registry_env(reg)
        cli("tags", name, "--root", str(root))
        cli("tags", name, "--root", str(root), "--json")
        cli("bump", name, "--patch", "--dry-run", "--root", str(root))
        repo = sites[name]["image"].split("/", 1)[1]
        with RegistryClient(reg.host) as c:
            c.list_tags(repo)
            texts += [repr(c), repr(c.auth), repr(c.credentials), str(c.credentials)]
        monkeypatch.setenv("IMGFORGE_REGISTRY_PASSWORD", WRONG)
        cli("tags", name, "--root", str(root))
        failing(lambda name=name: release.list_versions(catalog, name))
        failing(
            lambda reg=reg, repo=repo: RegistryClient(reg.host, credentials=Credentials(reg.user, WRONG)).list_tags(
                repo
            )
        )
        # a push the registry refuses: the engine's error text passes through our message
        tiny_image(catalog.site(name).reference)
        failing(lambda name=name: release.push(catalog, name, skip_verify=True))
        with pytest.raises(SystemExit) as exit_:  # --debug keeps the exit code; the traceback goes to stderr
            main(["tags", name, "--root", str(root), "--debug"])
        assert exit_.value.code == 7

    out, err = capsys.readouterr()
    texts += [out, err]
    texts += [r.getMessage() for r in caplog.records]
    assert len(tokens.issued) >= 3
    assert "error: credentials rejected" in err
    assert "Traceback (most recent call last)" in err  # and the --debug tracebacks are in the haystack
    haystack = "\n".join(texts)
    leaked = [s for s in _secrets(basic_registry, token_registry, tokens=tokens) if s and s in haystack]
    assert leaked == []
