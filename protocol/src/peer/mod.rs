//! One connection to one peer: the [`PeerConn`] state machine, rate meters, and the BEP 6
//! allowed-fast set.

mod allowed_fast;
mod conn;
mod rate;
mod requests;

pub use allowed_fast::allowed_fast_set;
pub use conn::{
    Direction, INVITED_CHOKE_GRACE, MAX_ALLOWED_FAST, PeerConfig, PeerConn, PeerError, PeerEvent,
};
pub use rate::RateMeter;

#[cfg(test)]
mod conn_tests;
