#!/usr/bin/python3
"""Run libtorrent as a seeder or a leecher on loopback, for bt's interop tests.

Usage:
  /usr/bin/python3 tests/scripts/lt_client.py seed TORRENT DIR PORT [--timeout S]
  /usr/bin/python3 tests/scripts/lt_client.py get TORRENT|MAGNET DIR PORT [--peer ADDR:PORT]... [--timeout S]

  /usr/bin/python3 tests/scripts/lt_client.py node - - PORT [--dht-bootstrap ADDR:PORT]... [--timeout S]
    a DHT node and nothing else (a bootstrap node for tests); prints {"event": "dht_node", "port": N}

Either mode also takes --dht (run libtorrent's DHT node on the listen port, loopback nodes allowed)
and --dht-bootstrap ADDR:PORT (repeatable; the nodes it starts from, with --dht), and
--encryption rc4|plaintext|off (MSE forced both ways, the stream under RC4 or only the handshake
obscured; or refused both ways; without it libtorrent accepts encrypted handshakes but never
offers one), and --transport tcp|utp|both (default tcp: TCP only; utp: uTP only, TCP off both
ways; both: libtorrent's default, dialling uTP first).

DIR is the save path: a multi-file torrent named NAME lives in DIR/NAME. PORT 0 lets libtorrent
pick a free port; the port it listens on is in the events.

stdout is newline-delimited JSON, one event per line:
  {"event": "seeding", "port": N}              seed: data checked, a seeder, listening on N
  {"event": "listening", "port": N}            get: listening on N
  {"event": "progress", "progress": F, "peers": N, "total_done": B, "state": "..."}   get, twice a second
  {"event": "finished", "port": N}             get: every piece downloaded and checked
  {"event": "tracker_reply", "url": U, "peers": N}  / {"event": "tracker_error", "url": U, "error": E}
  {"event": "peer_connected", "addr": "IP:PORT"}
  {"event": "peer", "addr": "IP:PORT", "utp": B}  each connected peer once (seen twice a second at
                                                  most), and whether it is uTP
  {"event": "incoming_connection", "addr": "IP:PORT", "utp": B}  a peer dialled us, over uTP or not
  {"event": "metadata_received", "after_s": F}  get of a magnet: the metadata arrived and checked out
  {"event": "dht_nodes", "nodes": N}            with --dht, once a second while it changes

seed keeps seeding (and announcing to the torrent's trackers) until it is killed or --timeout
(default 600 s) runs out; get exits 0 when the download is complete, 1 when --timeout (default 60 s)
runs out first. Loopback only: listens on 127.0.0.1, DHT/LSD/UPnP/NAT-PMP off, several connections
per IP allowed (every peer in a test is 127.0.0.1), TCP only unless --transport says otherwise (the
tests of TCP stay about TCP; libtorrent would try uTP first when told to connect to a peer),
plaintext outgoing connections (libtorrent's first try would be encrypted, and a plaintext
handshake is what the tests without --encryption are about). Must run under /usr/bin/python3
(python3-libtorrent exists only for the Debian interpreter).
"""
import json
import warnings
import sys
import time

import libtorrent as lt

STARTED = time.monotonic()
# peer_info::utp_socket (libtorrent's peer_info.hpp), which the Python binding does not name.
UTP_SOCKET = getattr(lt.peer_info, "utp_socket", 1 << 17)
warnings.filterwarnings("ignore", category=DeprecationWarning)


def emit(**event):
    print(json.dumps(event), flush=True)


def parse(argv):
    if len(argv) < 5 or argv[1] not in ("seed", "get", "node"):
        return None
    opts = {"mode": argv[1], "torrent": argv[2], "dir": argv[3], "port": int(argv[4]), "peers": []}
    opts["timeout"] = 60.0 if opts["mode"] == "get" else 600.0
    opts["dht"] = opts["mode"] == "node"
    opts["bootstrap"] = []
    opts["encryption"] = None
    opts["transport"] = "tcp"
    rest = argv[5:]
    while rest:
        flag = rest.pop(0)
        if flag == "--dht":
            opts["dht"] = True
            continue
        if not rest:
            return None
        value = rest.pop(0)
        if flag == "--peer" and opts["mode"] == "get":
            host, _, port = value.rpartition(":")
            opts["peers"].append((host.strip("[]"), int(port)))
        elif flag == "--dht-bootstrap":
            opts["bootstrap"].append(value)
        elif flag == "--timeout":
            opts["timeout"] = float(value)
        elif flag == "--encryption" and value in ("rc4", "plaintext", "off"):
            opts["encryption"] = value
        elif flag == "--transport" and value in ("tcp", "utp", "both"):
            opts["transport"] = value
        else:
            return None
    return opts


