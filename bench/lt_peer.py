#!/usr/bin/python3
"""A libtorrent peer for the leech benchmark, run as a subprocess of bench/leech.py.

Usage:
  /usr/bin/python3 bench/lt_peer.py seed  TORRENT SAVE_PATH [--port N] [--rc4] [--utp] [--upload-limit BYTES_PER_S]
  /usr/bin/python3 bench/lt_peer.py leech TORRENT SAVE_PATH --peer 127.0.0.1:PORT [--rc4] [--utp]

seed:  checks the data under SAVE_PATH (the whole torrent must be there), prints
       "listening PORT" and then "seeding" on stdout once every piece is verified and the
       tracker has been asked to announce, and serves until killed.
leech: downloads into SAVE_PATH from the one given peer (the torrent's trackers are dropped),
       flushes libtorrent's disk cache, and exits 0 once every piece is verified.

Both use settings that make libtorrent work on loopback: listen on 127.0.0.1 only,
DHT/LSD/UPnP/NAT-PMP off, no DHT bootstrap nodes, no IP notifier, and several connections per IP
(every peer is 127.0.0.1); and, to compare like with like, TCP only (no uTP) and plaintext
handshakes, or with --rc4 only encrypted connections (MSE) with the stream under RC4; with --utp,
uTP only (BEP 29; TCP off in both directions). Must run under /usr/bin/python3, the interpreter
Debian's python3-libtorrent is built for.
"""
import argparse
import sys
import time

import libtorrent as lt


def make_session(port, rc4=False, utp=False):
    """A libtorrent session listening on 127.0.0.1:PORT with loopback-friendly settings."""
    settings = {
            "listen_interfaces": f"127.0.0.1:{port}",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_ip_notifier": False,
            "dht_bootstrap_nodes": "",
            "allow_multiple_connections_per_ip": True,
            # TCP only, as bt and aria2 speak: libtorrent would otherwise try uTP first on
            # connect_peer, and uTP over loopback is several times slower than TCP.
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            # Plaintext handshakes unless told otherwise: encryption costs CPU on both sides.
            "out_enc_policy": int(lt.enc_policy.pe_disabled),
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.storage_notification,
        }
    if utp:
        settings.update(
            {
                "enable_outgoing_utp": True,
                "enable_incoming_utp": True,
                "enable_outgoing_tcp": False,
                "enable_incoming_tcp": False,
            }
        )
    if rc4:
        settings.update(
            {
                "in_enc_policy": int(lt.enc_policy.pe_forced),
                "out_enc_policy": int(lt.enc_policy.pe_forced),
                "allowed_enc_level": int(lt.enc_level.rc4),
                "prefer_rc4": True,
            }
        )
    return lt.session(settings)


def add(ses, torrent, save_path, paused=False):
    """Adds TORRENT to the session, saving under SAVE_PATH, not auto-managed."""
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    params.flags &= ~lt.torrent_flags.auto_managed
    if paused:
        params.flags |= lt.torrent_flags.paused
    else:
        params.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(params)


def say(line):
    """One status line on stdout, flushed at once (the parent polls for it)."""
    print(line, flush=True)


def seed(args):
    """Checks the data, reports the port and readiness, then serves until killed."""
    ses = make_session(args.port, args.rc4, args.utp)
    if args.upload_limit:
        ses.apply_settings({"upload_rate_limit": args.upload_limit})
    handle = add(ses, args.torrent, args.save_path)
    if args.upload_limit:
        # Peers on loopback are exempt from the session's limits: the torrent's own applies.
        handle.set_upload_limit(args.upload_limit)
    say(f"listening {ses.listen_port()}")
    checking = {lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data}
    while True:
        st = handle.status()
        if st.is_seeding:
            break
        if st.errc.value() != 0:
            sys.stderr.write(f"lt_peer seed: {st.errc.message()}\n")
            return 1
        if st.state not in checking and st.state != lt.torrent_status.allocating and st.has_metadata:
            sys.stderr.write(
                f"lt_peer seed: data incomplete ({st.num_pieces} pieces verified), state {st.state}\n"
            )
            return 1
        time.sleep(0.1)
    handle.force_reannounce()
    say("seeding")
    while True:
        time.sleep(1)
        ses.pop_alerts()


def leech(args):
    """Downloads from the one given peer and returns once every piece is verified and flushed."""
    host, _, port = args.peer.rpartition(":")
    peer = (host, int(port))
    ses = make_session(0, args.rc4, args.utp)
    handle = add(ses, args.torrent, args.save_path, paused=True)
    handle.replace_trackers([])
    handle.resume()
    handle.connect_peer(peer)
    last_dial = time.monotonic()
    while not handle.status().is_seeding:
        time.sleep(0.02)
        st = handle.status()
        if st.errc.value() != 0:
            sys.stderr.write(f"lt_peer leech: {st.errc.message()}\n")
            return 1
        if st.num_peers == 0 and time.monotonic() - last_dial > 2:
            handle.connect_peer(peer)
            last_dial = time.monotonic()
    # Pieces pass their hash check before every write may have reached the files: flush first.
    handle.flush_cache()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ses.wait_for_alert(1000) is None:
            continue
        if any(isinstance(a, lt.cache_flushed_alert) for a in ses.pop_alerts()):
            return 0
    sys.stderr.write("lt_peer leech: no cache_flushed_alert within 60 s\n")
    return 1


def main(argv):
    """Parses the command line and runs the chosen role."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    p_seed = sub.add_parser("seed", help="serve checked data until killed")
    p_seed.add_argument("torrent")
    p_seed.add_argument("save_path")
    p_seed.add_argument("--port", type=int, default=0, help="listen port (default: any free one)")
    p_seed.add_argument("--rc4", action="store_true", help="only encrypted connections, under RC4")
    p_seed.add_argument("--utp", action="store_true", help="uTP only: TCP off in both directions")
    p_seed.add_argument(
        "--upload-limit", type=int, default=0, help="upload rate limit in bytes per second (default: none)"
    )
    p_seed.set_defaults(func=seed)
    p_leech = sub.add_parser("leech", help="download from one peer and exit when complete")
    p_leech.add_argument("torrent")
    p_leech.add_argument("save_path")
    p_leech.add_argument("--peer", required=True, help="ADDR:PORT of the seeder")
    p_leech.add_argument("--rc4", action="store_true", help="only encrypted connections, under RC4")
    p_leech.add_argument("--utp", action="store_true", help="uTP only: TCP off in both directions")
    p_leech.set_defaults(func=leech)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
