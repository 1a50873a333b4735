//! Tests of the write tokens: valid under the current and the previous secret, invalid after two
//! rotations, bound to the IP address, rotated on schedule.

use core::net::IpAddr;
use std::time::Duration;

use super::token::*;
use crate::rng::Rng;
use crate::time::Instant;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn token_survives_one_rotation_not_two() {
    // Proves a token is accepted under the current and the previous secret only.
    let mut rng = Rng::new(3);
    let mut secrets = TokenSecrets::new(&mut rng);
    let a = ip("10.0.0.1");
    let token = secrets.token(a);
    assert_eq!(token.len(), TOKEN_LEN);
    assert!(secrets.is_valid(a, &token));
    secrets.rotate(&mut rng);
    assert!(secrets.is_valid(a, &token), "previous secret");
    assert_ne!(secrets.token(a), token);
    secrets.rotate(&mut rng);
    assert!(!secrets.is_valid(a, &token), "two rotations later");
}

#[test]
fn token_is_bound_to_the_ip_address() {
    // Proves a token handed to one IP address (v4 or v6) is refused from another, and that
    // truncated or empty tokens are refused.
    let mut rng = Rng::new(4);
    let secrets = TokenSecrets::new(&mut rng);
    let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("fe80::1"));
    let token = secrets.token(a);
    assert!(!secrets.is_valid(b, &token));
    assert!(!secrets.is_valid(c, &token));
    assert!(secrets.is_valid(c, &secrets.token(c)));
    assert!(!secrets.is_valid(a, &token[..4]));
    assert!(!secrets.is_valid(a, b""));
}

#[test]
fn rotation_follows_the_schedule() {
    // Proves the first timeout starts a 5-minute schedule, early calls change nothing, and a due
    // call rotates once and reschedules from now.
    let mut rng = Rng::new(5);
    let mut secrets = TokenSecrets::new(&mut rng);
    let a = ip("10.0.0.1");
    assert_eq!(secrets.poll_timeout(), None);
    let t0 = Instant::from_micros(1_000);
    secrets.handle_timeout(t0, &mut rng);
    assert_eq!(secrets.poll_timeout(), Some(t0 + TOKEN_ROTATION));
    let token = secrets.token(a);
    secrets.handle_timeout(t0 + Duration::from_secs(299), &mut rng);
    assert_eq!(secrets.token(a), token, "early call");
    let late = t0 + Duration::from_secs(3600);
    secrets.handle_timeout(late, &mut rng);
    assert_ne!(secrets.token(a), token);
    assert!(secrets.is_valid(a, &token), "one rotation however late");
    assert_eq!(secrets.poll_timeout(), Some(late + TOKEN_ROTATION));
}
