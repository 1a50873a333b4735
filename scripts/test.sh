#!/usr/bin/env bash
# The whole bt test suite, as README.md and .ci/run give it: installs what the tests need and this
# machine lacks (scripts/install-test-deps.sh), runs a short fuzz of every fuzz target, the doc tests,
# and then every unit, property and end-to-end test with cargo-nextest (last, so its summary closes
# the output).
#
# FUZZ_SECONDS (default 20) sets how long each fuzz target runs; 0 skips fuzzing. FUZZ_JOBS sets
# how many run at once (default: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# protocol/ is sans-IO: no async runtime or I/O crate may enter its dependency tree.
if cargo tree -p bt-protocol -e normal --prefix none | grep -E '^(tokio|mio|socket2|async-std|smol|quinn-udp|turmoil) '; then
    echo "test.sh: bt-protocol depends on an I/O crate (above); it must stay sans-IO" >&2
    exit 1
fi

fuzz_seconds="${FUZZ_SECONDS:-20}"
# FUZZ_JOBS (default: the machine's cores, at most 4) sets how many targets fuzz at once; each
# fuzzer is one process on one core.
fuzz_jobs="${FUZZ_JOBS:-$(nproc)}"
[ "$fuzz_jobs" -le 4 ] || fuzz_jobs=4
[ "$fuzz_jobs" -ge 1 ] || fuzz_jobs=1
if [ "$fuzz_seconds" -gt 0 ]; then
    fuzz/seed-corpus.sh
    (
        cd fuzz
        . ./options.sh
        cargo fuzz build -s none
        mkdir -p target
        targets=$(cargo fuzz list)
        listed=$(echo "$targets" | wc -w)
        if [ "$listed" -eq 0 ]; then
            echo "fuzz: \`cargo fuzz list\` names no target" >&2
            exit 1
        fi
        # Fuzzes one target into target/fuzz-TARGET.log and records its exit code in
        # target/fuzz-TARGET.rc. -max_total_time bounds the fuzzing, -timeout each input
        # (options.sh); the outer timeout bounds the rest (replaying the corpus, a stuck build
        # lock) with a minute of slack, and its signal reaches the fuzzer too (its process group).
        fuzz_one() {
            local target=$1 rc=0
            # shellcheck disable=SC2046 # the options are words
            timeout -k 10 $((fuzz_seconds + 60)) cargo fuzz run -s none "$target" -- \
                -max_total_time="$fuzz_seconds" $(fuzz_options "$target") \
                >"target/fuzz-$target.log" 2>&1 || rc=$?
            echo "$rc" >"target/fuzz-$target.rc"
        }
        for target in $targets; do
            rm -f "target/fuzz-$target.rc"
            fuzz_one "$target" &
            # At most fuzz_jobs at once: wait for one to end before starting the next.
            while [ "$(jobs -rp | wc -l)" -ge "$fuzz_jobs" ]; do
                wait -n || true
            done
        done
        wait
        ran=0
        for target in $targets; do
            log="target/fuzz-$target.log"
            if [ "$(cat "target/fuzz-$target.rc" 2>/dev/null || echo missing)" != 0 ]; then
                tail -n 40 "$log" >&2
                echo "fuzz: $target failed or hung; the input is under fuzz/artifacts/$target/" >&2
                exit 1
            fi
            if ! result=$(fuzz_result "$log"); then
                tail -n 40 "$log" >&2
                echo "fuzz: $target did not run (no \"Done N runs\" in fuzz/$log)" >&2
                exit 1
            fi
            echo "fuzz: $target: $result"
            ran=$((ran + 1))
        done
        if [ "$ran" -ne "$listed" ]; then
            echo "fuzz: $ran of $listed targets ran" >&2
            exit 1
        fi
    )
fi

cargo test --workspace --doc --quiet
# The end-to-end tests run the `bt` binary of the test profile; build it first and hand it to them
# (BT_BIN), so no test spends its time budget waiting for a build or for cargo's locks.
cargo build --quiet -p bt-runtime --bin bt
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export BT_BIN="$target_dir/debug/bt"

# Two shipped scenarios are too slow for a debug build (their tests run only under --release):
# run them on a release btsim, whose exit code is 0 only when every expectation held.
cargo build --quiet --release -p bt-sim --bin btsim
"$target_dir/release/btsim" run sim/scenarios/flash-crowd-5000.toml
"$target_dir/release/btsim" run sim/scenarios/flash-crowd.toml --engine turmoil

cargo nextest run --workspace
