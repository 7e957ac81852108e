#!/usr/bin/env bash
# Run causeway's whole test suite against real servers on 127.0.0.1: installs what is
# missing, starts a private PostgreSQL, and runs every test of the workspace. The
# integration tests start their own Prosody, ejabberd and IRC servers per test.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh
work=$(mktemp -d -t causeway-tests-XXXXXX)
chmod 755 "$work"
# The fault suite's figures (tests/integration/faults), printed at the end, pass or fail.
export CAUSEWAY_FAULTS_TABLE="$work/faults.md"
cleanup() {
  if [ -s "$work/faults.md" ]; then
    echo
    echo "Fault suite ($(date -u +%Y-%m-%d)):"
    echo "| case | direction | sent | delivered | archived | duplicated | lost | note |"
    echo "|---|---|---|---|---|---|---|---|"
    sort "$work/faults.md"
  fi
  tests/postgres.sh stop "$work/postgres" || true
  rm -rf "$work"
}
trap cleanup EXIT

CAUSEWAY_TEST_POSTGRES_URL=$(tests/postgres.sh start "$work/postgres")
export CAUSEWAY_TEST_POSTGRES_URL
# Every server-backed test must run: a missing server fails instead of skipping.
export CAUSEWAY_REQUIRE_SERVERS=1
cargo test --workspace --locked "$@"
