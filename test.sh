#!/usr/bin/env bash
# The whole test suite, with the same set-up as ./example.sh. Starts a Docker engine when none
# answers and stops it again at the end; the tests start (and stop) their own registries.
# Extra arguments go to pytest, e.g. ./test.sh -k render -x
source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"
trap stop_dockerd_if_started EXIT

ensure_packages
ensure_venv
ensure_dockerd
ensure_base_image
cd "$ROOT"
export TESTCONTAINERS_RYUK_DISABLED=true
set +e
pytest "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then log "pytest collected no tests: that is a failure"; fi
exit "$rc"
