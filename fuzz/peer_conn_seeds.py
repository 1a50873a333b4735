#!/usr/bin/env python3
"""Writes the hand-made seeds of the peer_conn fuzz target into fuzz/seeds/peer_conn/.

The target reads `(Setup, Vec<Step>)` with the `arbitrary` crate (1.x), whose format is plain:
integers little-endian, a bool is one byte (bit 0), an enum variant is picked by a u32 `v` as
`(v * variants) >> 32`, an `Option` is a bool then the value, a `Vec` (and the step list) is each
element after a 1 byte, ended by a 0 byte or the end of the input (arbitrary_format.py writes
it). Keep the variant lists below in the order of the enums in fuzz_targets/peer_conn.rs; rerun
after changing them:

    python3 fuzz/peer_conn_seeds.py
"""
import os

from arbitrary_format import byte_vec, flag, u16, u32, u8, variant, vec

STEPS = ["Handshake", "Msg", "Split", "Batch", "Raw", "Wait", "Deadline", "Request", "Cancel",
         "Choke", "Unchoke", "Interested", "SendBlock", "RejectRequest", "SendHave", "SendPieces",
         "SendAllowedFast", "SendExtended", "RefuseRequest"]
MSGS = ["KeepAlive", "Choke", "Unchoke", "Interested", "NotInterested", "Have", "Bitfield",
        "RawBitfield", "HaveAll", "HaveNone", "Request", "Piece", "Cancel", "Port", "Suggest",
        "Reject", "AllowedFast", "Extended", "Unknown"]
BLOCKS = ["Valid", "Ours", "Theirs", "Any"]
PIECES = ["Valid", "Any"]


def setup(inbound=False, fast=True, ext=True, piece_len=32767, pieces=3, last_len=9999,
          max_pipeline=4, min_pipeline=1, max_peer_requests=3, timeouts=(29, 59, 89, 179, 19),
          pipeline_time_ms=3000, frame_timeout=59, choke_window=59, max_chokes=5,
          max_unrequested_blocks=5, max_extended_len=1000):
    """`piece_len` and `last_len` are lengths - 1, `pieces` the count - 1, `frame_timeout` and
    `choke_window` seconds - 1 (see `Setup`)."""
    return (flag(inbound) + flag(fast) + flag(ext) + u16(piece_len) + u8(pieces) + u16(last_len)
            + u8(max_pipeline) + u8(min_pipeline) + u8(max_peer_requests) + bytes(timeouts)
            + u16(pipeline_time_ms) + u8(frame_timeout) + u8(choke_window) + u8(max_chokes)
            + u8(max_unrequested_blocks) + u16(max_extended_len))


def block(kind="Valid", *args):
    if kind == "Valid":
        return variant(BLOCKS, kind) + u8(args[0]) + u8(args[1])
    if kind in ("Ours", "Theirs"):
        return variant(BLOCKS, kind) + u8(args[0])
    return variant(BLOCKS, kind) + u32(args[0]) + u32(args[1]) + u32(args[2])


def piece(p, valid=True):
    return variant(PIECES, "Valid") + u8(p) if valid else variant(PIECES, "Any") + u32(p)


def msg(name, *args):
    out = variant(MSGS, name)
    if name in ("Have", "Suggest", "AllowedFast"):
        out += args[0]
    elif name == "Bitfield":
        out += byte_vec(args[0]) + flag(args[1])
    elif name == "RawBitfield":
        out += byte_vec(args[0])
    elif name in ("Request", "Cancel", "Reject"):
        out += args[0]
    elif name == "Piece":
        out += args[0] + u8(args[1])
    elif name == "Port":
        out += u16(args[0])
    elif name in ("Extended", "Unknown"):
        out += u8(args[0]) + byte_vec(args[1])
    return out


def step(name, *args):
    out = variant(STEPS, name)
    if name == "Handshake":
        fast, ext, wrong_hash, our_id, ident = args
        out += flag(fast) + flag(ext) + flag(wrong_hash) + flag(our_id) + u8(ident)
    elif name == "Msg":
        out += args[0]
    elif name == "Split":
        out += args[0] + u16(args[1])
    elif name == "Batch":
        out += vec(args[0])
    elif name == "Raw":
        out += byte_vec(args[0])
    elif name == "Wait":
        out += u16(args[0]) + u8(args[1])
    elif name in ("Request", "Cancel", "RejectRequest", "RefuseRequest"):
        out += args[0]
    elif name == "Interested":
        out += flag(args[0])
    elif name == "SendBlock":
        out += args[0] + flag(args[1])
    elif name == "SendHave":
        out += u8(args[0])
    elif name in ("SendPieces", "SendAllowedFast"):
        out += byte_vec(args[0])
    elif name == "SendExtended":
        out += u8(args[0]) + byte_vec(args[1])
    return out


def steps(*items):
    return b"".join(b"\x01" + i for i in items)


