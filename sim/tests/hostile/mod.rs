//! What the hostile scenarios must show on either engine: the attacks bt closes today, each for
//! its named reason in its time, and the ones it does not close yet, reported open.

use bt_sim::report::{AttackReport, Report};

/// The attack report of the group named `name`.
pub(crate) fn attack<'a>(r: &'a Report, name: &str) -> &'a AttackReport {
    let g = r.groups.iter().find(|g| g.name == name).expect("the group");
    g.attack.as_ref().expect("an attacker group")
}

/// The attacker groups of `hostile-mixed.toml` bt closes today: the reasons allowed and the
/// seconds within which every connection closes.
pub(crate) const CLOSED: &[(&str, &[&str], f64)] = &[
    ("wrong-hash", &["Peer/WrongInfoHash", "UnknownTorrent"], 1.0),
    (
        "bad-bitfield",
        &["Peer/Bitfield/SpareBitsSet", "Peer/Bitfield/WrongLength"],
        1.0,
    ),
    ("have-range", &["Peer/PieceOutOfRange"], 1.0),
    ("bad-request", &["Peer/InvalidBlock"], 1.0),
    (
        "flood",
        &["Peer/RequestWhileChoked", "Peer/TooManyRequests"],
        1.0,
    ),
    ("huge-prefix", &["Peer/Wire/FrameTooLong"], 1.0),
    (
        "slow-handshake",
        &["HandshakeTimeout", "Peer/HandshakeTimeout"],
        21.0,
    ),
    (
        "silent",
        &["HandshakeTimeout", "Peer/HandshakeTimeout"],
        21.0,
    ),
];

/// The attacker groups of `hostile-mixed.toml` bt does not close yet.
pub(crate) const NOT_CLOSED_YET: [&str; 3] = ["slowloris", "choke-storm", "unrequested"];

/// Every group of [`CLOSED`] had connections, each closed for one of its reasons within its
/// time (or opened too late to tell), both directions where the reasons differ.
pub(crate) fn assert_closed_with_their_reasons(r: &Report) {
    for (group, reasons, within_s) in CLOSED {
        let a = attack(r, group);
        assert!(a.closed_total > 0, "{group}: {}", r.human());
        // Those still open at the end opened too late to be closed yet.
        assert_eq!(
            a.closed_total + a.open_at_end,
            a.connections,
            "{group}: {}",
            r.human()
        );
        assert!(
            a.open_oldest_s.is_none_or(|s| s < *within_s),
            "{group}: {}",
            r.human()
        );
        for reason in a.closed.keys() {
            assert!(
                reasons.contains(&reason.as_str()),
                "{group} closed for {reason}: {}",
                r.human()
            );
        }
        // Both directions: the inbound and outbound reasons where they differ.
        if *group == "wrong-hash" || *group == "silent" {
            assert_eq!(a.closed.len(), 2, "{group}: {}", r.human());
        }
        let t = a.close_s.expect("closed ones have times");
        assert!(t.max <= *within_s, "{group}: {}", r.human());
        // The attacker's own queue stays within its bound.
        assert!(a.max_queued_by <= 64 * 1024, "{group}: {}", r.human());
    }
}

/// Every group of [`NOT_CLOSED_YET`] had connections, none closed, all open at the end, and the
/// streaming ones did send.
pub(crate) fn assert_not_closed_yet(r: &Report) {
    for group in NOT_CLOSED_YET {
        let a = attack(r, group);
        assert!(a.connections > 0, "{group}: {}", r.human());
        assert_eq!(a.closed_total, 0, "{group} is closed now: {}", r.human());
        assert_eq!(a.open_at_end, a.connections, "{group}: {}", r.human());
        assert!(a.max_queued_by <= 64 * 1024, "{group}: {}", r.human());
    }
    // The unrequested blocks did go out: the attack ran.
    assert!(
        attack(r, "unrequested").bytes_sent > 1 << 20,
        "{}",
        r.human()
    );
}
