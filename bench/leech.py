#!/usr/bin/python3
"""Leech benchmark: how fast bt, aria2 and libtorrent download one torrent from a libtorrent seeder.

Everything runs on this machine over loopback: an opentracker, one libtorrent seeder (its data
checked once before the first run), and one leecher at a time. Each run starts the leecher on an
empty folder, waits for it to exit having completed, compares every byte with the source, and
records the leecher's wall time, user+sys CPU seconds and peak RSS (from GNU time), plus the CPU
the seeder and the rest of the machine spent meanwhile. A markdown table of medians goes to stdout,
progress to stderr.

Run with /usr/bin/python3 (python3-libtorrent exists only for Debian's interpreter):
  /usr/bin/python3 bench/leech.py                       # 1 GiB, 3 runs of bt, aria2, libtorrent
  /usr/bin/python3 bench/leech.py --size 64M --runs 1   # a quick check
See bench/README.md.
"""
import argparse
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LT_PEER = BENCH_DIR / "lt_peer.py"
PYTHON = "/usr/bin/python3"
CLIENTS = ("bt", "aria2", "libtorrent")
PIECE_LENGTH = "256K"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass
class Run:
    """One leecher run and what it cost."""

    client: str
    run: int
    ok: bool
    wall_s: float
    user_s: float = 0.0
    sys_s: float = 0.0
    maxrss_kib: int = 0
    seeder_cpu_s: float = 0.0
    other_cpu_s: float = 0.0
    exit_code: int | None = None
    error: str = ""

    @property
    def cpu_s(self):
        """User plus system CPU seconds of the leecher."""
        return self.user_s + self.sys_s


@dataclass
class Setup:
    """What every run shares: the torrent, its source data and the running seeder and tracker."""

    torrent: Path
    name: str
    size: int
    source: Path
    seed_addr: str
    seeder_pid: int
    tracker_port: int
    bt: Path | None
    procs: list = field(default_factory=list)
    # Whether every connection is encrypted (MSE, RC4): the seeder forces it, leechers require it.
    rc4: bool = False
    # Whether every connection is uTP (BEP 29): the seeder and libtorrent leechers speak only uTP,
    # bt gets `--transport utp`. Otherwise every connection is TCP (bt gets `--transport tcp`).
    utp: bool = False
    # Who seeds: "libtorrent" (lt_peer.py) or "bt" (`bt seed`).
    seeder: str = "libtorrent"


def log(msg):
    """A progress line on stderr."""
    print(f"[leech] {msg}", file=sys.stderr, flush=True)


def parse_size(text):
    """'1G', '64M', '512K' or a plain byte count to bytes (binary units)."""
    m = re.fullmatch(r"(\d+)\s*([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (try 1G, 64M, 512K)")
    return int(m.group(1)) * UNITS[m.group(2).upper()]


def size_label(size):
    """The shortest exact label for SIZE: 1G, 64M, 1536K, or a byte count."""
    for unit in ("G", "M", "K"):
        if size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]}{unit}"
    return str(size)


def parse_clients(text):
    """A comma-separated list of known client names, in the order given."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in CLIENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"clients are a comma list of {', '.join(CLIENTS)}")
    return names


def port_is_free(port):
    """Whether PORT can be bound on 127.0.0.1 for both TCP and UDP right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            # As servers do, so that connections of an earlier run in TIME_WAIT do not count.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_bt():
    """Builds bt in release (honouring CARGO_TARGET_DIR) and returns the binary's path."""
    log("building bt (cargo build --release -p bt-runtime --bin bt)")
    subprocess.run(
        ["cargo", "build", "--release", "-p", "bt-runtime", "--bin", "bt"],
        cwd=REPO_DIR,
        check=True,
    )
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO_DIR,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(meta.stdout)["target_directory"]) / "release" / "bt"


