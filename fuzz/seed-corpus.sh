#!/bin/sh
# Recreates the seed corpus for the fuzz targets (fuzz/corpus/ is gitignored).
#
#   fuzz/seed-corpus.sh [CORPUS_DIR]      (default fuzz/corpus)
#
# - every target: the files under fuzz/seeds/<target>/ (small hand-written inputs, plus regress-*
#   inputs that once crashed; README.md lists them), so `cargo fuzz run` replays them first;
# - metainfo, bencode: also every tests/fixtures/*.torrent.
#
# Existing corpus files (including ones libFuzzer added) are kept; seeds are overwritten.
set -eu

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
fixtures="$fuzz_dir/../tests/fixtures"
seeds="$fuzz_dir/seeds"
corpus="${1:-$fuzz_dir/corpus}"

targets=0
for dir in "$seeds"/*/; do
    target=$(basename "$dir")
    mkdir -p "$corpus/$target"
    cp "$dir"* "$corpus/$target/"
    targets=$((targets + 1))
done

found=0
for torrent in "$fixtures"/*.torrent; do
    [ -e "$torrent" ] || continue
    cp "$torrent" "$corpus/metainfo/"
    cp "$torrent" "$corpus/bencode/"
    found=$((found + 1))
done
if [ "$found" -eq 0 ]; then
    echo "seed-corpus.sh: no .torrent files in $fixtures" >&2
    exit 1
fi

echo "seed corpus in $corpus: $(find "$seeds" -type f | wc -l) seeds for $targets targets, $found torrents"
