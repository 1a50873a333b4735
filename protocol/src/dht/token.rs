//! [`TokenSecrets`]: the write tokens a node hands out in `get_peers` answers and checks in
//! `announce_peer` queries (BEP 5).
//!
//! A token is the first [`TOKEN_LEN`] bytes of SHA-1(secret || IP address bytes), so it proves
//! the announcer got a `get_peers` answer at that IP address recently, and costs no state per
//! querier. The secret changes every [`TOKEN_ROTATION`] (drawn from the node's seeded [`Rng`]);
//! a token is accepted under the current or the previous secret, so it lives 5 to 10 minutes.
//!
//! Bounds: two 20-byte secrets, whatever the input.

use core::net::IpAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::rng::Rng;
use crate::time::Instant;

/// How often the secret changes (BEP 5 suggests five minutes).
pub const TOKEN_ROTATION: Duration = Duration::from_secs(5 * 60);

/// Length of the tokens handed out, in bytes.
pub const TOKEN_LEN: usize = 8;

/// The current and previous token secrets, and when to rotate them.
#[derive(Clone, Debug)]
pub struct TokenSecrets {
    current: [u8; 20],
    previous: [u8; 20],
    next_rotation: Option<Instant>,
}

impl TokenSecrets {
    /// Two fresh random secrets; the rotation schedule starts at the first
    /// [`TokenSecrets::handle_timeout`].
    pub fn new(rng: &mut Rng) -> Self {
        let mut current = [0; 20];
        let mut previous = [0; 20];
        rng.fill(&mut current);
        rng.fill(&mut previous);
        TokenSecrets {
            current,
            previous,
            next_rotation: None,
        }
    }

    /// The token for a querier at `ip`, under the current secret.
    pub fn token(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        token_for(&self.current, ip)
    }

    /// Whether `token` was handed to `ip` under the current or the previous secret.
    pub fn is_valid(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == token_for(&self.current, ip) || token == token_for(&self.previous, ip)
    }

    /// When the secret rotates next (None before the first [`TokenSecrets::handle_timeout`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_rotation
    }

    /// Starts the schedule on the first call; rotates once if the rotation is due (a late call
    /// rotates once, not once per period missed, and reschedules from `now`).
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut Rng) {
        match self.next_rotation {
            None => self.next_rotation = Some(now + TOKEN_ROTATION),
            Some(at) if at <= now => {
                self.rotate(rng);
                self.next_rotation = Some(now + TOKEN_ROTATION);
            }
            Some(_) => {}
        }
    }

    /// Draws a new secret; the current one becomes the previous one.
    pub fn rotate(&mut self, rng: &mut Rng) {
        self.previous = self.current;
        rng.fill(&mut self.current);
    }
}

fn token_for(secret: &[u8; 20], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut hasher = Sha1::new();
    hasher.update(secret);
    match ip {
        IpAddr::V4(ip) => hasher.update(ip.octets()),
        IpAddr::V6(ip) => hasher.update(ip.octets()),
    }
    let digest = hasher.finalize();
    let mut out = [0; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}