HS = step("Handshake", True, True, False, False, 9)
SEEDS = {
    # Outbound, Fast and extensions: the peer has everything, unchokes us, we fill the pipeline,
    # blocks arrive (one split across reads), one is rejected, one cancelled, one times out.
    "download": setup() + steps(
        HS,
        step("Msg", msg("Extended", 0, b"d1:md11:ut_metadatai3eee")),
        step("Msg", msg("HaveAll")),
        step("Interested", True),
        step("Msg", msg("Unchoke")),
        step("Request", block("Valid", 0, 0)),
        step("Request", block("Valid", 0, 1)),
        step("Request", block("Valid", 1, 0)),
        step("Request", block("Valid", 2, 0)),
        step("Request", block("Valid", 2, 1)),
        step("Msg", msg("Piece", block("Ours", 0), 0)),
        step("Split", msg("Piece", block("Ours", 0), 0), 700),
        step("Msg", msg("Reject", block("Ours", 0))),
        step("Cancel", block("Ours", 0)),
        step("Msg", msg("Reject", block("Valid", 2, 0))),
        step("Wait", 40000, 0),
        step("Deadline"),
        step("Msg", msg("Choke")),
        step("Interested", False),
    ),
    # Inbound without extensions: the peer asks while choked, we unchoke and serve, it asks for
    # more than we queue (closed: without Fast we cannot reject).
    "upload-no-fast": setup(inbound=True, fast=False, ext=False) + steps(
        step("Handshake", False, False, False, False, 3),
        step("SendPieces", [1, 1, 1, 1]),
        step("Msg", msg("Interested")),
        step("Msg", msg("Request", block("Valid", 0, 0))),
        step("Unchoke"),
        step("Batch", [msg("Request", block("Valid", 0, 0)), msg("Request", block("Valid", 0, 1)),
                       msg("Request", block("Valid", 1, 0))]),
        step("SendBlock", block("Theirs", 0), False),
        step("SendBlock", block("Theirs", 0), True),
        step("Msg", msg("Cancel", block("Theirs", 0))),
        step("Choke"),
        step("Unchoke"),
        step("Batch", [msg("Request", block("Valid", i // 2, i % 2)) for i in range(5)]),
    ),
    # Outbound with Fast: allowed-fast both ways, requests while choked rejected, a choke that
    # keeps allowed-fast requests, a late bitfield taken as haves, a late have-none (closed).
    "fast-allowed": setup(max_peer_requests=2) + steps(
        HS,
        step("Msg", msg("Bitfield", [0xa0], False)),
        step("Msg", msg("AllowedFast", piece(0))),
        step("Msg", msg("Suggest", piece(2))),
        step("Request", block("Valid", 0, 1)),
        step("SendAllowedFast", [1, 1, 2]),
        step("Msg", msg("Request", block("Valid", 1, 0))),
        step("Msg", msg("Request", block("Valid", 0, 0))),
        step("Unchoke"),
        step("Batch", [msg("Request", block("Valid", 2, 0)), msg("Request", block("Valid", 0, 1)),
                       msg("Request", block("Valid", 0, 0))]),
        step("Choke"),
        step("RejectRequest", block("Theirs", 0)),
        step("Msg", msg("Bitfield", [0xe0], False)),
        step("Msg", msg("Have", piece(1))),
        step("Msg", msg("Port", 6881)),
        step("SendHave", 1),
        step("SendExtended", 3, b"d8:msg_typei0e5:piecei0ee"),
        step("Msg", msg("HaveNone")),
    ),
    # The connection's own bounds and timers: handshake timeout before the peer says anything.
    "handshake-timeout": setup(inbound=True) + steps(
        step("Raw", b"\x13BitTorrent proto"),
        step("Wait", 10000, 0),
        step("Deadline"),
    ),
    # Rule breaches that close: a block that is no block, a Fast message without Fast, an
    # extended message without extensions, a wrong info hash.
    "bad-block": setup(fast=False, ext=False) + steps(
        step("Handshake", True, True, False, False, 4),
        step("Msg", msg("Unknown", 42, b"hash")),
        step("Msg", msg("Piece", block("Any", 0, 5, 16384), 0)),
    ),
    "fast-without-fast": setup(fast=False) + steps(
        step("Handshake", True, True, False, False, 4),
        step("Msg", msg("AllowedFast", piece(1))),
    ),
    "extended-without-extensions": setup(ext=False) + steps(
        step("Handshake", True, True, False, False, 4),
        step("Msg", msg("Extended", 1, b"")),
    ),
    "wrong-hash": setup(inbound=True) + steps(step("Handshake", True, True, True, False, 5)),
    # Idle connection: keep-alives, then the idle timeout; a raw keep-alive and garbage first.
    "idle": setup(timeouts=(29, 59, 9, 30, 19)) + steps(
        HS,
        step("Raw", b"\x00\x00\x00\x00"),
        step("Wait", 10000, 0),
        step("Deadline"),
        step("Deadline"),
        step("Deadline"),
        step("Raw", b"\x00\x00\x00\x05\x04\x00\x00\x00"),
        step("Raw", b"\x09"),
    ),
    # Once crashed the target's own event model (which took the pieces from after the have): a
    # have-none and a have in one read.
    "regress-have-none-then-have": setup(timeouts=(29, 59, 9, 30, 19)) + steps(
        HS,
        step("Raw", b"\x00\x00\x00\x00"),
        step("Wait", 10000, 0),
        step("Deadline"),
        step("Deadline"),
        step("Batch", [msg("HaveNone"), msg("Have", piece(75))]),
    ),
    # The hostile-peer rules, each up to its bound and then past it.
    # Slowloris: a frame's first bytes, a wait under the frame timeout, a frame completing and
    # another started (its own timer), then the timeout (FrameTimeout).
    "frame-timeout": setup(frame_timeout=9) + steps(
        HS,
        step("Raw", b"\x00\x00"),
        step("Wait", 6000, 0),
        step("Raw", b"\x00\x01\x01\x00\x00"),
        step("Wait", 6000, 0),
        step("Raw", b"\x00\x01"),
        step("Wait", 9000, 0),
    ),
    # A choke storm while we are interested: chokes answering our not-interested are free, then
    # max_chokes (2) counted ones, the third closes (ChokeStorm).
    "choke-storm": setup(fast=False, max_chokes=2, choke_window=59) + steps(
        HS,
        step("Msg", msg("Bitfield", [0xf0], False)),
        step("Interested", True),
        step("Msg", msg("Unchoke")),
        step("Interested", False),
        step("Msg", msg("Choke")),
        step("Msg", msg("Unchoke")),
        step("Interested", True),
        step("Msg", msg("Choke")),
        step("Wait", 11000, 0),
        step("Batch", [msg("Unchoke"), msg("Choke"), msg("Unchoke"), msg("Choke"),
                       msg("Unchoke"), msg("Choke")]),
    ),
    # Blocks never asked for (dropped) up to the bound, a late block of a choke-dropped request
    # and of a cancelled one (tolerated), then one more never asked for (UnrequestedBlocks).
    "unrequested-blocks": setup(fast=False, max_unrequested_blocks=2) + steps(
        HS,
        step("Msg", msg("Bitfield", [0xf0], False)),
        step("Interested", True),
        step("Msg", msg("Unchoke")),
        step("Request", block("Valid", 0, 0)),
        step("Request", block("Valid", 1, 0)),
        step("Msg", msg("Choke")),
        step("Msg", msg("Piece", block("Valid", 0, 0), 0)),
        step("Msg", msg("Unchoke")),
        step("Request", block("Valid", 2, 0)),
        step("Cancel", block("Ours", 0)),
        step("Msg", msg("Piece", block("Valid", 2, 0), 0)),
        step("Msg", msg("Piece", block("Valid", 3, 0), 0)),
        step("Msg", msg("Piece", block("Valid", 3, 1), 0)),
        step("Msg", msg("Piece", block("Valid", 0, 1), 0)),
    ),
    # With Fast, refused requests are rejected up to max_peer_requests (2) past the full queue:
    # over the bound, a repeat (dropped), a block served resets the count, then too many
    # (TooManyRequests).
    "fast-refused": setup(inbound=True, max_peer_requests=2) + steps(
        step("Handshake", True, True, False, False, 6),
        step("SendPieces", [3]),
        step("Unchoke"),
        step("Batch", [msg("Request", block("Valid", 0, 0)), msg("Request", block("Valid", 0, 1)),
                       msg("Request", block("Valid", 1, 0)),
                       msg("Request", block("Valid", 0, 0))]),
        step("SendBlock", block("Theirs", 0), False),
        step("Batch", [msg("Request", block("Valid", 2, 0)), msg("Request", block("Valid", 2, 1)),
                       msg("Request", block("Valid", 3, 0)), msg("Request", block("Valid", 3, 1))]),
    ),
    # With Fast, requests while choked are rejected up to the bound, then RequestWhileChoked.
    "fast-while-choked": setup(inbound=True, max_peer_requests=2) + steps(
        step("Handshake", True, True, False, False, 6),
        step("SendPieces", [3]),
        step("Msg", msg("Request", block("Valid", 0, 0))),
        step("Msg", msg("Request", block("Valid", 0, 1))),
        step("Msg", msg("Request", block("Valid", 1, 0))),
    ),
    # refuse_request (pieces we lack) counts too: past the bound the next input closes.
    "refuse-request": setup(inbound=True, max_peer_requests=1) + steps(
        step("Handshake", True, True, False, False, 6),
        step("SendPieces", [3]),
        step("Unchoke"),
        step("Msg", msg("Request", block("Valid", 0, 0))),
        step("RefuseRequest", block("Theirs", 0)),
        step("Msg", msg("Request", block("Valid", 1, 0))),
        step("RefuseRequest", block("Theirs", 0)),
        step("Msg", msg("KeepAlive")),
    ),
    # An extended message at the bound, then one past it (a wire error).
    "extended-bound": setup(max_extended_len=24) + steps(
        HS,
        step("Msg", msg("Extended", 0, b"d1:md11:ut_metadatai3eee")),
        step("Msg", msg("Extended", 0, b"d1:md11:ut_metadatai33eee")),
    ),
}

out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "peer_conn")
os.makedirs(out_dir, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")
