#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, run the whole suite.
# pytest's exit code 5 (no tests collected) counts as a failure.
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
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
exit "$rc"
