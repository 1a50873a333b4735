# Per-target libFuzzer options, one table for scripts/test.sh and fuzz/long.sh (sourced by both).
#
#   . fuzz/options.sh; fuzz_options TARGET    # prints the options for TARGET
#
# - every target: -timeout (seconds one input may take before it counts as a hang; libFuzzer's
#   default is 1200), FUZZ_INPUT_TIMEOUT or 10;
# - targets that read peer-wire or extension bytes: -max_len=65536 (libFuzzer's default is the
#   largest seed, a few KB, far below a 16 KiB block, a bitfield of many pieces or a large
#   extension message); magnet: 70000, past its 64 KiB MAX_URI_LEN.

fuzz_options() {
    local options="-timeout=${FUZZ_INPUT_TIMEOUT:-10}"
    case "$1" in
        wire | extended | ut_metadata | ut_pex | peer_conn | torrent | torrent_magnet)
            options="$options -max_len=65536"
            ;;
        magnet)
            options="$options -max_len=70000"
            ;;
    esac
    echo "$options"
}

# The figures of one libFuzzer run from its log: "N runs, cov: C, ft: F" from the final "Done N
# runs" line and the last status line. Fails (prints nothing) when the log has no "Done N runs":
# the target did not run, or did not finish.
fuzz_result() {
    local runs status
    runs=$(grep -E '^Done [0-9]+ runs' "$1" | tail -n 1 | awk '{print $2}' || true)
    [ -n "$runs" ] || return 1
    status=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$1" | tail -n 1 || true)
    echo "$runs runs, ${status:-cov: ? ft: ?}" | sed 's/ ft:/, ft:/'
}
