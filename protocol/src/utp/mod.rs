//! uTP, the micro transport protocol (BEP 29): reliable byte streams over UDP with LEDBAT
//! congestion control, which yields to other traffic by keeping the queueing delay it causes
//! near a target (100 ms).
//!
//! - [`packet`]: the packet codec (header, extension chain, selective ACK) and
//!   [`packet::classify`], which tells uTP from DHT datagrams on a shared UDP socket;
//! - [`seq`]: 16-bit wrapping sequence numbers;
//! - [`congestion`]: RTT, retransmission timeout and the LEDBAT window;
//! - [`socket`]: one connection as a sans-IO machine ([`Socket`]);
//! - [`mux`]: many connections on one UDP socket ([`Mux`]), routed by address and connection id.

pub mod congestion;
pub mod mux;
pub mod packet;
mod recv;
pub mod seq;
pub mod socket;
#[cfg(test)]
mod tests;

pub use mux::Mux;
pub use socket::Socket;