def make_content(work, size):
    """Makes (once) SIZE pseudo-random bytes in two files under WORK; returns (parent, name).

    The bytes come from a PRNG seeded with the size, so every machine makes the same content and
    the same torrent. The files are not piece-aligned, so one piece spans both. A marker file
    records completion: an interrupted generation starts over.
    """
    name = f"bench-{size_label(size)}"
    parent = work / f"content-{size_label(size)}"
    marker = parent / ".complete"
    if marker.exists():
        return parent, name
    log(f"making {size_label(size)} of content in {parent}")
    shutil.rmtree(parent, ignore_errors=True)
    (parent / name).mkdir(parents=True)
    rng = random.Random(size)
    first = min(size, size * 5 // 8 + 12345)
    chunk = 4 << 20
    for fname, length in (("part-1.bin", first), ("part-2.bin", size - first)):
        with open(parent / name / fname, "wb") as f:
            left = length
            while left:
                n = min(chunk, left)
                f.write(rng.randbytes(n))
                left -= n
    marker.touch()
    return parent, name


def make_torrent(bt, work, parent, name, tracker_port):
    """Makes (once per tracker URL) the torrent with 256 KiB pieces; returns its path."""
    torrent = work / f"{name}-tracker{tracker_port}.torrent"
    if torrent.exists():
        return torrent
    url = f"http://127.0.0.1:{tracker_port}/announce"
    log(f"creating {torrent.name} (bt create, {PIECE_LENGTH} pieces, {url})")
    subprocess.run(
        [str(bt), "create", str(parent / name), "-t", url, "-l", PIECE_LENGTH, "-o", str(torrent) + ".tmp", "-f"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    os.replace(str(torrent) + ".tmp", torrent)
    return torrent


def info_hash(torrent):
    """The torrent's v1 info hash in hex, as libtorrent reads it."""
    import libtorrent as lt

    return str(lt.torrent_info(str(torrent)).info_hash())


def spawn(procs, argv, log_path, **kw):
    """Starts ARGV in its own session (so Ctrl-C reaches only us), output to LOG_PATH; records it."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )
    procs.append(proc)
    return proc


def stop_all(procs):
    """Kills every process we started that is still running, and reaps it.

    Each was started as the leader of its own process group, so the group's id is its PID: killing
    that group also stops what it started (the leecher under /usr/bin/time) and nothing else.
    """
    for proc in reversed(procs):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"pid {proc.pid} did not die")
    procs.clear()


def wait_for(what, predicate, timeout, proc=None):
    """Polls PREDICATE until true; fails after TIMEOUT seconds or if PROC exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout} s")


def scrape_complete(port, ih):
    """How many seeders opentracker knows for IH, or None if it does not answer."""
    q = urllib.parse.quote_from_bytes(bytes.fromhex(ih))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/scrape?info_hash={q}", timeout=2) as r:
            body = r.read()
    except (urllib.error.URLError, OSError):
        return None
    # The answer is d5:filesd20:<hash>d8:completei<N>e...eee; one torrent, so one "complete".
    m = re.search(rb"8:completei(\d+)e", body)
    return int(m.group(1)) if m else 0


def start_tracker(procs, work, port, ih):
    """Starts opentracker on 127.0.0.1:PORT (HTTP and UDP) whitelisting IH; waits until it answers."""
    tdir = work / f"tracker-{port}"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "whitelist.txt").write_text(ih + "\n")
    argv = ["opentracker", "-i", "127.0.0.1", "-p", str(port), "-P", str(port), "-d", str(tdir), "-w", "whitelist.txt"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = spawn(procs, argv, work / "tracker.log")
    wait_for("opentracker", lambda: scrape_complete(port, ih) is not None, 15, proc)
    return proc


def start_seeder(procs, work, torrent, parent, tracker_port, ih, port, rc4, utp, bt=None):
    """Starts the seeder (libtorrent, or `bt seed` when BT is given), waits until it has checked its
    data and the tracker lists it; returns the process and its address."""
    if bt is not None:
        return start_bt_seeder(procs, work, torrent, parent, tracker_port, ih, port, rc4, utp, bt)
    log_path = work / "seeder.log"
    argv = [PYTHON, str(LT_PEER), "seed", str(torrent), str(parent), "--port", str(port)]
    proc = spawn(procs, argv + (["--rc4"] if rc4 else []) + (["--utp"] if utp else []), log_path)

    def said(word):
        text = log_path.read_text(errors="replace")
        m = re.search(rf"^{word}(?: (\d+))?$", text, re.MULTILINE)
        return m and (m.group(1) or True)

    seed_port = int(wait_for("seeder listening", lambda: said("listening"), 30, proc))
    log(f"libtorrent seeder on 127.0.0.1:{seed_port} checking its data")
    wait_for("seeder checked its data", lambda: said("seeding"), 600, proc)
    wait_for("tracker lists the seeder", lambda: (scrape_complete(tracker_port, ih) or 0) >= 1, 60, proc)
    log("seeder is seeding and announced")
    return proc, f"127.0.0.1:{seed_port}"


def start_bt_seeder(procs, work, torrent, parent, tracker_port, ih, port, rc4, utp, bt):
    """`bt seed` with its own state folder, the DHT off, and only uTP or only TCP; waits for its
    JSON event `listening` and a `status` holding every piece, then for the tracker to list it."""
    log_path = work / "seeder.log"
    state = work / "bt-seeder-state"
    shutil.rmtree(state, ignore_errors=True)
    env = dict(os.environ, HOME=str(state))
    for kind in ("data", "config", "cache", "state"):
        env[f"XDG_{kind.upper()}_HOME"] = str(state / kind)
    argv = [str(bt), "seed", str(torrent), "-d", str(parent), "--listen", f"127.0.0.1:{port}", "--json", "--no-dht"]
    argv += ["--transport", "utp" if utp else "tcp"]
    if rc4:
        argv += ["--encryption", "require"]
    proc = spawn(procs, argv, log_path, env=env)

    def event(name, check=lambda doc: True):
        for line in log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("event") == name and check(doc):
                    return doc
        return None

    addr = wait_for("bt seeder listening", lambda: (event("listening") or {}).get("addr"), 30, proc)
    log(f"bt seeder on {addr} checking its data")
    wait_for(
        "bt seeder holds every piece",
        lambda: event("status", lambda doc: doc.get("pieces") and doc.get("have") == doc.get("pieces")),
        600,
        proc,
    )
    wait_for("tracker lists the seeder", lambda: (scrape_complete(tracker_port, ih) or 0) >= 1, 60, proc)
    log("seeder is seeding and announced")
    return proc, addr


def proc_cpu_seconds(pid):
    """User+system CPU seconds PID has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def leecher_argv(client, setup, out, via_tracker):
    """The command line that downloads SETUP's torrent into OUT with CLIENT."""
    if client == "bt":
        argv = [str(setup.bt), "get", str(setup.torrent), "-o", str(out), "--listen", "127.0.0.1:0"]
        if setup.rc4:
            argv += ["--encryption", "require"]
        argv += ["--transport", "utp" if setup.utp else "tcp"]
        return argv if via_tracker else argv + ["--peer", setup.seed_addr]
    if client == "aria2":
        return [
            "aria2c",
            "--no-conf=true",
            f"--dir={out}",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            f"--listen-port={free_port()}",
            "--seed-time=0",
            "--check-integrity=false",
            "--file-allocation=none",
            "--bt-max-peers=55",
            "--bt-request-peer-speed-limit=1000M",
            "--max-download-limit=0",
            "--max-overall-download-limit=0",
            "--bt-save-metadata=false",
            "--auto-save-interval=0",
            "--summary-interval=0",
            "--console-log-level=warn",
            "--quiet=true",
        ] + (["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"] if setup.rc4 else []) + [
            str(setup.torrent),
        ]
    if client == "libtorrent":
        argv = [PYTHON, str(LT_PEER), "leech", str(setup.torrent), str(out), "--peer", setup.seed_addr]
        return argv + (["--rc4"] if setup.rc4 else []) + (["--utp"] if setup.utp else [])
    raise ValueError(client)


def children(pid):
    """The PIDs of PID's children, from /proc."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def io_bytes(pid):
    """Bytes PID (all its threads) has moved through read and write calls, sockets included; 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    fields = dict(line.split(": ") for line in text.splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def busy_cpu_seconds():
    """CPU seconds every core of the machine has spent busy since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    guest = sum(values[8:10])  # already counted in user and nice
    return (sum(values) - idle - guest) / os.sysconf("SC_CLK_TCK")


def timed(argv, rusage_path):
    """ARGV under GNU time, which writes the leecher's own rusage to RUSAGE_PATH.

    Not os.wait4 on the leecher directly: Python starts children with vfork, so a child's ru_maxrss
    starts at this script's own peak RSS (Linux carries the old address space's high-water mark
    across exec). GNU time forks from a small process, so its %M is the leecher's.
    """
    return ["/usr/bin/time", "-o", str(rusage_path), "-f", "rusage %U %S %M", *argv]


def read_rusage(rusage_path):
    """(user s, sys s, peak RSS KiB) from GNU time's report, or zeros if it wrote none."""
    try:
        text = rusage_path.read_text()
    except OSError:
        return 0.0, 0.0, 0
    m = re.search(r"^rusage (\S+) (\S+) (\d+)$", text, re.MULTILINE)
    return (float(m.group(1)), float(m.group(2)), int(m.group(3))) if m else (0.0, 0.0, 0)


def wait_measured(proc, timeout, stall):
    """Waits for PROC (GNU time running the leecher) to exit; returns (exit code, why it was killed or "").

    The leecher is killed when it runs TIMEOUT seconds in all, or when it moves less than 1 MiB
    through its sockets and files for STALL seconds. A pidfd tells when PROC exits, so the clock
    stops at once rather than at the next poll.
    """
    fd = os.pidfd_open(proc.pid)
    started = last_progress = time.monotonic()
    mark = 0
    killed = ""
    try:
        while not select.select([fd], [], [], 1.0)[0]:
            now = time.monotonic()
            moved = sum(io_bytes(pid) for pid in children(proc.pid))
            if moved - mark >= 1 << 20:
                mark, last_progress = moved, now
            if now - started > timeout:
                killed = f"timed out after {timeout:.0f} s"
            elif now - last_progress > stall:
                killed = f"stalled: under 1 MiB moved in {stall:.0f} s"
            if killed:
                # Kill the leecher, not GNU time, so that time still reports what it used.
                for pid in children(proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if not select.select([fd], [], [], 10)[0]:
                    os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        os.close(fd)
    return proc.wait(), killed


def same_tree(source, copy):
    """None if every file under SOURCE is byte-identical under COPY, else what differs."""
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        other = copy / path.relative_to(source)
        if not other.is_file():
            return f"{other} is missing"
        if path.stat().st_size != other.stat().st_size:
            return f"{other} has {other.stat().st_size} bytes, expected {path.stat().st_size}"
        with open(path, "rb") as a, open(other, "rb") as b:
            offset = 0
            while True:
                x, y = a.read(8 << 20), b.read(8 << 20)
                if x != y:
                    return f"{other} differs near byte {offset}"
                if not x:
                    break
                offset += len(x)
    return None


def wait_quiet(max_wait, busy_cores):
    """Waits (at most MAX_WAIT s) until the machine spends under BUSY_CORES cores for 2 s in a row.

    Other work on the machine competes with the seeder and the leecher for the cores; starting
    when it has stopped gives cleaner figures. Returns whether it got quiet.
    """
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        before = busy_cpu_seconds()
        time.sleep(2)
        busy = (busy_cpu_seconds() - before) / 2
        if busy < busy_cores:
            return True
        if time.monotonic() > deadline:
            log(f"the machine is still busy ({busy:.1f} cores): running anyway")
            return False
        if not said:
            log(f"the machine is busy ({busy:.1f} cores in use): waiting up to {max_wait:.0f} s for it to calm down")
            said = True


def run_once(client, number, setup, work, limits, via_tracker, quiet_wait):
    """One leecher run on an empty folder: measured, verified, then the folder is removed."""
    out = work / "out" / f"{client}-{number}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.sync()
    argv = leecher_argv(client, setup, out, via_tracker)
    if quiet_wait > 0:
        wait_quiet(quiet_wait, 0.25)
    log_path = work / "logs" / f"{client}-{number}.log"
    log_path.parent.mkdir(exist_ok=True)
    rusage_path = work / "logs" / f"{client}-{number}.rusage"
    rusage_path.unlink(missing_ok=True)
    seeder_before = proc_cpu_seconds(setup.seeder_pid)
    busy_before = busy_cpu_seconds()
    started = time.monotonic()
    proc = spawn(setup.procs, timed(argv, rusage_path), log_path)
    code, killed = wait_measured(proc, *limits)
    wall = time.monotonic() - started
    setup.procs.remove(proc)
    seeder_cpu = proc_cpu_seconds(setup.seeder_pid) - seeder_before
    user, system, maxrss = read_rusage(rusage_path)
    other_cpu = max(0.0, busy_cpu_seconds() - busy_before - seeder_cpu - user - system)
    if killed:
        error = killed
    elif code != 0:
        error = f"exit code {code}"
    else:
        diff = same_tree(setup.source / setup.name, out / setup.name)
        error = f"data differs: {diff}" if diff else ""
    result = Run(
        client,
        number,
        not error,
        wall,
        user,
        system,
        maxrss,
        seeder_cpu,
        other_cpu,
        code,
        error,
    )
    if result.ok:
        shutil.rmtree(out)
    else:
        log(f"{client} run {number} failed ({error}); log {log_path}, output kept in {out}")
    return result


def median(values):
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def fmt(value, digits):
    """A number with DIGITS decimals, or a dash for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def summarize(clients, runs, size):
    """Per client: medians over the successful runs."""
    rows = []
    for client in clients:
        mine = [r for r in runs if r.client == client]
        good = [r for r in mine if r.ok]
        wall = median([r.wall_s for r in good])
        rows.append(
            {
                "client": client,
                "median_wall_s": wall,
                "mb_per_s": size / wall / 1e6 if wall else None,
                "median_cpu_s": median([r.cpu_s for r in good]),
                "median_peak_rss_mib": median([r.maxrss_kib / 1024 for r in good]),
                "median_seeder_cpu_s": median([r.seeder_cpu_s for r in good]),
                "ok_runs": len(good),
                "runs": len(mine),
            }
        )
    return rows


def describe_machine(bt, built):
    """Versions and machine facts that the figures depend on, for the report."""

    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (out.stdout.strip() or out.stderr.strip() or "?").splitlines()[0]

    import libtorrent as lt

    return {
        "bt": first_line([str(bt), "--version"]),
        "bt_path": str(bt),
        "bt_commit": first_line(["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"]) if built else None,
        "aria2": first_line(["aria2c", "--version"]),
        "libtorrent": lt.__version__,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
    }


def markdown(rows, runs, size, machine, rc4=False, utp=False, seeder="libtorrent"):
    """The summary table and the per-run figures, as markdown."""
    lines = [
        f"Leeching {size_label(size)} ({size} bytes, {PIECE_LENGTH} pieces) from one {seeder} seeder on "
        f"loopback over {'uTP' if utp else 'TCP'}{', every connection encrypted (MSE, RC4)' if rc4 else ''}; "
        "MB = 10^6 bytes; medians over "
        "the successful runs.",
        f"{machine['bt']} ({'built at ' + machine['bt_commit'] if machine['bt_commit'] else machine['bt_path']}), "
        f"{machine['aria2']}, libtorrent {machine['libtorrent']}, "
        f"{machine['cores']} cores, load average {machine['loadavg_at_start']:.2f} at start.",
        "",
        "| client | median wall s | MB/s | median user+sys CPU s | median peak RSS MiB | runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['client']} | {fmt(r['median_wall_s'], 2)} | {fmt(r['mb_per_s'], 1)} | "
            f"{fmt(r['median_cpu_s'], 2)} | {fmt(r['median_peak_rss_mib'], 1)} | {r['ok_runs']}/{r['runs']} |"
        )
    lines += [
        "",
        f"Per run. Seeder CPU: what the {seeder} seeder used meanwhile; other CPU: the rest of the machine",
        "(this script, the tracker, anything else running).",
        "",
        "| client | run | ok | wall s | MB/s | user s | sys s | peak RSS MiB | seeder CPU s | other CPU s | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.client} | {r.run} | {'yes' if r.ok else 'NO'} | {r.wall_s:.2f} | "
            f"{fmt(size / r.wall_s / 1e6 if r.ok else None, 1)} | "
            f"{r.user_s:.2f} | {r.sys_s:.2f} | {r.maxrss_kib / 1024:.1f} | {r.seeder_cpu_s:.2f} | "
            f"{r.other_cpu_s:.2f} | {r.error} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    """The command line."""
    p = argparse.ArgumentParser(
        description="Benchmark bt, aria2 and libtorrent leeching from a libtorrent seeder on loopback.",
    )
    p.add_argument("--size", type=parse_size, default=parse_size("1G"), help="content size: 1G (default), 64M, ...")
    p.add_argument("--runs", type=int, default=3, help="runs per client (default 3)")
    p.add_argument(
        "--clients", type=parse_clients, default=list(CLIENTS), help="comma list (default bt,aria2,libtorrent)"
    )
    p.add_argument("--work", type=Path, default=BENCH_DIR / "work", help="work dir, content cached here (bench/work)")
    p.add_argument("--bt", type=Path, help="a bt binary to use instead of building one")
    p.add_argument(
        "--bt-via-tracker", action="store_true", help="bt finds the seeder through the tracker instead of --peer"
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds a run may take in all (default 600)")
    p.add_argument(
        "--stall", type=float, default=60, help="kill a run that moves under 1 MiB in this many seconds (default 60)"
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="before each run, wait up to this many seconds for other work on the machine to stop "
        "(default 120; 0 to start at once)",
    )
    p.add_argument(
        "--tracker-port",
        type=int,
        default=27169,
        help="opentracker port, written in the torrent (default 27169; a free one if taken)",
    )
    p.add_argument("--seed-port", type=int, default=0, help="seeder port (default: any free one)")
    p.add_argument(
        "--seeder",
        choices=("libtorrent", "bt"),
        default="libtorrent",
        help="who seeds: libtorrent (default) or `bt seed`, to measure bt's upload side",
    )
    p.add_argument(
        "--encrypted",
        action="store_true",
        help="the seeder takes only encrypted connections under RC4 (MSE), and every leecher requires them",
    )
    p.add_argument(
        "--utp",
        action="store_true",
        help="every connection over uTP: the seeder and the libtorrent leecher speak only uTP, bt gets "
        "--transport utp (aria2 has no uTP); otherwise every connection is TCP",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.utp and "aria2" in args.clients:
        p.error("aria2 has no uTP: leave it out of --clients with --utp")
    return args


def prepare(args, procs):
    """Builds bt, makes content and torrent, starts tracker and seeder; returns the Setup."""
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "out", ignore_errors=True)  # downloads an earlier, interrupted run left
    bt = args.bt.resolve() if args.bt else build_bt()
    if not bt.is_file():
        raise RuntimeError(f"no bt binary at {bt}")
    parent, name = make_content(work, args.size)
    tracker_port = args.tracker_port
    if not port_is_free(tracker_port):
        tracker_port = free_port()
        log(f"tracker port {args.tracker_port} is taken: using {tracker_port} (and a torrent announcing there)")
    torrent = make_torrent(bt, work, parent, name, tracker_port)
    ih = info_hash(torrent)
    log(f"torrent {torrent.name}, info hash {ih}")
    start_tracker(procs, work, tracker_port, ih)
    seeder, seed_addr = start_seeder(
        procs,
        work,
        torrent,
        parent,
        tracker_port,
        ih,
        args.seed_port,
        args.encrypted,
        args.utp,
        bt if args.seeder == "bt" else None,
    )
    return Setup(
        torrent,
        name,
        args.size,
        parent,
        seed_addr,
        seeder.pid,
        tracker_port,
        bt,
        procs,
        args.encrypted,
        args.utp,
        args.seeder,
    )


def run_all(args, setup, runs):
    """Every run of every client in turn, appended to RUNS as they finish."""
    work = args.work.resolve()
    for client in args.clients:
        for number in range(1, args.runs + 1):
            log(f"{client} run {number}/{args.runs}")
            r = run_once(
                client, number, setup, work, (args.timeout, args.stall), args.bt_via_tracker, args.quiet_wait
            )
            rate = f"{args.size / r.wall_s / 1e6:.1f} MB/s" if r.ok else r.error
            log(
                f"{client} run {number}: {'ok' if r.ok else 'FAILED'} {r.wall_s:.2f} s, "
                f"{rate}, CPU {r.cpu_s:.2f} s, RSS {r.maxrss_kib / 1024:.1f} MiB, "
                f"seeder CPU {r.seeder_cpu_s:.2f} s, other CPU {r.other_cpu_s:.2f} s"
            )
            runs.append(r)


def main(argv):
    """Runs the benchmark; exit 0 if every run succeeded, 1 if any failed, 2 on a setup error."""
    args = parse_args(argv)
    # Ctrl-C interrupts even when started in the background (where SIGINT is inherited ignored);
    # SIGTERM and SIGHUP end the run as cleanly. Either way the finally below kills our processes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    procs = []
    runs = []
    status = 0
    try:
        setup = prepare(args, procs)
        machine = describe_machine(setup.bt, built=args.bt is None)
        run_all(args, setup, runs)
    except KeyboardInterrupt:
        log("interrupted; the table covers the runs that finished")
        status = 130
    except (RuntimeError, subprocess.CalledProcessError) as e:
        log(f"error: {e}")
        return 2
    finally:
        stop_all(procs)
    if not runs:
        return status or 1
    rows = summarize(args.clients, runs, args.size)
    print(markdown(rows, runs, args.size, machine, args.encrypted, args.utp, args.seeder))
    if args.json:
        doc = {
            "size": args.size,
            "piece_length": PIECE_LENGTH,
            "seeder": args.seeder,
            "utp": args.utp,
            "machine": machine,
            "summary": rows,
            "runs": [asdict(r) | {"cpu_s": r.cpu_s} for r in runs],
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return status or (0 if all(r.ok for r in runs) else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
