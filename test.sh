#!/usr/bin/env bash
# The whole test suite, with the same set-up as ./example.sh. Uses the Docker engine that answers
# (starts the installed dockerd only when none does, and stops exactly that one again at the end);
# the tests start (and stop) their own registries. What it changes on the machine: README,
# "What the set-up changes on your machine". Extra arguments go to pytest, e.g. ./test.sh -k render -x
source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"

# The first step, before any Docker work: lint, format and types (the same as the pre-commit hooks).
static_checks() {
    log "ruff check, ruff format --check, mypy"
    if ! { ruff check --quiet . && ruff format --check --quiet . && mypy; }; then
        log "the lint, format or type checks failed: fix them first (CONTRIBUTING.md)"
        exit 1
    fi
}

setup static_checks
set +e
pytest "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then log "pytest collected no tests: that is a failure"; fi
exit "$rc"
