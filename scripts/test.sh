#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, run the everyday tier of the suite.
# `--all` runs every tier (what .ci/run does); docs/testing.md lists which tests run where.
# Other arguments go to pytest. pytest's exit code 5 (no tests collected) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "set-up failed"; exit 1; }
# Headless Chromium opens the HTML report and drives `discover ui` in the tests (Debian's package,
# driven by the dev extra's playwright; root with apt only).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null || echo "could not install chromium: the browser tests need it"
fi
.venv/bin/ruff check discover environments tests scripts || exit 1
tier=(-m "not slow")  # the everyday tier: tests marked slow run only with --all
args=()
for a in "$@"; do
    if [ "$a" = "--all" ]; then tier=(); else args+=("$a"); fi
done
.venv/bin/python -m pytest -q -p no:cacheprovider "${tier[@]}" "${args[@]}"
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
exit "$rc"
