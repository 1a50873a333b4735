#!/usr/bin/python3
"""Ask libtorrent to check data on disk against a .torrent, and print how many pieces it verified.

Usage: /usr/bin/python3 tests/scripts/lt_check.py FILE.torrent SAVE_PATH

The data for the torrent must be under SAVE_PATH (as a download into SAVE_PATH would lay it out).
libtorrent hashes every piece; the output is one JSON object:
  {"num_pieces": N, "pieces_verified": M, "state": "seeding" | "downloading" | ...}
Bounded: gives up after 60 s with exit 1. No network: listens on 127.0.0.1 only, DHT/LSD/UPnP/NAT-PMP off.
Must run under /usr/bin/python3 (python3-libtorrent exists only for the Debian interpreter).
"""
import json
import sys
import time

import libtorrent as lt


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: /usr/bin/python3 lt_check.py FILE.torrent SAVE_PATH\n")
        return 2
    ses = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_ip_notifier": False,
            "dht_bootstrap_nodes": "",
        }
    )
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(argv[1])
    params.save_path = argv[2]
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    handle = ses.add_torrent(params)
    checking = {
        lt.torrent_status.checking_files,
        lt.torrent_status.checking_resume_data,
    }
    deadline = time.monotonic() + 60
    while True:
        st = handle.status()
        if st.state not in checking and st.has_metadata and st.state != lt.torrent_status.allocating:
            # One more look after the state settles, so num_pieces is final.
            time.sleep(0.2)
            st = handle.status()
            break
        if time.monotonic() > deadline:
            sys.stderr.write("lt_check.py: libtorrent did not finish checking within 60 s\n")
            return 1
        time.sleep(0.05)
    print(
        json.dumps(
            {
                "num_pieces": params.ti.num_pieces(),
                "pieces_verified": st.num_pieces,
                "state": str(st.state),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
