#!/usr/bin/env bash
# Smoke-fuzzes every cargo-fuzz target: builds them once, replays every
# committed input in fuzz/regressions/<target>/ (a committed crasher fails
# the script), then fuzzes each target for SECONDS (default 30):
#
#   scripts/fuzz-smoke.sh [SECONDS]
#
# Prints one summary line per target and exits non-zero if any replay or
# run failed (crash, timeout, out-of-memory); crashing inputs are left in
# fuzz/artifacts/<target>/, logs in fuzz/target/fuzz-logs/.
# Environment: as scripts/fuzz.sh (FUZZ_SANITIZER, FUZZ_RSS_LIMIT_MB, FUZZ_TIMEOUT_S),
# and FUZZ_TARGET_DIR: where the sanitized build goes, kept between runs so a
# clean clone (CI) rebuilds only sidx, not its ~300 dependencies under ASan —
# cold, that build took 24 of CI's 60 minutes on 2 cores
# [default: ~/.cache/sidx/fuzz-target].
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-30}
sanitizer=${FUZZ_SANITIZER:-address}
rss=${FUZZ_RSS_LIMIT_MB:-2048}
per_input=${FUZZ_TIMEOUT_S:-30}

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}

targets=$(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//')
started=$(date +%s)
target_dir=${FUZZ_TARGET_DIR:-$HOME/.cache/sidx/fuzz-target}
mkdir -p "$target_dir"
target_dir=$(cd "$target_dir" && pwd)
echo "== cargo fuzz build -s $sanitizer (target dir $target_dir)"
cargo fuzz build -s "$sanitizer" --target-dir "$target_dir"
host=$(rustc -vV | sed -n 's/^host: //p')
bins=$target_dir/$host/release
logs=fuzz/target/fuzz-logs
mkdir -p "$logs"

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=0
summary=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    flags=(-rss_limit_mb="$rss" -timeout="$per_input" -artifact_prefix="fuzz/artifacts/$t/")
    replayed=$(find "fuzz/regressions/$t" -type f | wc -l)
    echo "== $t: replaying $replayed committed inputs"
    if ! "$bins/$t" "${flags[@]}" -runs=0 "fuzz/regressions/$t" >"$logs/$t-replay.log" 2>&1; then
        tail -n 40 "$logs/$t-replay.log"
        summary+=("$t: FAILED replaying fuzz/regressions/$t (log: $logs/$t-replay.log)")
        failed=1
        continue
    fi
    echo "== $t: fuzzing for ${seconds}s"
    t0=$(date +%s)
    rc=0
    "$bins/$t" "${flags[@]}" -max_total_time="$seconds" -print_final_stats=1 \
        "fuzz/corpus/$t" "fuzz/regressions/$t" >"$logs/$t.log" 2>&1 || rc=$?
    took=$(($(date +%s) - t0))
    execs=$(stat number_of_executed_units "$logs/$t.log")
    rate=$(stat average_exec_per_sec "$logs/$t.log")
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [[ $rc -ne 0 ]]; then
        tail -n 60 "$logs/$t.log"
        summary+=("$t: FAILED (exit $rc) after ${took}s, ${execs:-?} execs; input in fuzz/artifacts/$t/, log $logs/$t.log")
        failed=1
    else
        summary+=("$t: ok, $replayed replayed, ${took}s, ${execs:-?} execs (${rate:-?}/s), corpus $corpus")
    fi
done

echo "== fuzz smoke summary ($(($(date +%s) - started))s in all)"
printf '%s\n' "${summary[@]}"
exit "$failed"
