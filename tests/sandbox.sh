#!/usr/bin/env bash
# Bring up causeway on a local sandbox, or run it against your own XMPP server.
#
#   tests/sandbox.sh                  Prosody + ngircd + causeway on 127.0.0.1 (installs
#                                     what is missing), then prints the account to log in with.
#   tests/sandbox.sh --keeper         the same, with the IRC connections held by a connection
#                                     keeper (`causeway keeper`): restart or kill the gateway
#                                     (its pid is printed) and the puppets stay on IRC.
#   tests/sandbox.sh --config FILE    causeway alone, against the server FILE names
#                                     (SQLite database by default, see config/causeway.example.toml).
#
# Ports (override with the environment): SANDBOX_C2S_PORT=5222, SANDBOX_COMPONENT_PORT=5347,
# SANDBOX_IRC_PORT=6667. State lives in ./sandbox/ and survives restarts. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--config" ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 --config FILE" >&2; exit 2; }
  cargo build --release --locked
  target/release/causeway check-config --config "$2"
  exec target/release/causeway --config "$2"
fi

keeper=
if [ "${1:-}" = "--keeper" ]; then
  keeper=1
  shift
fi
[ $# -eq 0 ] || { echo "usage: $0 [--keeper | --config FILE]" >&2; exit 2; }

c2s_port=${SANDBOX_C2S_PORT:-5222}
component_port=${SANDBOX_COMPONENT_PORT:-5347}
irc_port=${SANDBOX_IRC_PORT:-6667}
for port in "$c2s_port" "$component_port" "$irc_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "sandbox: port $port is taken; set SANDBOX_*_PORT (see the top of $0)" >&2
    exit 1
  fi
done

tests/setup.sh sandbox
cargo build --locked

dir=$PWD/sandbox
mkdir -p "$dir/prosody/data" "$dir/prosody/certs" "$dir/ngircd"
[ -f "$dir/secret" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/secret"
[ -f "$dir/password" ] || head -c 12 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
secret=$(cat "$dir/secret")
password=$(cat "$dir/password")

# The same templates and snippet the tests use (tests/servers/, config/prosody.cfg.lua).
sed -e "s/example\.org/localhost/g" -e "s/change-me/$secret/g" -e "s/5347/$component_port/g" \
  config/prosody.cfg.lua > "$dir/prosody/components.lua"
sed -e "s|@DIR@|$dir/prosody|g" -e "s|@C2S_PORT@|$c2s_port|g" tests/servers/prosody.cfg.lua.in |
  awk -v snippet="$dir/prosody/components.lua" '
    /@COMPONENTS@/ { while ((getline line < snippet) > 0) print line; next }
    { print }' > "$dir/prosody/prosody.cfg.lua"
# (Placeholders the sandbox does not use, like the tests' TLS section, are left empty.)
sed -e "s|@DIR@|$dir/ngircd|g" -e "s|@PORT@|$irc_port|g" -e "s|@[A-Z_]*@||g" tests/servers/ngircd.conf.in > "$dir/ngircd/ngircd.conf"
prosodyctl --config "$dir/prosody/prosody.cfg.lua" register user localhost "$password" >/dev/null

keeper_line=
[ -z "$keeper" ] || keeper_line="keeper = \"$dir/keeper/keeper.sock\""
cat > "$dir/causeway.toml" <<TOML
# Written by tests/sandbox.sh
[xmpp]
host = "127.0.0.1"
port = $component_port
[database]
url = "sqlite://$dir/causeway.db"
[history]
spill_dir = "$dir/archive-spill"
[access]
allow = ["localhost"]
[irc]
domain = "irc.localhost"
secret = "$secret"
$keeper_line
[irc.servers."127.0.0.1"]
port = $irc_port
tls = false
TOML

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

prosody --config "$dir/prosody/prosody.cfg.lua" -F >"$dir/prosody/prosody.out" 2>&1 &
pids+=($!)
ngircd -n -f "$dir/ngircd/ngircd.conf" >"$dir/ngircd/ngircd.out" 2>&1 &
pids+=($!)
for port in "$c2s_port" "$component_port" "$irc_port"; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
if [ -n "$keeper" ]; then
  # The keeper's socket in a directory only this user can enter.
  mkdir -p "$dir/keeper"
  chmod 700 "$dir/keeper"
  RUST_LOG=${RUST_LOG:-info} target/debug/causeway keeper --config "$dir/causeway.toml" 2>"$dir/keeper/keeper.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    [ -S "$dir/keeper/keeper.sock" ] && break
    sleep 0.1
  done
  [ -S "$dir/keeper/keeper.sock" ] || { echo "sandbox: the keeper did not start (see $dir/keeper/keeper.log)" >&2; exit 1; }
fi

cat <<INFO

  causeway sandbox is up.
    XMPP account:  user@localhost   password: $password
    XMPP server:   127.0.0.1:$c2s_port (no TLS: allow plaintext in your client)
    Gateway:       irc.localhost (IRC server 127.0.0.1:$irc_port as "127.0.0.1")
    Logs:          $dir/prosody/prosody.log, $dir/ngircd/ngircd.out, causeway below
  Ctrl-C stops everything.
INFO
if [ -n "$keeper" ]; then
  cat <<INFO
    Keeper:        $dir/keeper/keeper.sock (log: $dir/keeper/keeper.log). The gateway
                   comes back when it stops or dies (kill it to try); the IRC connections
                   stay with the keeper meanwhile.
INFO
  echo
  while :; do
    RUST_LOG=${RUST_LOG:-info} target/debug/causeway --config "$dir/causeway.toml" &
    gateway=$!
    pids+=("$gateway")
    echo "sandbox: gateway pid $gateway"
    wait "$gateway" || true
    # Ctrl-C ends the script through the trap; anything else brings the gateway back.
    sleep 1
  done
fi
echo
RUST_LOG=${RUST_LOG:-info} target/debug/causeway --config "$dir/causeway.toml" &
pids+=($!)
wait "${pids[-1]}"
