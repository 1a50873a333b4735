#!/usr/bin/python3
"""Streaming benchmark: a player reading a file from `bt get --serve` while the torrent downloads.

Everything runs on this machine over loopback: an opentracker, one libtorrent seeder whose upload
is limited (so the download takes a while), and `bt get --serve` on an empty folder. A player
asks for the torrent's first file over HTTP as soon as bt serves, and plays it at a fixed rate
(by default half the seeder's limit): it takes the bytes as they come, keeps at most --buffer
seconds of them ahead of what it has played (as a player's cache does), and plays only bytes it
holds. It reports the time to first byte (from the request, and from bt's start: the request
goes out once bt says it serves and the index page names the file), each stall (the
player's buffer ran dry while the file was not over) with its length, and when bt completed.
Nothing here is asserted: the figures go to stdout as a markdown table, progress to stderr.

Run with /usr/bin/python3 (python3-libtorrent exists only for Debian's interpreter):
  /usr/bin/python3 bench/stream.py                    # 256 MiB at 8 MiB/s, played at 4 MiB/s
  /usr/bin/python3 bench/stream.py --size 64M --limit 4M --runs 1
See bench/README.md.
"""
import argparse
import html
import http.client
import re
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import leech  # noqa: E402  (the content, torrent, tracker and seeder helpers)

CHUNK = 64 * 1024


def parse_args(argv):
    p = argparse.ArgumentParser(description="A player streaming from bt get --serve during the download.")
    p.add_argument("--size", type=leech.parse_size, default=leech.parse_size("256M"), help="content size (256M)")
    p.add_argument("--limit", type=leech.parse_size, default=leech.parse_size("8M"), help="seeder upload B/s (8M)")
    p.add_argument("--play", type=float, default=0.5, help="play rate as a fraction of --limit (0.5)")
    p.add_argument("--buffer", type=float, default=10.0, help="seconds the player reads ahead at most (10)")
    p.add_argument("--runs", type=int, default=3, help="runs (3)")
    p.add_argument("--work", type=Path, default=leech.BENCH_DIR / "work", help="work dir (bench/work)")
    p.add_argument("--bt", type=Path, help="a bt binary to use instead of building one")
    p.add_argument("--tracker-port", type=int, default=27170, help="opentracker port (27170)")
    p.add_argument("--timeout", type=float, default=600, help="seconds a run may take (600)")
    args = p.parse_args(argv)
    if args.runs < 1 or not 0 < args.play <= 4:
        p.error("--runs must be at least 1 and --play in (0, 4]")
    return args


