//! Bencode (BEP 3): being written.
