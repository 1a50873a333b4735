//! Feeds arbitrary bytes, split into arbitrary chunks, to the peer-wire `FrameDecoder` (optionally
//! after a handshake): it must never panic, never buffer past its bound, and every frame it yields
//! must encode to exactly `encoded_len()` bytes.
#![no_main]

use bt_protocol::wire::{FrameDecoder, WireLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x3f) + 1;
    let with_handshake = control & 0x40 != 0;
    let limits = if control & 0x80 != 0 {
        WireLimits::for_pieces(u32::from(control) * 37)
    } else {
        WireLimits::default()
    };
    let mut decoder = FrameDecoder::new(limits);
    let mut handshake_done = !with_handshake;
    let mut input = rest;
    // Bounded: every round either consumes input or ends.
    for _ in 0..=rest.len() + 1 {
        let offer = &input[..input.len().min(chunk)];
        let taken = decoder.extend(offer);
        input = &input[taken..];
        assert!(decoder.buffered_len() <= decoder.max_buffered_len());
        if !handshake_done {
            match decoder.take_handshake() {
                Ok(Some(_)) => handshake_done = true,
                Ok(None) => {}
                Err(_) => return,
            }
        }
        if handshake_done {
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        let message = frame.message();
                        let mut encoded = Vec::new();
                        message.encode_into(&mut encoded);
                        assert_eq!(encoded.len(), message.encoded_len());
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
        if taken == 0 && (input.is_empty() || decoder.buffered_len() == decoder.max_buffered_len())
        {
            // Nothing more can be offered (input done) or the decoder is stuck full, which its
            // contract says cannot happen without a frame or an error above.
            assert!(
                input.is_empty(),
                "decoder full yet yields no frame and no error"
            );
            return;
        }
    }
});
