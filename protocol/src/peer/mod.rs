//! One connection to one peer: rate measurement, the BEP 6 allowed-fast set, and (to come with
//! issue 3) the `PeerConn` state machine.

mod allowed_fast;
mod rate;

pub use allowed_fast::allowed_fast_set;
pub use rate::RateMeter;
