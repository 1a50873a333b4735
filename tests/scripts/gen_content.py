#!/usr/bin/env python3
"""Generate the deterministic content the fixture torrents in tests/fixtures/ describe.

Usage: gen_content.py OUTDIR

Stdlib only; any python3 (>= 3.6). The bytes depend only on each file's relative path
(SHA-256 in counter mode), never on time, randomness or the Python version, so a test can
regenerate the content and seed the fixture torrents with it.

Layout created under OUTDIR:
  single.bin                                 1,000,003 bytes (odd size)
  multi/                                     multi-file torrent root
    a-one-byte.bin                           1
    empty.bin                                0       (zero-length file)
    aligned-256KiB.bin                       262,144 (exact multiple of every piece length used)
    d1/size-16383.bin                        16,383
    d1/d2/size-16385.bin                     16,385
    d1/d2/d3/size-262145.bin                 262,145
    d1/d2/d3/size-999999.bin                 999,999
"""
import hashlib
import os
import sys

# (relative path with / separators, size in bytes). Keep in step with tests/fixtures/README.md.
FILES = [
    ("single.bin", 1_000_003),
    ("multi/a-one-byte.bin", 1),
    ("multi/empty.bin", 0),
    ("multi/aligned-256KiB.bin", 262_144),
    ("multi/d1/size-16383.bin", 16_383),
    ("multi/d1/d2/size-16385.bin", 16_385),
    ("multi/d1/d2/d3/size-262145.bin", 262_145),
    ("multi/d1/d2/d3/size-999999.bin", 999_999),
]


def content(relpath, size):
    """Deterministic bytes for one file: SHA-256(relpath || counter) blocks, truncated."""
    out = bytearray()
    seed = relpath.encode("utf-8") + b"\0"
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: gen_content.py OUTDIR\n")
        return 2
    outdir = argv[1]
    for relpath, size in FILES:
        path = os.path.join(outdir, *relpath.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content(relpath, size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
