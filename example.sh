#!/usr/bin/env bash
# The main job: set up this machine (system packages, virtualenv, Docker engine, local base image),
# then build the example site's hardened image and verify it the way Kubernetes will run it.
# Idempotent: a second run only checks the set-up and reuses the unchanged image. What it changes
# on the machine: README, "What the set-up changes on your machine".
# Extra arguments go to `imgforge build`, e.g. ./example.sh --force
source "$(dirname "${BASH_SOURCE[0]}")/scripts/env.sh"

setup
imgforge build example --test "$@"
