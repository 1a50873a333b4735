#!/usr/bin/python3
"""Print what libtorrent (the reference implementation) says about a .torrent file, as JSON.

Usage: /usr/bin/python3 tests/scripts/lt_info.py FILE.torrent

Must run under /usr/bin/python3: the python3-libtorrent binding (2.0.x) is installed only for the
Debian interpreter, not for a pyenv/venv python3 that may come first in PATH.

Output: one JSON object (keys in this order):
  info_hash      v1 info hash, SHA-1 hex lowercase (all zeros for a v2-only torrent)
  info_hash_v2   v2 info hash, SHA-256 hex lowercase, or null when the torrent has no v2 part
  name           torrent name
  num_pieces, piece_length
  total_size     sum of all file sizes, INCLUDING BEP 47 pad files (libtorrent's convention)
  files          [{"path", "size", "pad"}] in torrent order; "path" is fs.file_path(i), relative
                 and "/"-separated; for multi-file torrents it starts with the torrent name;
                 pad files (attr "p") are listed with "pad": true
  trackers       [{"url", "tier"}] sorted by (tier, url): libtorrent shuffles the URLs within a
                 tier each time it loads a torrent (BEP 12), so its own order is not stable;
                 compare URLs within a tier as a set
  private        bool
  web_seeds      [url] (BEP 19 url-list)
  comment, creator   strings, "" when absent
  creation_date  integer (Unix time), or null when absent (libtorrent reports 0)

On load failure: prints libtorrent's error to stderr and exits 1.
"""
import json
import os
import sys

try:
    import libtorrent as lt
except ImportError as e:
    sys.stderr.write(
        "lt_info.py: cannot import libtorrent (%s); run with /usr/bin/python3 "
        "and install python3-libtorrent (scripts/install-test-deps.sh)\n" % e
    )
    sys.exit(2)


def describe(path):
    ti = lt.torrent_info(path)
    hashes = ti.info_hashes()
    fs = ti.files()
    files = []
    for i in range(fs.num_files()):
        files.append(
            {
                "path": fs.file_path(i).replace(os.sep, "/"),
                "size": fs.file_size(i),
                "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
            }
        )
    creation_date = ti.creation_date()
    return {
        "info_hash": hashes.v1.to_bytes().hex(),
        "info_hash_v2": hashes.v2.to_bytes().hex() if hashes.has_v2() else None,
        "name": ti.name(),
        "num_pieces": ti.num_pieces(),
        "piece_length": ti.piece_length(),
        "total_size": ti.total_size(),
        "files": files,
        "trackers": sorted(
            ({"url": t.url, "tier": t.tier} for t in ti.trackers()),
            key=lambda t: (t["tier"], t["url"]),
        ),
        "private": bool(ti.priv()),
        "web_seeds": [w["url"] for w in ti.web_seeds()],
        "comment": ti.comment(),
        "creator": ti.creator(),
        "creation_date": creation_date if creation_date else None,
    }


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: /usr/bin/python3 lt_info.py FILE.torrent\n")
        return 2
    try:
        info = describe(argv[1])
    except RuntimeError as e:
        sys.stderr.write("lt_info.py: %s: %s\n" % (argv[1], e))
        return 1
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
