//! The turmoil engine: every simulated peer is a turmoil host running the runtime's real driver
//! over [`net::TurmoilNet`] and an in-memory [`bt_runtime::storage::MemStorage`], with disk work
//! inline so a run is a pure function of its seed.

pub mod net;

#[cfg(test)]
mod tests;
