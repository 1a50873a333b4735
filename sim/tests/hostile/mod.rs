//! What the hostile scenarios must show on either engine: every attack closed by the honest
//! side, each for its named reason in its time (the choke storm wherever the honest peer is
//! interested).

use bt_sim::report::{AttackReport, Report};

/// The attack report of the group named `name`.
pub(crate) fn attack<'a>(r: &'a Report, name: &str) -> &'a AttackReport {
    let g = r.groups.iter().find(|g| g.name == name).expect("the group");
    g.attack.as_ref().expect("an attacker group")
}

/// The attacker groups of `hostile-mixed.toml`: the reasons allowed and the seconds within
/// which every connection closes.
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
    // More than 64 blocks never asked for, at the attacker's uplink.
    ("unrequested", &["Peer/UnrequestedBlocks"], 5.0),
    ("huge-prefix", &["Peer/Wire/FrameTooLong"], 1.0),
    (
        "slow-handshake",
        &["HandshakeTimeout", "Peer/HandshakeTimeout"],
        21.0,
    ),
    // More than 20 chokes in 60 s while interested: a choke every 100 ms, about 2 s.
    ("choke-storm", &["Peer/ChokeStorm"], 3.0),
    (
        "silent",
        &["HandshakeTimeout", "Peer/HandshakeTimeout"],
        21.0,
    ),
];

/// A prefer leecher's plaintext redial of an MSE attacker (bt's fallback after an encrypted dial
/// failed), which the script answers with its key.
const MSE_FALLBACK: &str = "Peer/Handshake/ProtocolLength";

/// The attacker groups of `hostile-mse.toml`, as [`CLOSED`]: the wrong VC is `BadVc` where bt
/// answered and `NoSyncMarker` where it dialled; the stall ends at the 20 s handshake limit.
pub(crate) const MSE_CLOSED: &[(&str, &[&str], f64)] = &[
    ("garbage", &["Mse/NoSyncMarker", MSE_FALLBACK], 1.0),
    ("long-pad", &["Mse/PadTooLong", MSE_FALLBACK], 1.0),
    (
        "wrong-vc",
        &["Mse/BadVc", "Mse/NoSyncMarker", MSE_FALLBACK],
        1.0,
    ),
    ("stall", &["Mse/TimedOut"], 21.0),
];

/// Every group of [`MSE_CLOSED`] closed for its reasons in its time.
pub(crate) fn assert_mse_closed_with_their_reasons(r: &Report) {
    for (group, reasons, within_s) in MSE_CLOSED {
        assert_group_closed(r, group, reasons, *within_s);
    }
}

/// The groups of [`CLOSED`] that may keep connections open to peers not interested in them
/// (a choke costs a seed nothing: bt does not count it).
pub(crate) const CLOSED_IF_INTERESTED: &[&str] = &["choke-storm"];

/// Every group of [`CLOSED`] had connections, each closed for one of its reasons within its
/// time (or opened too late to tell, or, for [`CLOSED_IF_INTERESTED`], to a peer not
/// interested); with `both_directions`, the inbound and outbound reasons where they differ.
pub(crate) fn assert_closed_with_their_reasons(r: &Report, both_directions: bool) {
    for (group, reasons, within_s) in CLOSED {
        assert_group_closed(r, group, reasons, *within_s);
        let a = attack(r, group);
        if !CLOSED_IF_INTERESTED.contains(group) {
            assert_eq!(a.open_uninterested, 0, "{group}: {}", r.human());
        }
        // Both directions: the inbound and outbound reasons where they differ.
        if both_directions && (*group == "wrong-hash" || *group == "silent") {
            assert_eq!(a.closed.len(), 2, "{group}: {}", r.human());
        }
    }
}

/// Group `group` had connections, the honest side closed some, each for one of `reasons`
/// within `within_s`; the rest are still open at the end, opened too late to be closed yet or
/// to a peer not interested; the attacker kept within its queue bound.
pub(crate) fn assert_group_closed(r: &Report, group: &str, reasons: &[&str], within_s: f64) {
    let a = attack(r, group);
    assert!(a.closed_total > 0, "{group}: {}", r.human());
    assert_eq!(
        a.closed_total + a.open_at_end,
        a.connections,
        "{group}: {}",
        r.human()
    );
    // Those still open at the end (but to peers not interested) opened too late to be closed.
    if a.open_uninterested == 0 {
        assert!(
            a.open_oldest_s.is_none_or(|s| s < within_s),
            "{group}: {}",
            r.human()
        );
    }
    for reason in a.closed.keys() {
        assert!(
            reasons.contains(&reason.as_str()),
            "{group} closed for {reason}: {}",
            r.human()
        );
    }
    let t = a.close_s.expect("closed ones have times");
    assert!(t.max <= within_s, "{group}: {}", r.human());
    // The attacker's own queue stays within its bound.
    assert!(a.max_queued_by <= 64 * 1024, "{group}: {}", r.human());
}

/// `hostile-slow.toml`: the slowloris after the handshake closed by the frame timeout, about
/// 61 s after the open (its first byte comes a second after the handshake).
pub(crate) fn assert_slowloris_closed(r: &Report) {
    assert_group_closed(r, "slowloris", &["Peer/FrameTimeout"], 62.0);
    let t = attack(r, "slowloris").close_s.expect("closed");
    assert!(t.min >= 60.0, "not before the frame timeout: {}", r.human());
}

/// `hostile-mixed.toml`: every unrequested-piece connection closed for its blocks past 64, and the
/// choke storm closed somewhere, with every connection it left open going to a peer that wants
/// nothing from it (the seeder, leechers that had completed).
pub(crate) fn assert_unrequested_and_choke_storm_closed(r: &Report) {
    let u = attack(r, "unrequested");
    assert_eq!(u.closed.get("Peer/UnrequestedBlocks"), Some(&u.connections));
    let c = attack(r, "choke-storm");
    assert!(
        c.closed.get("Peer/ChokeStorm").is_some_and(|n| *n > 0),
        "{}",
        r.human()
    );
    assert_eq!(c.open_at_end, c.open_uninterested, "{}", r.human());
}
