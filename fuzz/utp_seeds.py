#!/usr/bin/env python3
"""Writes the hand-made seeds of the utp fuzz target into fuzz/seeds/utp/.

The target (fuzz_targets/utp.rs, whose header documents the steps) reads records of a control
byte, a length byte and that many bytes. The control byte's low 3 bits pick the step, bits 3-4
(`control >> 3`, modulo 3) pick the source address of a raw datagram, bit 5 loses the honest
peer's datagram (step 1) and bit 3 loses ours (step 5). Rerun after changing the step format:

    python3 fuzz/utp_seeds.py
"""
import os
import struct

RAW, THEIRS, REPLAY, TIME, COMMAND, OURS, FORGE, DRAIN = range(8)
# Commands (step 4): the first byte picks one, the second picks our socket, the rest is payload.
CONNECT_US, CONNECT_THEM, WRITE, READ, CLOSE, LONE = range(6)


def rec(control, data=b""):
    """One record."""
    assert len(data) < 256
    return bytes([control, len(data)]) + data


def cmd(op, pick=0, payload=b""):
    """A command record."""
    return rec(COMMAND, bytes([op, pick]) + payload)


def exchange(rounds, lose_ours=False, lose_theirs=False):
    """ROUNDS of: our next datagram, the peer's next datagram, our events drained."""
    out = b""
    for _ in range(rounds):
        out += rec(OURS | (0x08 if lose_ours else 0))
        out += rec(THEIRS | (0x20 if lose_theirs else 0))
        out += rec(DRAIN)
    return out


def handshake():
    """We dial the honest peer, it accepts, and the connection opens."""
    return cmd(CONNECT_US) + rec(OURS) + cmd(LONE) + rec(THEIRS) + rec(DRAIN)


def echo(payload):
    """We write PAYLOAD, the peer echoes it, we read it back."""
    return cmd(WRITE, 0, payload) + exchange(2) + cmd(LONE) + exchange(2) + cmd(READ | 0x40, 0)


def header(ty, conn_id, seq, ack, wnd=1 << 16, ts=1000, tsd=0, ext=0):
    """A 20-byte uTP header (version 1)."""
    return struct.pack(">BBHIIIHH", (ty << 4) | 1, ext, conn_id, ts, tsd, wnd, seq, ack)


def forged(ty, seq, ack, payload=b"", sack=False):
    """The bytes of a forge step (step 6): socket pick, then header fields and payload."""
    fields = bytes([ty]) + struct.pack(">I", 7777) + struct.pack(">H", 50)
    fields += bytes([0x01, 0x00]) + struct.pack(">HH", seq, ack)
    fields += bytes([1 if sack else 0]) + (b"\xaa\x55\x00\xff" if sack else b"\0\0\0\0")
    return rec(FORGE, bytes([0]) + fields + payload)


SEEDS = {
    # An open connection carrying data both ways, then a close and the timers running out.
    "echo": handshake() + echo(b"hello, uTP") + echo(bytes(range(200)))
    + cmd(CLOSE) + exchange(3) + rec(TIME, b"\x10") + rec(TIME, b"\x40") + exchange(2),
    # The same with datagrams lost both ways, so timeouts and retransmissions do the work.
    "lossy": handshake() + cmd(WRITE, 0, b"x" * 200) + cmd(WRITE, 0, b"y" * 200)
    + exchange(2, lose_ours=True) + rec(TIME, b"\x08") + exchange(2) + cmd(LONE)
    + exchange(2, lose_theirs=True) + rec(TIME, b"\x0c") + exchange(3) + cmd(READ | 0x40),
    # The peer's datagrams mutated, then replayed to us and to the stand-alone socket.
    "mutated-replayed": handshake() + cmd(WRITE, 0, b"abc" * 50) + rec(OURS) + cmd(LONE)
    + rec(THEIRS, b"\x00\x20\x04\x01\x10\xff") + rec(THEIRS, b"\x01\x80")
    + rec(REPLAY, b"\x00") + rec(REPLAY, b"\x01") + rec(REPLAY | 0x08, b"\x02") + rec(DRAIN)
    + exchange(2),
    # The honest peer dials us: its SYN arrives, we accept, data flows.
    "them-connects": cmd(CONNECT_THEM) + rec(THEIRS) + rec(DRAIN) + rec(OURS) + cmd(LONE)
    + exchange(2) + cmd(WRITE, 0, b"z" * 100) + exchange(2),
    # Forged packets of every type at our live connection: data ahead and behind, a selective
    # ACK, a FIN, a RESET, and a SYN on a live id.
    "forged": handshake() + forged(0, 3, 1, b"ahead") + forged(0, 0xfffe, 1, b"behind")
    + forged(2, 2, 5, sack=True) + forged(1, 4, 1) + forged(4, 1, 1) + forged(3, 1, 1)
    + rec(DRAIN) + exchange(2),
    # Stray datagrams from three sources: a RESET and a DATA for ids nobody holds, a SYN,
    # a truncated header, a wrong version, an extension chain that runs off the end.
    "stray": rec(RAW, header(3, 999, 1, 0)) + rec(RAW | 0x08, header(0, 4242, 7, 3) + b"data")
    + rec(RAW | 0x10, header(4, 100, 1, 0)) + rec(RAW, header(2, 5, 1, 1)[:12])
    + rec(RAW, b"\x02" + header(2, 5, 1, 1)[1:]) + rec(RAW, header(2, 5, 1, 1, ext=1) + b"\x00\x08\x01")
    + rec(OURS) + rec(OURS) + rec(DRAIN) + rec(TIME, b"\x20") + rec(OURS),
}


def main():
    """Writes every seed."""
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "utp")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
