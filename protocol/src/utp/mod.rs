//! uTP, the micro transport protocol (BEP 29): reliable byte streams over UDP with LEDBAT
//! congestion control, which yields to other traffic by keeping the queueing delay it causes
//! near a target (100 ms).
//!
//! - [`packet`]: the packet codec (header, extension chain, selective ACK) and
//!   [`packet::classify`], which tells uTP from DHT datagrams on a shared UDP socket;
//! - [`seq`]: 16-bit wrapping sequence numbers.

pub mod packet;
pub mod seq;
