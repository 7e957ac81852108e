#!/usr/bin/env bash
# Install the servers causeway's tests (or, with `sandbox`, its sandbox) run against,
# from Debian's packages, skipping what is already there. Safe to run again.
#   tests/setup.sh           everything the test suite needs
#   tests/setup.sh sandbox   only Prosody and ngircd
set -euo pipefail

want=(prosody lua-unbound ngircd)
if [ "${1:-}" != sandbox ]; then
  want+=(ejabberd inspircd atheme-services postgresql openssl)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0

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
for svc in prosody ejabberd ngircd inspircd atheme-services postgresql; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
