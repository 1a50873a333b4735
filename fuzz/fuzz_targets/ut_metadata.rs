//! Fuzzes BEP 9 `ut_metadata`: the input split into payloads, each decoded as a
//! `MetadataMessage` (never panics; what decodes encodes back to bytes that decode to the same
//! message) and fed to a `MetadataFetch` as if from one of two peers, with sizes, rejects and
//! departures in between. The fetch must never panic, never return a dictionary that does not
//! hash to the info hash, and never hold more than its size cap.
#![no_main]

use bt_protocol::metainfo::InfoHash;
use bt_protocol::wire::{FetchProgress, MetadataFetch, MetadataMessage};
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

/// The size cap of the fetch: four pieces.
const MAX: u32 = 4 * 16 * 1024;

fuzz_target!(|data: &[u8]| {
    // The true dictionary: 20,000 bytes of one value, so a fuzzer can find it.
    let truth = vec![b'x'; 20_000];
    let hash = InfoHash(Sha1::digest(&truth).into());
    let mut fetch: MetadataFetch<u8> = MetadataFetch::new(hash, MAX);
    // Records: control byte (peer in bit 0, action in the rest), a two-byte big-endian length,
    // payload.
    let mut rest = data;
    while let [control, hi, lo, tail @ ..] = rest {
        let n = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (payload, after) = tail.split_at(n);
        rest = after;
        let peer = control & 1;
        match control >> 1 {
            0 => {
                let size = payload.iter().fold(0u64, |s, b| s << 8 | u64::from(*b));
                let _ = fetch.handle_size(size);
            }
            1 => {
                let _ = fetch.next_request(&peer);
            }
            2 => fetch.peer_gone(&peer),
            _ => {
                let Ok(m) = MetadataMessage::decode(payload) else {
                    continue;
                };
                let mut again = Vec::new();
                m.encode_into(&mut again);
                assert_eq!(MetadataMessage::decode(&again), Ok(m), "round trip");
                match m {
                    MetadataMessage::Data {
                        piece,
                        total_size,
                        data,
                    } => {
                        if let Ok(FetchProgress::Done(meta)) =
                            fetch.handle_data(&peer, piece, total_size, data)
                        {
                            assert!(meta.len() <= MAX as usize);
                            assert_eq!(<[u8; 20]>::from(Sha1::digest(&meta)), hash.0);
                        }
                    }
                    MetadataMessage::Reject { piece } => fetch.handle_reject(&peer, piece),
                    MetadataMessage::Request { .. } => {}
                }
            }
        }
        if let Some(size) = fetch.size() {
            assert!(size <= MAX);
        }
    }
});