def make_session(opts):
    settings = {
            "listen_interfaces": "127.0.0.1:%d" % opts["port"],
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_ip_notifier": False,
            "dht_bootstrap_nodes": "",
            "allow_multiple_connections_per_ip": True,
            # TCP only unless --transport: libtorrent would try uTP first on every connect_peer.
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            # bt has no Message Stream Encryption: libtorrent's first outgoing try is an encrypted
            # handshake that bt drops, and it falls back to plaintext only when it reconnects
            # (min_reconnect_time, 60 s, for a peer from a tracker). Plaintext from the start.
            "out_enc_policy": int(lt.enc_policy.pe_disabled),
            # At exit the session waits for its "stopped" announces; opentracker over UDP does not
            # always answer one, and the default wait is 5 s.
            "stop_tracker_timeout": 1,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.tracker_notification
            | lt.alert.category_t.connect_notification
            | lt.alert.category_t.peer_notification,
        }
    if opts["transport"] == "utp":
        settings.update(
            {
                "enable_outgoing_utp": True,
                "enable_incoming_utp": True,
                "enable_outgoing_tcp": False,
                "enable_incoming_tcp": False,
            }
        )
    elif opts["transport"] == "both":
        settings.update({"enable_outgoing_utp": True, "enable_incoming_utp": True})
    if opts["encryption"] == "off":
        # No encryption at all, as a peer that never learned MSE: an encrypted handshake is
        # dropped.
        settings.update(
            {
                "in_enc_policy": int(lt.enc_policy.pe_disabled),
                "out_enc_policy": int(lt.enc_policy.pe_disabled),
            }
        )
    elif opts["encryption"]:
        # Encrypted handshakes only (MSE), both ways: "rc4" encrypts the whole stream,
        # "plaintext" only the handshake.
        level = lt.enc_level.rc4 if opts["encryption"] == "rc4" else lt.enc_level.plaintext
        settings.update(
            {
                "in_enc_policy": int(lt.enc_policy.pe_forced),
                "out_enc_policy": int(lt.enc_policy.pe_forced),
                "allowed_enc_level": int(level),
                "prefer_rc4": opts["encryption"] == "rc4",
            }
        )
    if opts["dht"]:
        # Every node of a test is 127.0.0.1: allow many per IP and private addresses.
        settings.update(
            {
                "enable_dht": True,
                "dht_bootstrap_nodes": ",".join(opts["bootstrap"]),
                "dht_restrict_routing_ips": False,
                "dht_restrict_search_ips": False,
                "dht_ignore_dark_internet": False,
                "dht_enforce_node_id": False,
                "dht_prefer_verified_node_ids": False,
            }
        )
    return lt.session(settings)


def drain_alerts(ses):
    """Print the alerts a test log wants (tracker replies and errors, connections, errors) and
    return all of them."""
    alerts = ses.pop_alerts()
    for a in alerts:
        if isinstance(a, lt.tracker_reply_alert):
            emit(event="tracker_reply", url=a.tracker_url(), peers=a.num_peers)
        elif isinstance(a, lt.tracker_error_alert):
            emit(event="tracker_error", url=a.tracker_url(), error=a.message())
        elif isinstance(a, lt.peer_connect_alert):
            emit(event="peer_connected", addr="%s:%d" % tuple(a.endpoint))
        elif isinstance(a, lt.peer_disconnected_alert):
            emit(event="peer_disconnected", addr="%s:%d" % tuple(a.endpoint), reason=a.message())
        elif isinstance(a, lt.incoming_connection_alert):
            utp = a.socket_type in (lt.socket_type_t.utp, lt.socket_type_t.utp_ssl)
            emit(event="incoming_connection", addr="%s:%d" % tuple(a.endpoint), utp=utp)
        elif isinstance(a, lt.metadata_received_alert):
            emit(event="metadata_received", after_s=time.monotonic() - STARTED)
        elif isinstance(a, (lt.listen_failed_alert, lt.torrent_error_alert, lt.file_error_alert)):
            emit(event="error", message=a.message())
    return alerts


def add(ses, opts):
    if opts["torrent"].startswith("magnet:"):
        params = lt.parse_magnet_uri(opts["torrent"])
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(opts["torrent"])
    params.save_path = opts["dir"]
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(params)


