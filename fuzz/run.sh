#!/usr/bin/env bash
# Run the fuzz targets (coverage-guided, libFuzzer through cargo fuzz).
#   fuzz/run.sh SECONDS [TARGET...]   each target (default: all) for SECONDS
#   FUZZ_DEV=1 fuzz/run.sh ...        built without optimisation: about half the build
#                                     time, a fraction of the executions (CI's short runs)
# Each starts from its seeds (fuzz/seeds/TARGET) and the corpus earlier runs grew
# (fuzz/corpus/TARGET, not committed), and prints libFuzzer's final figures (executions,
# coverage, corpus). An input that makes a target fail is kept in fuzz/artifacts/TARGET
# and fails the run; its fix commits it to fuzz/regressions/TARGET, which `cargo test`
# runs through the target's function for ever after (src/fuzzing.rs).
# cargo fuzz wants a nightly compiler for its flags: RUSTC_BOOTSTRAP lets the stable one
# take them. No sanitizer: the gateway is safe Rust, and the fuzzer runs faster without.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(component_stream irc_line addresses matrix_transaction adhoc_form)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2 || exit 1
export RUSTC_BOOTSTRAP=1
mkdir -p logs
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  echo "=== $target: ${seconds} s"
  cargo fuzz run ${FUZZ_DEV:+--dev} --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 >"logs/$target.log" 2>&1
  status=$?
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)|^Done ' "logs/$target.log"
  if [ $status -ne 0 ]; then
    tail -n 40 "logs/$target.log" >&2
    echo "$target: failed (fuzz/logs/$target.log; failing input in fuzz/artifacts/$target)" >&2
    exit 1
  fi
done
