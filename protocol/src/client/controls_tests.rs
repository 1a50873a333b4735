//! Tests of the user's controls on a [`Client`]: seeding goals (ratio and time, paused time not
//! counted, the clock starting at completion, the stop that follows) and pause/resume (connections
//! closed, incoming refused, no dialling, `stopped`/`started` announced, the peer list redialled
//! at once), over the in-memory network of `tests.rs`.

use core::time::Duration;

use super::tests::{LEN, Net, addr, answer, client, secs};
use super::*;

const TRACKER: &str = "http://10.2.0.100/announce";

fn tracker() -> Vec<Vec<String>> {
    vec![vec![TRACKER.to_owned()]]
}

/// Answers node `i`'s announces so far (an empty peer list); returns their events.
fn answer_announces(net: &mut Net, i: usize) -> Vec<AnnounceEvent> {
    net.settle();
    let announces = std::mem::take(&mut net.nodes[i].announces);
    let mut events = Vec::new();
    for (aid, _, request, _) in announces {
        events.push(request.event);
        net.nodes[i]
            .client
            .handle_announce(net.now, aid, Ok(answer(Vec::new())), None);
    }
    net.settle();
    events
}

/// The position of the first event of node `i` that `pred` accepts.
fn position(net: &Net, i: usize, pred: impl Fn(&Event) -> bool) -> Option<usize> {
    net.nodes[i].events.iter().position(pred)
}

#[test]
fn seed_ratios_parse_exactly_and_refuse_what_is_not_a_ratio() {
    // Proves `--seed-ratio` text becomes exact thousandths, prints back the same, and that
    // negative, non-numeric, infinite and huge values are refused with a message.
    for (text, thousandths, shown) in [
        ("1", 1000, "1"),
        ("0.5", 500, "0.5"),
        ("2.25", 2250, "2.25"),
        ("0", 0, "0"),
        ("1.0005", 1001, "1.001"),
    ] {
        let r = SeedRatio::parse(text).unwrap();
        assert_eq!(r.thousandths(), thousandths, "{text}");
        assert_eq!(r.to_string(), shown, "{text}");
    }
    for bad in ["-1", "abc", "", "inf", "NaN", "1e12"] {
        let err = SeedRatio::parse(bad).expect_err(bad);
        assert!(!err.is_empty() && !err.contains('\n'), "{bad}: {err}");
    }
    assert!(SeedRatio::from_thousandths(1000).reached(100, 100));
    assert!(!SeedRatio::from_thousandths(1000).reached(99, 100));
    assert!(SeedRatio::from_thousandths(0).reached(0, 0));
    assert!(!SeedRatio::from_thousandths(1).reached(5, 0));
}

#[test]
fn a_ratio_goal_stops_the_seeder_once_it_has_uploaded_the_torrent_once() {
    // Proves a seeder with `ratio 1` serves the whole torrent, then reports SeedGoalReached
    // (with exactly one torrent's worth uploaded), announces `stopped`, and only then Stopped.
    let mut net = Net::new();
    let (seeder, sid) = client(1, 1, true, tracker());
    let (leecher, lid) = client(2, 2, false, Vec::new());
    let s = net.add(seeder, true);
    let l = net.add(leecher, false);
    let one = SeedGoal {
        ratio: Some(SeedRatio::from_thousandths(1000)),
        time: None,
    };
    net.nodes[s]
        .client
        .set_seed_goal(Instant::ZERO, sid, one)
        .unwrap();
    assert_eq!(answer_announces(&mut net, s), [AnnounceEvent::Started]);
    assert!(!net.nodes[s].client.is_stopped(sid));
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    net.settle();
    assert!(net.complete(l, lid));
    let reached = position(&net, s, |e| matches!(e, Event::SeedGoalReached { .. }))
        .expect("the goal is reached");
    assert_eq!(
        net.nodes[s].events[reached],
        Event::SeedGoalReached {
            torrent: sid,
            reached: GoalReached::Ratio(SeedRatio::from_thousandths(1000)),
            uploaded: LEN,
            seeded: Duration::ZERO,
        }
    );
    assert_eq!(net.nodes[s].client.session().connection_count(), 0);
    assert_eq!(net.nodes[s].client.seed_goal(sid), None);
    // Stopped waits for the `stopped` announce.
    assert_eq!(
        position(&net, s, |e| matches!(e, Event::Stopped { .. })),
        None
    );
    assert_eq!(answer_announces(&mut net, s), [AnnounceEvent::Stopped]);
    let stopped = position(&net, s, |e| *e == Event::Stopped { torrent: sid });
    assert!(stopped.is_some_and(|p| p > reached));
    assert!(net.nodes[s].client.all_stopped());
}