def play(url, rate, buffer_s, timeout):
    """Reads URL as a player playing at RATE bytes/s would; returns what it measured."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    asked = time.monotonic()
    conn.request("GET", u.path)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"GET {u.path}: {resp.status} {resp.reason}")
    length = int(resp.getheader("Content-Length"))
    p = {"received": 0, "played": 0.0, "first": None, "clock": None, "dry_since": None}
    stalls = []  # (start, end), seconds after the first byte

    def advance(now):
        """Plays from the last update to NOW what the buffer holds; a dry buffer starts a stall."""
        if p["first"] is None:
            return
        can = rate * (now - p["clock"])
        held = p["received"] - p["played"]
        if held >= can:
            p["played"] += can
        else:
            if p["dry_since"] is None and p["received"] < length:
                p["dry_since"] = p["clock"] + held / rate
            p["played"] = p["received"]
        p["clock"] = now

    deadline = asked + timeout
    while p["played"] < length:
        now = time.monotonic()
        if now > deadline:
            raise RuntimeError(f"the player did not finish within {timeout} s")
        advance(now)
        ahead = p["received"] - p["played"]
        if p["received"] < length and (p["first"] is None or ahead < rate * buffer_s):
            data = resp.read1(CHUNK)
            if not data:
                raise RuntimeError(f"the response ended after {p['received']} of {length} bytes")
            now = time.monotonic()
            if p["first"] is None:
                p["first"] = p["clock"] = now
            else:
                advance(now)
            p["received"] += len(data)
            if p["dry_since"] is not None:
                stalls.append((p["dry_since"] - p["first"], now - p["first"]))
                p["dry_since"] = None
        else:
            time.sleep(0.01)
    conn.close()
    return {
        "ttfb_s": p["first"] - asked,
        "first_byte_at": p["first"],
        "stalls": stalls,
        "play_s": time.monotonic() - p["first"],
        "length": length,
    }


def run_once(args, setup, number):
    """One run: a fresh bt get --serve and a player on it."""
    procs = []
    out = setup["work"] / f"stream-run-{number}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log_path = out / "bt.log"
    argv = [
        str(setup["bt"]), "get", str(setup["torrent"]), "-o", str(out / "data"), "--listen", "127.0.0.1:0",
        "--peer", setup["seed_addr"], "--serve", str(leech.free_port()), "--json",
    ]
    started = time.monotonic()
    bt = leech.spawn(procs, argv, log_path)
    try:
        def url():
            m = re.search(r'"event":\s*"serving".*?"url":\s*"([^"]+)"', log_path.read_text(errors="replace"))
            return m and m.group(1)

        base = leech.wait_for("bt serving", url, 30, bt).rstrip("/")
        with urllib.request.urlopen(base + "/", timeout=10) as index:
            first = re.search(r'href="(/files/0/[^"]+)"', index.read().decode())
        if not first:
            raise RuntimeError("the index page links no file 0")
        rate = args.limit * args.play
        result = play(base + html.unescape(first.group(1)), rate, args.buffer, args.timeout)
        done = re.search(r'"event":\s*"complete"', log_path.read_text(errors="replace"))
        result["bt_complete"] = bool(done)
        result["since_start_s"] = result["first_byte_at"] - started
        result["wall_s"] = time.monotonic() - started
        return result
    finally:
        leech.stop_all(procs)


def main(argv):
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        bt = args.bt.resolve() if args.bt else leech.build_bt()
        parent, name = leech.make_content(work, args.size)
        torrent = leech.make_torrent(bt, work, parent, name, args.tracker_port)
        ih = leech.info_hash(torrent)
        leech.start_tracker(procs, work, args.tracker_port, ih)
        seeder = leech.spawn(
            procs,
            [leech.PYTHON, str(leech.LT_PEER), "seed", str(torrent), str(parent), "--upload-limit", str(args.limit)],
            work / "stream-seeder.log",
        )
        port = leech.wait_for(
            "seeder listening",
            lambda: (m := re.search(r"^listening (\d+)$", (work / "stream-seeder.log").read_text(), re.M)) and m.group(1),
            30,
            seeder,
        )
        leech.wait_for(
            "seeder checked its data", lambda: "seeding" in (work / "stream-seeder.log").read_text(), 600, seeder
        )
        setup = {"bt": bt, "torrent": torrent, "seed_addr": f"127.0.0.1:{port}", "work": work}
        rows = []
        for n in range(1, args.runs + 1):
            leech.log(f"run {n}/{args.runs}")
            r = run_once(args, setup, n)
            stalled = sum(e - s for s, e in r["stalls"])
            late = [(s, e) for s, e in r["stalls"] if s >= 1.0]
            leech.log(
                f"run {n}: first byte {r['ttfb_s']:.3f} s, {len(r['stalls'])} stalls for {stalled:.2f} s "
                f"({len(late)} after the first second), played in {r['play_s']:.1f} s"
            )
            rows.append((r, stalled, late))
    finally:
        leech.stop_all(procs)
    size_mib = args.size / (1 << 20)
    print(
        f"`bt get --serve` from one libtorrent seeder limited to {args.limit / (1 << 20):g} MiB/s on loopback, "
        f"{size_mib:g} MiB torrent (256 KiB pieces); the player asks for its first file "
        f"({rows[0][0]['length']} bytes) at once and plays it at {args.play:g} x the limit, reading at "
        f"most {args.buffer:g} s ahead."
    )
    print()
    print(
        "| run | first byte after the request, s | after bt started, s | stalls | stalled s "
        "| stalls after 1 s | stalled after 1 s, s | played in s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, (r, stalled, late) in enumerate(rows, 1):
        late_s = sum(e - s for s, e in late)
        print(
            f"| {n} | {r['ttfb_s']:.3f} | {r['since_start_s']:.3f} | {len(r['stalls'])} | {stalled:.2f} "
            f"| {len(late)} | {late_s:.2f} "
            f"| {r['play_s']:.1f} |"
        )
    print()
    print(
        f"median first byte {statistics.median(r['ttfb_s'] for r, _, _ in rows):.3f} s after the request, "
        f"{statistics.median(r['since_start_s'] for r, _, _ in rows):.3f} s after bt started"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
