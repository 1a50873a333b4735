#!/usr/bin/env bash
# A long fuzz of every target under AddressSanitizer, two at a time, from the committed seeds.
#
#   fuzz/long.sh MINUTES [TARGET...]
#
# MINUTES per target (fractions allowed: 0.5 is 30 s; FUZZ_LONG_SECONDS, when set, overrides it
# in seconds); the targets default to all of `cargo fuzz list`. FUZZ_JOBS (default 2) sets how many
# run at once. Each target runs `RUSTC_BOOTSTRAP=1 cargo fuzz run -s address` with the per-input
# timeout and max_len of options.sh (shared with scripts/test.sh), under an outer `timeout` of its
# time plus two minutes, from a fresh scratch corpus (seed-corpus.sh into
# fuzz/target/long/corpus/, so the committed seeds are the start and fuzz/corpus/ is untouched).
# ASan builds go to their own target dir (fuzz/target/asan/) so they do not replace test.sh's.
#
# At the end it prints one line per target (status, executions, coverage and features, from
# libFuzzer's final "Done N runs" and "cov:" lines; logs in fuzz/target/long/<target>.log) and
# exits non-zero if any target crashed, hung or did not run. Crashing inputs are under
# fuzz/artifacts/<target>/ as usual.
set -euo pipefail
cd "$(dirname "$0")"
. ./options.sh

if [ $# -lt 1 ]; then
    echo "usage: fuzz/long.sh MINUTES [TARGET...]" >&2
    exit 2
fi
minutes=$1
shift
seconds=${FUZZ_LONG_SECONDS:-$(awk -v m="$minutes" 'BEGIN { s = int(m * 60 + 0.5); print s }')}
case "$seconds" in
    '' | *[!0-9]*) echo "long.sh: $minutes minutes is not a duration" >&2; exit 2 ;;
esac
if [ "$seconds" -lt 1 ]; then
    echo "long.sh: $minutes minutes is under a second" >&2
    exit 2
fi
jobs=${FUZZ_JOBS:-2}

export RUSTC_BOOTSTRAP=1
asan=(-s address --target-dir target/asan)
if [ $# -gt 0 ]; then
    targets=("$@")
else
    read -r -a targets <<<"$(cargo fuzz list | tr '\n' ' ')"
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "long.sh: no target (cargo fuzz list is empty)" >&2
    exit 1
fi

out=target/long
rm -rf "$out"
mkdir -p "$out"
./seed-corpus.sh "$out/corpus" >/dev/null
for target in "${targets[@]}"; do
    cargo fuzz build "${asan[@]}" "$target"
done

run() {
    local target=$1 log="$out/$1.log" rc=0
    mkdir -p "$out/corpus/$target"
    # shellcheck disable=SC2046 # the options are words
    timeout -k 10 $((seconds + 120)) cargo fuzz run "${asan[@]}" "$target" "$out/corpus/$target" \
        -- -max_total_time="$seconds" $(fuzz_options "$target") >"$log" 2>&1 || rc=$?
    echo "$rc" >"$out/$target.rc"
}

echo "long.sh: ${#targets[@]} targets, ${seconds} s each, $jobs at a time, AddressSanitizer"
for target in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    run "$target" &
done
wait

failed=0
for target in "${targets[@]}"; do
    rc=$(cat "$out/$target.rc" 2>/dev/null || echo '?')
    result=$(fuzz_result "$out/$target.log" || true)
    if [ -n "$result" ] && [ "$rc" = 0 ]; then
        printf '%-16s ok      %s\n' "$target" "$result"
    else
        failed=$((failed + 1))
        why=crashed
        if [ "$rc" = 124 ] || [ "$rc" = 137 ] || grep -q 'libFuzzer: timeout' "$out/$target.log"; then
            why=hung
        fi
        printf '%-16s %-7s exit %s, %s (see fuzz/%s)\n' "$target" "$why" "$rc" \
            "${result:-no \"Done N runs\"}" "$out/$target.log"
    fi
done
if [ "$failed" -gt 0 ]; then
    echo "long.sh: $failed of ${#targets[@]} targets failed" >&2
    exit 1
fi
