#!/usr/bin/env bash
# Install the servers causeway's tests (or, with `sandbox`, its sandbox) run against:
# Debian's packages, and Synapse from PyPI into a Python venv (CAUSEWAY_SYNAPSE_VENV, by
# default ~/.cache/causeway/synapse-venv), skipping what is already there. Safe to run again.
#   tests/setup.sh           everything the test suite needs
#   tests/setup.sh sandbox   only Prosody and ngircd (and the build's C tools)
#   tests/setup.sh bench     everything, and biboumi, valgrind and matridge (a venv,
#                            CAUSEWAY_MATRIDGE_VENV) for `cargo bench --bench gateways`
set -euo pipefail

# gcc and make build the C the binary bundles: SQLite (sqlx) and jemalloc (its allocator).
want=(prosody lua-unbound ngircd gcc make)
if [ "${1:-}" != sandbox ]; then
  # prosody-modules: mod_privilege, the XEP-0356 grants the gateway's pushes are tested with.
  want+=(ejabberd inspircd atheme-services postgresql openssl python3-venv prosody-modules)
fi
if [ "${1:-}" = bench ]; then
  # valgrind counts Prosody's instructions per message (the bench's `instructions` scenario).
  want+=(biboumi valgrind)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Package scripts would start system-wide daemons on 0.0.0.0; the tests start their own.
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    made_policy=1
  fi
  cleanup() { [ -z "$made_policy" ] || $sudo rm -f "$policy"; }
  trap cleanup EXIT
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nothing under policy-rc.d, but stop anything a previous install left running.
  for svc in prosody ejabberd ngircd inspircd atheme-services postgresql biboumi; do
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
fi

[ "${1:-}" != sandbox ] || exit 0

# Install the PyPI distribution $2 at version $3 (a prefix: 1.163 is any 1.163.x) into the
# venv $1, unless it is there already; further arguments pin its dependencies. Over a
# half-made venv too: pip finishes what an interrupted run left.
pypi_venv() {
  local venv=$1 dist=$2 version=$3
  shift 3
  local check="import importlib.metadata as m, sys; v = m.version('$dist'); sys.exit(not (v == '$version' or v.startswith('$version.')))"
  if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "setup: installing $dist $version into $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$dist==$version.*" "$@"
  fi
}

# Synapse for the Matrix tests (tests/integration/harness/matrix_server.rs looks in the same
# place). Debian's package lags behind; the tests are written against this release.
pypi_venv "${CAUSEWAY_SYNAPSE_VENV:-$HOME/.cache/causeway/synapse-venv}" matrix-synapse 1.163

# matridge (slidge's Matrix gateway), the personal-login peer of `cargo bench --bench
# gateways` (benches/gateways/gateway.rs looks in the same place).
if [ "${1:-}" = bench ]; then
  # The versions the recorded run (docs/BENCHMARKS.md) had.
  pypi_venv "${CAUSEWAY_MATRIDGE_VENV:-$HOME/.cache/causeway/matridge-venv}" matridge 0.4.1 \
    slidge==0.4.2 matrix-nio==0.25.2 slixmpp==1.17.0
fi
