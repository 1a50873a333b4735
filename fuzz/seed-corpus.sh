#!/bin/sh
# Recreates the seed corpus for the fuzz targets (fuzz/corpus/ is gitignored).
#
#   fuzz/seed-corpus.sh
#
# - metainfo, bencode: every tests/fixtures/*.torrent;
# - magnet: a few magnet URIs covering each parameter the parser knows.
#
# Existing corpus files (including ones libFuzzer added) are kept; seeds are overwritten.
set -eu

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
fixtures="$fuzz_dir/../tests/fixtures"
corpus="$fuzz_dir/corpus"

mkdir -p "$corpus/metainfo" "$corpus/bencode" "$corpus/magnet" "$corpus/wire" "$corpus/torrent" "$corpus/tracker" "$corpus/tracker_server"
printf "d8:intervali1800e5:peers6:\177\000\000\001\032\341e" >"$corpus/tracker/seed-compact"
# A record: control byte 0 (raw HTTP), length, then an announce request.
req='GET /announce?info_hash=%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01&port=6881&left=5 HTTP/1.1\r\n\r\n'
{ printf '\000'; printf "\\$(printf '%03o' "$(printf '%b' "$req" | wc -c)")"; printf '%b' "$req"; } >"$corpus/tracker_server/seed-announce"
printf "\001\000\000\000\001\001\000\000\000\005\004\000\000\000\007" >"$corpus/wire/seed-frames"

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

# Small hand-written bencode: every value kind plus the accepted non-canonical forms.
printf 'i-42e' >"$corpus/bencode/seed-int"
printf 'l4:spami0ed1:ai1e1:bli2eeee' >"$corpus/bencode/seed-nested"
printf 'd1:bi1e1:ai03ee' >"$corpus/bencode/seed-unsorted-leading-zero"
printf 'd3:foo3:bare<raw data>' >"$corpus/bencode/seed-trailing"

magnet() {
    printf '%s' "$2" >"$corpus/magnet/$1"
}
hash=c12fe1c06bba254a9dc9f519b335aa7c1367a88a
magnet hex-only "magnet:?xt=urn:btih:$hash"
magnet base32 "MAGNET:?xt=URN:BTIH:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&dn=Base32+Name"
magnet full "magnet:?xt=urn:btih:$hash&dn=Some+Name%20%C3%A9&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr.1=udp://127.0.0.1:6969/announce&x.pe=10.0.0.1:6881&x.pe=[2001:db8::1]:51413&so=0,2,4-6"
magnet numbered-keys "magnet:?xt.1=urn:btih:$hash&xt.2=urn:btmh:1220aaaa&tr.2=http://t.example/a&&x.pe.1=host.example:1"
magnet v2-only "magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&dn=v2"

echo "seed corpus in $corpus: $found torrents, $(ls "$corpus/magnet" | wc -l) magnet URIs"
