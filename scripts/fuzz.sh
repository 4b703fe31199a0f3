#!/usr/bin/env bash
# Fuzzes one target with cargo-fuzz (libFuzzer + AddressSanitizer), on stable
# Rust (RUSTC_BOOTSTRAP=1 lets stable accept the -Z flags cargo-fuzz passes):
#
#   scripts/fuzz.sh TARGET [SECONDS] [LIBFUZZER_FLAG...]
#
# TARGET is one of fuzz/fuzz_targets/*.rs: sid_file npy index_open sidecar
# requests. SECONDS defaults to 600. The committed seeds and regression
# inputs in fuzz/regressions/TARGET/ are read as a second corpus; new inputs
# go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET/ (both ignored).
#
# Environment: FUZZ_SANITIZER (address, or none for a plain build),
# FUZZ_RSS_LIMIT_MB (2048), FUZZ_TIMEOUT_S (30, per input),
# SIDX_FUZZ_TMPDIR (scratch indexes; default /dev/shm).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2

if [[ $# -lt 1 ]]; then
    echo "usage: $0 TARGET [SECONDS] [LIBFUZZER_FLAG...]" >&2
    echo "targets: $(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//' | tr '\n' ' ')" >&2
    exit 2
fi
target=$1
seconds=${2:-600}
shift $(($# >= 2 ? 2 : 1))
if [[ ! -f fuzz/fuzz_targets/$target.rs ]]; then
    echo "$0: no fuzz target $target (fuzz/fuzz_targets/$target.rs)" >&2
    exit 2
fi

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
# One fuzzing process, one core: the index builder's rayon pool stays small.
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}

mkdir -p "fuzz/corpus/$target" "fuzz/regressions/$target" "fuzz/artifacts/$target"
exec cargo fuzz run -s "${FUZZ_SANITIZER:-address}" "$target" \
    "fuzz/corpus/$target" "fuzz/regressions/$target" -- \
    -max_total_time="$seconds" \
    -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" \
    -timeout="${FUZZ_TIMEOUT_S:-30}" \
    -print_final_stats=1 \
    "$@"
