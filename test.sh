#!/usr/bin/env bash
# The whole test suite, with the same set-up as ./example.sh. Starts a Docker engine when none
# answers and stops it again at the end; the tests start (and stop) their own registries.
# Extra arguments go to pytest, e.g. ./test.sh -k render -x
source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"

setup
export TESTCONTAINERS_RYUK_DISABLED=true
set +e
pytest "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then log "pytest collected no tests: that is a failure"; fi
exit "$rc"
