#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz targets for bt-runtime's parsers into fuzz/seeds/:
units, resume, dht_state and tracker_http. Rerun after changing a target's input format:

    python3 fuzz/runtime_seeds.py

- resume: the first byte picks the torrent (the order of `TORRENTS` in
  fuzz_targets/resume.rs), the rest is a resume file as bt writes it (`runtime/src/resume.rs`).
- dht_state: the first byte's bit 0 is "IPv6 socket", the rest a dht.dat (protocol/src/dht/state.rs).
- tracker_http: `Vec<Step>` read with the `arbitrary` crate (its format: arbitrary_format.py).
"""
import hashlib
import os
import struct

from arbitrary_format import flag, u16, u32, u64, u8, variant, vec

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
SEEDS = os.path.join(HERE, "seeds")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- bencode ----

def bdecode(b, i=0):
    """(value, end); dictionaries as lists of (key, value, start, end) to keep the raw spans."""
    c = b[i:i + 1]
    if c == b"i":
        e = b.index(b"e", i)
        return int(b[i + 1:e]), e + 1
    if c == b"l":
        i += 1
        out = []
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = []
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            start = i
            v, i = bdecode(b, i)
            out.append((k, v, start, i))
        return out, i + 1
    colon = b.index(b":", i)
    n = int(b[i:colon])
    return b[colon + 1:colon + 1 + n], colon + 1 + n


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:" % len(v) + v
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(benc(k) + benc(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(v)


def get(d, key):
    for k, v, _, _ in d:
        if k == key:
            return v
    return None


def torrent(name):
    raw = open(os.path.join(FIXTURES, name), "rb").read()
    root, _ = bdecode(raw)
    for k, v, start, end in root:
        if k == b"info":
            info_hash = hashlib.sha1(raw[start:end]).digest()
            info = v
    pieces = len(get(info, b"pieces")) // 20
    files = get(info, b"files")
    padding = [b"p" in (get(f, b"attr") or b"") for f in files] if files else [False]
    return info_hash, pieces, padding


# ---- resume ----

TORRENTS = ["mktorrent-single.torrent", "mktorrent-multi.torrent",
            "libtorrent-hybrid-pad.torrent", "transmission-multi.torrent"]


def resume_file(info_hash, pieces, stamps, have=None, extra=None):
    bits = bytearray((pieces + 7) // 8)
    for p in range(pieces) if have is None else have:
        bits[p // 8] |= 0x80 >> (p % 8)
    d = {b"bt resume": 1, b"info hash": info_hash, b"piece count": pieces,
         b"pieces": bytes(bits),
         b"files": [{} if s is None else {b"length": s[0], b"mtime": s[1], b"mtime ns": s[2]}
                    for s in stamps]}
    d.update(extra or {})
    return benc(d)


def resume_seeds():
    for index, name in enumerate(TORRENTS):
        info_hash, pieces, padding = torrent(name)
        stamps = [None if pad else (1000 * (i + 1), 1_700_000_000 + i, 123_456_789)
                  for i, pad in enumerate(padding)]
        stem = name.removesuffix(".torrent")
        write("resume", f"{stem}-complete", bytes([index]) + resume_file(info_hash, pieces, stamps))
        # Half the pieces, one file missing (no stamp), one stamp given for a padding file.
        some = [None if i == 0 else s for i, s in enumerate(stamps)]
        if any(padding):
            some = [(1, 2, 3) if pad else s for s, pad in zip(some, padding)]
        write("resume", f"{stem}-partial", bytes([index]) + resume_file(
            info_hash, pieces, some, have=range(0, pieces, 2)))
    info_hash, pieces, padding = torrent(TORRENTS[1])
    stamps = [(5, 6, 7)] * len(padding)
    write("resume", "unsynced-other-boot", b"\x01" + resume_file(
        info_hash, pieces, stamps, extra={b"unsynced boot": b"not-this-boot"}))
    write("resume", "wrong-piece-count", b"\x01" + resume_file(info_hash, pieces, stamps)
          .replace(b"11:piece counti%de" % pieces, b"11:piece counti%de" % (pieces + 1)))
    write("resume", "bad-nanos", b"\x01" + resume_file(
        info_hash, pieces, [(5, 6, 1_000_000_000)] * len(padding)))


# ---- dht_state ----

def node4(i, port=6881):
    return bytes([i]) * 20 + bytes([10, 0, 0, i]) + struct.pack(">H", port)


def node6(i, port=6881):
    return bytes([0x80 | i]) * 20 + bytes([0x20, 0x01, 0x0d, 0xb8] + [0] * 11 + [i]) \
        + struct.pack(">H", port)


def dht_seeds():
    own = b"\x42" * 20
    write("dht_state", "v4-nodes", b"\x00" + benc(
        {b"id": own, b"nodes": b"".join(node4(i) for i in range(1, 9)), b"nodes6": b""}))
    write("dht_state", "dual-stack", b"\x01" + benc(
        {b"id": own, b"nodes": node4(1) + node4(2, 0),
         b"nodes6": b"".join(node6(i) for i in range(1, 5))}))
    write("dht_state", "duplicates", b"\x01" + benc(
        {b"id": own, b"nodes": node4(3) * 3, b"nodes6": node6(3) * 2}))
    write("dht_state", "id-only", b"\x00" + benc({b"id": own}))
    write("dht_state", "bad-nodes-length", b"\x00" + benc({b"id": own, b"nodes": b"x" * 25}))
    write("dht_state", "short-id", b"\x00" + benc({b"id": b"short", b"nodes": node4(1)}))
    write("dht_state", "not-a-dict", b"\x00li1ee")


# ---- units ----

def units_seeds():
    for name, text in [("plain", "262144"), ("kib", "256KiB"), ("k", "256k"), ("mib-space", " 1 MiB "),
                       ("gb", "3gb"), ("zero", "0"), ("bytes", "17B"), ("fraction", "1.5M"),
                       ("too-large", "99999999999999G"), ("unit-only", "K"), ("tib", "1TiB"),
                       ("max", "18446744073709551615")]:
        write("units", name, text.encode())


# ---- tracker_http ----

STEPS = ["Announce", "Scrape", "Raw", "Wait"]
HASHES = ["Known", "Any"]


def known(i): return variant(HASHES, "Known") + u8(i)


def announce(client, url=0, chunk=4095, hash_=None, peer=1, port=6881, left=0, event=0,
             numwant=None, key=0x1234):
    return (variant(STEPS, "Announce") + u8(client) + u8(url) + u16(chunk)
            + (hash_ or known(0)) + bytes([peer]) * 20 + u16(port) + u64(10) + u64(20)
            + u64(left) + u8(event) + (flag(False) if numwant is None else flag(True) + u32(numwant))
            + u32(key) + flag(False))


def scrape(hashes, raw=False, chunk=7):
    return variant(STEPS, "Scrape") + u16(chunk) + vec(hashes) + flag(raw)


def raw(data, wrap=0, client=0, chunk=3):
    return variant(STEPS, "Raw") + u8(client) + u16(chunk) + u8(wrap) + vec([u8(b) for b in data])


def wait(secs): return variant(STEPS, "Wait") + u8(secs)


def tracker_seeds():
    write("tracker_http", "swarm", vec([
        announce(0, event=1, left=100),
        announce(1, url=1, chunk=5, peer=2, left=0, event=1, numwant=2),
        announce(2, url=2, peer=3, left=5, hash_=known(1)),
        announce(3, url=3, peer=4, left=0, event=2, hash_=known(1)),
        scrape([known(0), known(1), known(0), known(3)], raw=True),
        wait(40), announce(0, peer=1, left=0, event=2, numwant=0),
        wait(61), scrape([known(0), known(2)]),
    ]))
    write("tracker_http", "refusals", vec([
        announce(0, port=0),
        announce(1, url=4),
        announce(2, hash_=variant(HASHES, "Any") + b"\x00" * 20, event=3),
        announce(0, hash_=known(2)), announce(0, hash_=known(3)),
        announce(0, hash_=variant(HASHES, "Any") + b"\xff" * 20),
        scrape([]),
    ]))
    write("tracker_http", "raw", vec([
        raw(b"GET /announce HTTP/1.1\r\n\r\n"),
        raw(b"info_hash=%25%25%25%25%25%25%25%25%25%25%25%25%25%25%25%25%25%25%25%25"
            b"&peer_id=aaaaaaaaaaaaaaaaaaaa&port=1&compact=0", wrap=1),
        raw(b"info_hash=%26%26%26%26%26%26%26%26%26%26%26%26%26%26%26%26%26%26%26%26", wrap=2),
        raw(b"POST /announce HTTP/1.0\n\n"),
        raw(b"GET /scrape HTTP/2\r\n\r\n"),
        raw(b"\r\n\r\n"),
    ]))


if __name__ == "__main__":
    resume_seeds()
    dht_seeds()
    units_seeds()
    tracker_seeds()