#[test]
fn a_time_goal_counts_seeding_from_completion_and_not_while_paused() {
    // Proves the seeding clock starts when the download completes (at 100 s, not at 0), stops
    // while paused (10 s), and the goal of 33 s fires on its own timer at 143 s, not earlier.
    let mut net = Net::new();
    let (seeder, _) = client(1, 1, true, Vec::new());
    let (leecher, lid) = client(2, 2, false, Vec::new());
    net.add(seeder, true);
    let l = net.add(leecher, false);
    let goal = SeedGoal {
        ratio: None,
        time: Some(Duration::from_secs(33)),
    };
    net.nodes[l]
        .client
        .set_seed_goal(Instant::ZERO, lid, goal)
        .unwrap();
    net.run_until(secs(100));
    assert_eq!(
        net.nodes[l].client.seeding_time(secs(100), lid),
        Some(Duration::ZERO)
    );
    net.nodes[l]
        .client
        .add_peers(secs(100), lid, PeerSource::Direct, &[addr(1)]);
    net.settle();
    assert!(net.complete(l, lid));
    net.run_until(secs(110));
    net.nodes[l].client.pause(secs(110), lid).unwrap();
    net.run_until(secs(120));
    net.nodes[l].client.resume(secs(120), lid).unwrap();
    net.run_until(secs(142));
    assert!(!net.nodes[l].client.is_stopped(lid));
    assert_eq!(
        net.nodes[l].client.seeding_time(secs(142), lid),
        Some(Duration::from_secs(32))
    );
    assert!(
        net.nodes[l]
            .client
            .timers()
            .contains(&(Timer::SeedGoal(lid), secs(143)))
    );
    net.run_until(secs(144));
    let reached = position(&net, l, |e| matches!(e, Event::SeedGoalReached { .. }))
        .expect("the goal is reached");
    assert!(matches!(
        net.nodes[l].events[reached],
        Event::SeedGoalReached { reached: GoalReached::Time(t), seeded, .. }
            if t == Duration::from_secs(33) && seeded == t
    ));
    // No tracker to tell: it stops at once.
    assert!(
        position(&net, l, |e| *e == Event::Stopped { torrent: lid }).is_some_and(|p| p > reached)
    );
}

#[test]
fn a_goal_already_reached_stops_at_once_and_an_empty_goal_clears_it() {
    // Proves ratio 0 on a complete torrent stops it as the goal is set, and that setting an
    // empty goal removes one (the torrent then seeds on).
    let (mut c, id) = client(1, 1, true, Vec::new());
    let zero = SeedGoal {
        ratio: Some(SeedRatio::from_thousandths(0)),
        time: None,
    };
    let (mut other, other_id) = client(2, 2, true, Vec::new());
    other
        .set_seed_goal(
            Instant::ZERO,
            other_id,
            SeedGoal {
                ratio: None,
                time: Some(Duration::from_secs(5)),
            },
        )
        .unwrap();
    other
        .set_seed_goal(Instant::ZERO, other_id, SeedGoal::default())
        .unwrap();
    other.handle_timeout(secs(3600));
    assert!(!other.is_stopped(other_id));
    c.set_seed_goal(Instant::ZERO, id, zero).unwrap();
    let events: Vec<Output> = std::iter::from_fn(|| c.poll_output()).collect();
    assert!(
        events
            .iter()
            .any(|o| matches!(o, Output::Event(Event::SeedGoalReached { .. })))
    );
    assert!(c.is_stopped(id));
    assert_eq!(
        c.set_seed_goal(Instant::ZERO, TorrentId(99), zero),
        Err(SessionError::NoSuchTorrent(TorrentId(99)))
    );
}

