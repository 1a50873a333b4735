"""The byte format of the `arbitrary` crate (1.x), for the seed writers of the fuzz targets that
read `Arbitrary` inputs (peer_conn_seeds.py, runtime_seeds.py): integers little-endian, a bool one
byte (bit 0), an enum variant picked by a u32 `v` as `(v * variants) >> 32`, an `Option` a bool
then the value, a `Vec` (and a target's top-level list) each element after a 1 byte, ended by a 0
byte or the end of the input."""
import struct


def variant(names, name):
    n, i = len(names), names.index(name)
    v = (i * 2**32 + n - 1) // n
    assert (v * n) >> 32 == i
    return struct.pack("<I", v)


def u8(x): return struct.pack("<B", x)
def u16(x): return struct.pack("<H", x)
def u32(x): return struct.pack("<I", x)
def u64(x): return struct.pack("<Q", x)
def flag(b): return u8(1 if b else 0)
def vec(items): return b"".join(b"\x01" + i for i in items) + b"\x00"
def byte_vec(bs): return vec([u8(b) for b in bs])
