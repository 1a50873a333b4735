//! Fuzzes the MSE/PE handshake in both roles: never panics, never buffers past its bound, and a
//! finished handshake hands back no more bytes than it was given.
//!
//! The first byte picks the mode and the methods each side allows:
//! - mode 0: the bytes, in chunks, to a responder;
//! - mode 1: the bytes, in chunks, to an initiator;
//! - mode 2: an honest initiator and responder, with the bytes giving chunk sizes and
//!   `(offset, xor)` changes to what crosses between them, so the fuzzer reaches every step.
#![no_main]

use bt_protocol::metainfo::InfoHash;
use bt_protocol::mse::{MAX_BUFFERED, Methods, MseHandshake, Progress, req2_hash};
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use libfuzzer_sys::fuzz_target;

const HASH: InfoHash = InfoHash([3; 20]);

fn lookup(req2: &[u8; 20]) -> Option<InfoHash> {
    (req2_hash(&HASH) == *req2).then_some(HASH)
}

fn methods(bits: u8) -> Methods {
    match bits % 3 {
        0 => Methods::PLAINTEXT,
        1 => Methods::RC4,
        _ => Methods::BOTH,
    }
}

/// Feeds `bytes` to `hs` in chunks sized by `sizes`; checks what comes back.
fn feed(hs: &mut MseHandshake, rng: &mut Rng, bytes: &[u8], sizes: &[u8]) -> bool {
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = (usize::from(sizes.get(i).copied().unwrap_or(255)) + 1).min(bytes.len() - at);
        i += 1;
        match hs.handle_bytes(rng, &bytes[at..at + n], &lookup) {
            Progress::Pending => {}
            Progress::Failed(_) => return true,
            Progress::Done(done) => {
                assert!(done.rest.len() <= bytes.len(), "rest longer than the input");
                assert!(done.initial_payload.len() <= MAX_BUFFERED);
                return true;
            }
        }
        at += n;
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut rng = Rng::new(u64::from(first));
    let now = Instant::ZERO;
    let (offer, allow) = (methods(first >> 2), methods(first >> 4));
    match first % 3 {
        0 => {
            let mut b = MseHandshake::responder(now, &mut rng, allow);
            let _ = b.take_transmit();
            feed(&mut b, &mut rng, rest, &[]);
        }
        1 => {
            let mut a = MseHandshake::initiator(now, &mut rng, HASH, offer, vec![19; 68]);
            let _ = a.take_transmit();
            feed(&mut a, &mut rng, rest, &[]);
        }
        _ => {
            let mut a = MseHandshake::initiator(now, &mut rng, HASH, offer, vec![19; 68]);
            let mut b = MseHandshake::responder(now, &mut rng, allow);
            // Pairs of (offset, xor) bytes change the flight; the rest sizes chunks.
            let (edits, sizes) = rest.split_at(rest.len().min(8));
            let (mut a_over, mut b_over) = (false, false);
            for round in 0..4 {
                let mut to_b = a.take_transmit();
                let mut to_a = b.take_transmit();
                for e in edits.chunks_exact(2) {
                    let target = if e[0] & 1 == 0 { &mut to_b } else { &mut to_a };
                    if !target.is_empty() && (e[0] >> 1) % 4 == round {
                        let i = usize::from(e[1]) * 7 % target.len();
                        target[i] ^= e[1] | 1;
                    }
                }
                if !b_over {
                    b_over = feed(&mut b, &mut rng, &to_b, sizes);
                }
                if !a_over {
                    a_over = feed(&mut a, &mut rng, &to_a, sizes);
                }
            }
        }
    }
});