#[test]
fn pause_takes_a_torrent_off_the_network_and_resume_redials_its_peer_list_at_once() {
    // Proves pause closes the torrent's connections, announces `stopped`, dials nobody (even
    // after its peers' retry waits end) and refuses an incoming connection; and resume announces
    // `started` and dials the address it still knows at once, even one still waiting for its
    // redial, and the download then completes.
    let mut net = Net::new();
    // Node 0 starts with nothing to give, so the connection stays open without a transfer.
    let (other, oid) = client(1, 1, false, Vec::new());
    let (leecher, lid) = client(2, 2, false, tracker());
    let o = net.add(other, true);
    let l = net.add(leecher, false);
    assert_eq!(answer_announces(&mut net, l), [AnnounceEvent::Started]);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    net.settle();
    assert_eq!(net.nodes[l].client.session().connection_count(), 1);
    net.now = secs(1);
    net.nodes[l].client.pause(secs(1), lid).unwrap();
    net.settle();
    assert!(net.nodes[l].client.is_paused(lid));
    assert_eq!(net.nodes[l].client.session().connection_count(), 0);
    assert_eq!(net.nodes[o].client.session().connection_count(), 0);
    assert!(
        net.nodes[l]
            .closes
            .iter()
            .any(|(_, r)| *r == ClientCloseReason::Session(SessionCloseReason::TorrentStopped))
    );
    assert_eq!(answer_announces(&mut net, l), [AnnounceEvent::Stopped]);
    // Paused is not stopped: no Stopped event, and the peer list is kept.
    assert!(!net.nodes[l].client.is_stopped(lid));
    assert!(
        net.nodes[l]
            .client
            .peer_list(lid)
            .unwrap()
            .contains(&addr(1))
    );
    // The other side dials in: refused.
    let closes = net.nodes[l].closes.len();
    net.nodes[o]
        .client
        .add_peers(secs(1), oid, PeerSource::Direct, &[addr(2)]);
    net.settle();
    assert_eq!(net.nodes[l].client.session().connection_count(), 0);
    assert!(
        net.nodes[l].closes[closes..]
            .iter()
            .any(|(_, r)| *r == ClientCloseReason::Session(SessionCloseReason::TorrentStopped))
    );
    net.run_until(secs(60));
    assert_eq!(net.nodes[l].connects, [(Instant::ZERO, addr(1))]);
    net.nodes[l].client.resume(secs(60), lid).unwrap();
    net.settle();
    assert!(!net.nodes[l].client.is_paused(lid));
    assert_eq!(answer_announces(&mut net, l), [AnnounceEvent::Started]);
    // Paused again at once, the address waits RECONNECT_AFTER for its redial; resume skips it.
    net.now = secs(61);
    net.nodes[l].client.pause(secs(61), lid).unwrap();
    // Node 0 becomes a seeder on the same address; the leecher resumes.
    let (seeder, _) = client(3, 1, true, Vec::new());
    net.nodes[o].client = seeder;
    net.now = secs(62);
    net.nodes[l].client.resume(secs(62), lid).unwrap();
    net.settle();
    assert_eq!(
        net.nodes[l].connects,
        [
            (Instant::ZERO, addr(1)),
            (secs(60), addr(1)),
            (secs(62), addr(1))
        ]
    );
    assert!(net.complete(l, lid));
}