def dht_nodes(ses):
    return ses.status().dht_nodes


def node(ses, opts):
    """A DHT node only: reports its port, then the size of its routing table as it changes."""
    deadline = time.monotonic() + opts["timeout"]
    emit(event="dht_node", port=ses.listen_port())
    last = -1
    while time.monotonic() < deadline:
        drain_alerts(ses)
        n = dht_nodes(ses)
        if n != last:
            emit(event="dht_nodes", nodes=n)
            last = n
        time.sleep(0.2)
    return 0


def report_peers(handle, seen):
    """Emits each connected peer once, with whether its connection is uTP."""
    for p in handle.get_peer_info():
        addr = "%s:%d" % tuple(p.ip)
        if addr not in seen:
            seen.add(addr)
            emit(event="peer", addr=addr, utp=bool(p.flags & UTP_SOCKET), flags=p.flags)


def seed(ses, handle, opts):
    deadline = time.monotonic() + opts["timeout"]
    announced = False
    checked = False
    last_dht = 0.0
    last_nodes = -1
    seen = set()
    while time.monotonic() < deadline:
        checked |= any(isinstance(a, lt.torrent_checked_alert) for a in drain_alerts(ses))
        report_peers(handle, seen)
        now = time.monotonic()
        if opts["dht"] and now - last_dht >= 2:
            # Announce again and again: the first announces go out before the routing table has
            # its bootstrap node, and the default interval is 15 minutes.
            handle.force_dht_announce()
            last_dht = now
            n = dht_nodes(ses)
            if n != last_nodes:
                emit(event="dht_nodes", nodes=n)
                last_nodes = n
        st = handle.status()
        if not announced and st.is_seeding and ses.is_listening():
            emit(event="seeding", port=ses.listen_port())
            announced = True
        if not announced and checked and not st.is_seeding:
            # Checked and not complete: the data is wrong or missing, so this is no seeder.
            sys.stderr.write(
                "lt_client.py: seed: the data in %s holds %d of %d pieces\n"
                % (opts["dir"], st.num_pieces, handle.torrent_file().num_pieces())
            )
            return 1
        time.sleep(0.1)
    return 0


def get(ses, handle, opts):
    deadline = time.monotonic() + opts["timeout"]
    emit(event="listening", port=ses.listen_port())
    for host, port in opts["peers"]:
        handle.connect_peer((host, port))
    last_connect = time.monotonic()
    last_progress = 0.0
    last_dht = 0.0
    seen = set()
    while True:
        drain_alerts(ses)
        report_peers(handle, seen)
        st = handle.status()
        now = time.monotonic()
        if now - last_progress >= 0.5:
            emit(
                event="progress",
                progress=st.progress,
                peers=st.num_peers,
                total_done=st.total_done,
                state=str(st.state),
            )
            last_progress = now
        if st.is_seeding:
            break
        # With the DHT, look the torrent up again every 2 s while no peer is connected (the default
        # interval is 15 minutes, and the first lookup may run before the seeder announced).
        if opts["dht"] and st.num_peers == 0 and now - last_dht >= 2:
            handle.force_dht_announce()
            last_dht = now
        # A given peer libtorrent failed to reach is forgotten: ask again while none is connected.
        if opts["peers"] and st.num_peers == 0 and now - last_connect >= 2:
            for host, port in opts["peers"]:
                handle.connect_peer((host, port))
            last_connect = now
        if now > deadline:
            sys.stderr.write(
                "lt_client.py: get: not complete within %.0f s (%.1f%%, %d peers)\n"
                % (opts["timeout"], st.progress * 100, st.num_peers)
            )
            return 1
        time.sleep(0.1)
    # Remove the torrent so every write is on disk before the caller compares files.
    ses.remove_torrent(handle)
    stop = time.monotonic() + 10
    removed = False
    while not removed and time.monotonic() < stop:
        ses.wait_for_alert(500)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_removed_alert):
                removed = True
    emit(event="finished", port=ses.listen_port())
    return 0


def main(argv):
    opts = parse(argv)
    if opts is None:
        sys.stderr.write(__doc__)
        return 2
    ses = make_session(opts)
    if opts["mode"] == "node":
        return node(ses, opts)
    handle = add(ses, opts)
    if opts["mode"] == "seed":
        return seed(ses, handle, opts)
    return get(ses, handle, opts)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