#[test]
fn a_paused_torrent_stops_on_shutdown_and_pause_and_resume_of_others_do_nothing() {
    // Proves shutdown ends a paused torrent too (the driver's way out waits on it), that resume
    // of a running torrent and pause of a stopped one change nothing, and unknown ids are errors.
    let (mut c, id) = client(1, 1, false, Vec::new());
    c.resume(Instant::ZERO, id).unwrap();
    assert!(!c.is_paused(id) && !c.is_stopped(id));
    c.pause(Instant::ZERO, id).unwrap();
    assert!(c.is_paused(id));
    c.shutdown(secs(1));
    assert!(c.all_stopped());
    c.pause(secs(2), id).unwrap();
    assert!(!c.is_paused(id));
    assert_eq!(
        c.pause(secs(2), TorrentId(7)),
        Err(SessionError::NoSuchTorrent(TorrentId(7)))
    );
}

#[test]
fn progress_restored_from_earlier_runs_counts_toward_both_goals_and_is_saved_again() {
    // Proves earlier runs' progress counts: a complete torrent that uploaded its size before
    // meets ratio 1 as soon as the goal is set, with no peer; 30 s seeded before make a 33 s
    // goal fire 3 s into this run; and seed_progress gives earlier plus this run, also after the
    // goal stopped the torrent (so a driver can save it).
    let (mut c, id) = client(1, 1, true, Vec::new());
    assert_eq!(c.seed_progress(Instant::ZERO, id), None);
    c.restore_seed_progress(
        Instant::ZERO,
        id,
        SeedProgress {
            uploaded: LEN,
            seeded: Duration::from_secs(7),
        },
    )
    .unwrap();
    assert_eq!(c.seed_goal(id), None);
    assert!(!c.is_stopped(id));
    c.handle_timeout(secs(5));
    assert_eq!(
        c.seed_progress(secs(5), id),
        Some(SeedProgress {
            uploaded: LEN,
            seeded: Duration::from_secs(12),
        })
    );
    let one = SeedGoal {
        ratio: Some(SeedRatio::from_thousandths(1000)),
        time: None,
    };
    c.set_seed_goal(secs(5), id, one).unwrap();
    let events: Vec<Output> = std::iter::from_fn(|| c.poll_output()).collect();
    assert!(events.iter().any(|o| *o
        == Output::Event(Event::SeedGoalReached {
            torrent: id,
            reached: GoalReached::Ratio(SeedRatio::from_thousandths(1000)),
            uploaded: LEN,
            seeded: Duration::from_secs(12),
        })));
    assert!(c.is_stopped(id));
    c.handle_timeout(secs(50));
    assert_eq!(
        c.seed_progress(secs(50), id),
        Some(SeedProgress {
            uploaded: LEN,
            seeded: Duration::from_secs(12),
        }),
        "a stopped torrent's clock stands still"
    );

    let (mut c, id) = client(2, 2, true, Vec::new());
    c.restore_seed_progress(
        Instant::ZERO,
        id,
        SeedProgress {
            uploaded: 0,
            seeded: Duration::from_secs(30),
        },
    )
    .unwrap();
    let goal = SeedGoal {
        ratio: None,
        time: Some(Duration::from_secs(33)),
    };
    c.set_seed_goal(Instant::ZERO, id, goal).unwrap();
    assert!(c.timers().contains(&(Timer::SeedGoal(id), secs(3))));
    c.handle_timeout(secs(2));
    assert!(!c.is_stopped(id));
    c.handle_timeout(secs(3));
    assert!(c.is_stopped(id));
    assert_eq!(
        c.seed_progress(secs(9), id).map(|p| p.seeded),
        Some(Duration::from_secs(33))
    );
    assert_eq!(
        c.restore_seed_progress(Instant::ZERO, TorrentId(99), SeedProgress::default()),
        Err(SessionError::NoSuchTorrent(TorrentId(99)))
    );
}
