//! Tests of the [`Announcer`]: BEP 12 tier order and fail-over, intervals, backoff, events.

use std::time::Duration;

use super::*;
use crate::rng::Rng;
use crate::time::Instant;

fn secs(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

fn announcer(tiers: &[&[&str]]) -> Announcer {
    let tiers = tiers
        .iter()
        .map(|t| t.iter().map(|s| s.to_string()).collect())
        .collect();
    Announcer::new(AnnouncerConfig::default(), tiers, &mut Rng::new(7))
}

fn answer(interval: u64, min_interval: Option<u64>) -> AnnounceResponse {
    AnnounceResponse {
        interval: Duration::from_secs(interval),
        min_interval: min_interval.map(Duration::from_secs),
        ..AnnounceResponse::default()
    }
}

/// The due announce's URL and event.
fn due(a: &mut Announcer, now: Instant) -> Option<(String, Event)> {
    a.poll_announce(now).map(|x| (x.url, x.event))
}

fn owned(tiers: Vec<Vec<&str>>) -> Vec<Vec<String>> {
    tiers
        .into_iter()
        .map(|t| t.into_iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn tiers_are_shuffled_once_deterministically() {
    // Proves BEP 12's shuffle: within tiers only, the same for the same seed, not the identity.
    let urls: Vec<String> = (0..10).map(|i| format!("http://t{i}.example/a")).collect();
    let make = |seed| {
        let tiers = vec![urls.clone(), vec!["udp://last.example:1".into()]];
        owned(Announcer::new(AnnouncerConfig::default(), tiers, &mut Rng::new(seed)).tiers())
    };
    let a = make(1);
    assert_eq!(a, make(1));
    assert_ne!(a, make(2));
    assert_ne!(a[0], urls);
    let mut sorted = a[0].clone();
    sorted.sort();
    let mut expected = urls.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    assert_eq!(a[1], ["udp://last.example:1"]);
}

#[test]
fn nothing_happens_before_started() {
    // Proves an announcer is idle until `started`, then announces `started` at once.
    let mut a = announcer(&[&["http://a.example/"]]);
    assert_eq!((a.poll_timeout(), due(&mut a, secs(100))), (None, None));
    a.completed(secs(100));
    assert_eq!(a.poll_timeout(), None);
    a.started(secs(100));
    assert_eq!(a.poll_timeout(), Some(secs(100)));
    let next = a.poll_announce(secs(100)).unwrap();
    assert_eq!(
        (next.url.as_str(), next.event),
        ("http://a.example/", Event::Started)
    );
    assert_eq!(
        next.tracker,
        TrackerUrl::parse("http://a.example/").unwrap()
    );
    assert_eq!(a.in_flight(), Some(("http://a.example/", Event::Started)));
    assert_eq!(a.poll_timeout(), None, "waiting for the report");
    assert_eq!(due(&mut a, secs(200)), None, "one announce at a time");
}

#[test]
fn fail_over_through_the_tier_then_the_next_tier() {
    // Proves BEP 12's order: every URL of the first tier, then the next tier, each at once after
    // the previous failure, the event kept; the next round starts again at the first tier.
    let mut a = announcer(&[
        &["http://a.example/", "http://b.example/"],
        &["udp://c.example:1"],
    ]);
    let order: Vec<String> = a.tiers().concat().into_iter().map(str::to_owned).collect();
    a.started(secs(0));
    let err = TrackerError::Timeout;
    for (i, url) in order.iter().enumerate() {
        let now = secs(i as u64);
        assert_eq!(due(&mut a, now), Some((url.clone(), Event::Started)));
        if i + 1 < order.len() {
            a.handle_failure(now, url, &err);
            assert_eq!(a.poll_timeout(), Some(now), "next URL at once");
        }
    }
    a.handle_success(secs(2), "udp://c.example:1", &answer(1800, None));
    assert_eq!(a.last_working(), Some("udp://c.example:1"));
    assert_eq!(a.poll_timeout(), Some(secs(1802)));
    assert_eq!(due(&mut a, secs(1801)), None);
    assert_eq!(
        due(&mut a, secs(1802)),
        Some((order[0].clone(), Event::None))
    );
    let failed: Vec<&str> = a.errors().map(|(url, _)| url).collect();
    assert_eq!(failed, [order[0].as_str(), order[1].as_str()]);
}

#[test]
fn a_url_that_answers_moves_to_the_front_of_its_tier() {
    // Proves BEP 12: the working URL is tried first from then on, and its old error is cleared.
    let mut a = announcer(&[&[
        "http://a.example/",
        "http://b.example/",
        "http://c.example/",
    ]]);
    let before = owned(a.tiers());
    let (x, y, z) = (&before[0][0], &before[0][1], &before[0][2]);
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.handle_failure(secs(0), x, &TrackerError::Timeout);
    a.poll_announce(secs(0)).unwrap();
    a.handle_success(secs(1), y, &answer(600, None));
    assert_eq!(owned(a.tiers()), [[y.clone(), x.clone(), z.clone()]]);
    assert_eq!(due(&mut a, secs(601)), Some((y.clone(), Event::None)));
    a.handle_failure(secs(601), y, &TrackerError::Timeout);
    assert_eq!(due(&mut a, secs(601)), Some((x.clone(), Event::None)));
    a.handle_success(secs(602), x, &answer(600, None));
    assert_eq!(owned(a.tiers()), [[x.clone(), y.clone(), z.clone()]]);
    let errors: Vec<(&str, &TrackerError)> = a.errors().collect();
    assert_eq!(errors, [(y.as_str(), &TrackerError::Timeout)]);
}

#[test]
fn failed_rounds_back_off_from_30_s_to_30_min() {
    // Proves the documented backoff (30 s doubling, capped at 30 min) and its reset on success.
    let mut a = announcer(&[&["http://a.example/"], &["http://b.example/"]]);
    a.started(secs(0));
    let mut now = secs(0);
    let mut waits = Vec::new();
    for _ in 0..8 {
        for _ in 0..2 {
            let (url, event) = due(&mut a, now).unwrap();
            assert_eq!(event, Event::Started, "started is retried until delivered");
            a.handle_failure(now, &url, &TrackerError::Unreachable("refused".into()));
        }
        let next = a.poll_timeout().unwrap();
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1800, 1800]);
    let (url, _) = due(&mut a, now).unwrap();
    a.handle_success(now, &url, &answer(900, None));
    let now = now + Duration::from_secs(900);
    for _ in 0..2 {
        let (url, event) = due(&mut a, now).unwrap();
        assert_eq!(event, Event::None);
        a.handle_failure(now, &url, &TrackerError::Timeout);
    }
    assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(30)));
}

#[test]
fn tracker_id_is_remembered_per_url() {
    // Proves the `tracker id` of an answer is handed back on the next announce to that URL, and
    // kept when a later answer has none.
    let mut a = announcer(&[&["http://a.example/"]]);
    let url = "http://a.example/";
    a.started(secs(0));
    assert_eq!(a.poll_announce(secs(0)).unwrap().tracker_id, None);
    let mut response = answer(60, None);
    response.tracker_id = Some("t-1".into());
    a.handle_success(secs(0), url, &response);
    assert_eq!(
        a.poll_announce(secs(60)).unwrap().tracker_id.as_deref(),
        Some("t-1")
    );
    a.handle_success(secs(60), url, &answer(60, None));
    assert_eq!(
        a.poll_announce(secs(120)).unwrap().tracker_id.as_deref(),
        Some("t-1")
    );
}

#[test]
fn interval_min_interval_and_floor() {
    // Proves the next regular announce waits the interval, at least the min interval, at least
    // the configured floor (60 s).
    let mut a = announcer(&[&["http://a.example/"]]);
    let url = "http://a.example/";
    a.started(secs(0));
    let cases = [
        (answer(1800, Some(300)), 1800),
        (answer(100, Some(300)), 300),
        (answer(10, None), 60),
        (answer(10, Some(0)), 60),
    ];
    let mut now = secs(0);
    for (response, wait) in cases {
        a.poll_announce(now).unwrap();
        a.handle_success(now, url, &response);
        assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(wait)));
        now = now + Duration::from_secs(wait);
    }
}

#[test]
fn completed_waits_for_min_interval_and_stays_queued() {
    // Proves `completed` respects the tracker's min interval, survives a failure, and a
    // `completed` arriving while `started` is in flight is sent right after it.
    let mut a = announcer(&[&["http://a.example/"]]);
    let url = "http://a.example/";
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.handle_success(secs(0), url, &answer(1800, Some(120)));
    a.completed(secs(10));
    assert_eq!(a.poll_timeout(), Some(secs(120)));
    assert_eq!(due(&mut a, secs(119)), None);
    assert_eq!(due(&mut a, secs(120)), Some((url.into(), Event::Completed)));
    a.handle_failure(secs(121), url, &TrackerError::Timeout);
    assert_eq!(a.poll_timeout(), Some(secs(151)));
    assert_eq!(due(&mut a, secs(151)), Some((url.into(), Event::Completed)));
    a.handle_success(secs(151), url, &answer(1800, None));
    assert_eq!(a.poll_timeout(), Some(secs(1951)));

    let mut a = announcer(&[&["http://a.example/"]]);
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.completed(secs(1));
    a.handle_success(secs(2), url, &answer(1800, None));
    assert_eq!(due(&mut a, secs(2)), Some((url.into(), Event::Completed)));
}

#[test]
fn a_completion_not_yet_announced_goes_out_before_stopped() {
    // Proves a download that stops right as it completes (before the tracker's min interval let
    // `completed` out) still tells the tracker it completed, once, then `stopped`; and that a
    // `completed` already announced is not sent again on the way out.
    let url = "http://a.example/";
    for fail_completed in [false, true] {
        let mut a = announcer(&[&[url]]);
        a.started(secs(0));
        a.poll_announce(secs(0)).unwrap();
        a.handle_success(secs(0), url, &answer(1800, Some(120)));
        a.completed(secs(10));
        a.stopped(secs(11));
        assert_eq!(due(&mut a, secs(11)), Some((url.into(), Event::Completed)));
        if fail_completed {
            a.handle_failure(secs(12), url, &TrackerError::Timeout);
        } else {
            a.handle_success(secs(12), url, &answer(1800, Some(120)));
        }
        assert_eq!(due(&mut a, secs(12)), Some((url.into(), Event::Stopped)));
        a.handle_success(secs(13), url, &answer(1800, None));
        assert!(a.is_stopped());
    }

    let mut a = announcer(&[&[url]]);
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.handle_success(secs(0), url, &answer(1800, None));
    a.completed(secs(10));
    assert_eq!(due(&mut a, secs(10)), Some((url.into(), Event::Completed)));
    a.handle_success(secs(10), url, &answer(1800, None));
    a.stopped(secs(20));
    assert_eq!(due(&mut a, secs(20)), Some((url.into(), Event::Stopped)));
}

#[test]
fn stopped_is_sent_once_to_the_last_working_url() {
    // Proves `stopped` goes to the URL that answered last, is not retried after a failure, and
    // leaves the announcer stopped with no timer.
    for succeed in [true, false] {
        let mut a = announcer(&[&["http://a.example/"], &["http://b.example/"]]);
        a.started(secs(0));
        let (first, _) = due(&mut a, secs(0)).unwrap();
        a.handle_failure(secs(0), &first, &TrackerError::Timeout);
        let (second, _) = due(&mut a, secs(0)).unwrap();
        a.handle_success(secs(0), &second, &answer(1800, Some(900)));
        a.stopped(secs(5));
        assert_eq!(
            a.poll_timeout(),
            Some(secs(5)),
            "stopped ignores min interval"
        );
        assert_eq!(due(&mut a, secs(5)), Some((second.clone(), Event::Stopped)));
        assert!(!a.is_stopped());
        if succeed {
            a.handle_success(secs(6), &second, &answer(1800, None));
        } else {
            a.handle_failure(secs(6), &second, &TrackerError::Timeout);
        }
        assert!(a.is_stopped());
        assert_eq!((a.poll_timeout(), due(&mut a, secs(10_000))), (None, None));
        a.started(secs(20));
        assert_eq!(
            due(&mut a, secs(20)).map(|d| d.1),
            Some(Event::Started),
            "restart"
        );
    }
}

#[test]
fn stopped_with_nobody_to_tell() {
    // Proves `stopped` before any success ends at once, and `stopped` during the first announce
    // waits for it: success sends `stopped` there, failure ends.
    let mut a = announcer(&[&["http://a.example/"]]);
    let url = "http://a.example/";
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.handle_failure(secs(0), url, &TrackerError::Timeout);
    a.stopped(secs(1));
    assert!(a.is_stopped());
    assert_eq!(a.poll_timeout(), None);

    let mut a = announcer(&[&["http://a.example/"]]);
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.stopped(secs(1));
    assert!(!a.is_stopped());
    assert_eq!(
        due(&mut a, secs(1)),
        None,
        "the first announce is still in flight"
    );
    a.handle_success(secs(2), url, &answer(1800, None));
    assert_eq!(due(&mut a, secs(2)), Some((url.into(), Event::Stopped)));

    let mut a = announcer(&[&["http://a.example/"]]);
    a.started(secs(0));
    a.poll_announce(secs(0)).unwrap();
    a.stopped(secs(1));
    a.handle_failure(secs(2), url, &TrackerError::Timeout);
    assert!(a.is_stopped());
}

#[test]
fn unparseable_urls_are_skipped_and_listed() {
    // Proves bad URLs are never announced to, duplicates are dropped, and every error is listed
    // per URL (the parse error, or the last announce error until a success clears it).
    let mut a = announcer(&[
        &["wss://tracker.example", "http://ok.example/a"],
        &["udp://noport.example/announce", "http://ok.example/a"],
        &[],
    ]);
    assert_eq!(a.tiers(), [["http://ok.example/a"]]);
    let errors: Vec<(String, String)> = a
        .errors()
        .map(|(u, e)| (u.to_owned(), e.to_string()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                "wss://tracker.example".to_owned(),
                "bad tracker URL: unsupported tracker scheme `wss`: bt speaks http, https and udp"
                    .to_owned()
            ),
            (
                "udp://noport.example/announce".to_owned(),
                "bad tracker URL: a udp:// tracker URL needs a port, as in udp://host:6969/announce"
                    .to_owned()
            ),
        ]
    );
    a.started(secs(0));
    let (url, _) = due(&mut a, secs(0)).unwrap();
    assert_eq!(url, "http://ok.example/a");
    a.handle_failure(
        secs(0),
        &url,
        &TrackerError::Http {
            status: 404,
            reason: "Not Found".into(),
        },
    );
    assert_eq!(a.errors().count(), 3);
    assert_eq!(a.errors().next().unwrap().0, "http://ok.example/a");
    let (url, _) = due(&mut a, secs(30)).unwrap();
    a.handle_success(secs(30), &url, &answer(60, None));
    assert_eq!(a.errors().count(), 2);
}

#[test]
fn no_usable_url_means_no_timer() {
    // Proves an announcer without a usable URL never asks the driver to wake up.
    let mut a = announcer(&[&["wss://x.example"]]);
    a.started(secs(0));
    assert_eq!((a.poll_timeout(), due(&mut a, secs(0))), (None, None));
    a.stopped(secs(1));
    assert!(a.is_stopped());
}

#[test]
fn reports_for_other_urls_are_ignored() {
    // Proves a late or unknown report cannot change the schedule or the order.
    let mut a = announcer(&[&["http://a.example/", "http://b.example/"]]);
    a.started(secs(0));
    let (url, _) = due(&mut a, secs(0)).unwrap();
    let other = if url == "http://a.example/" {
        "http://b.example/"
    } else {
        "http://a.example/"
    };
    let tiers = owned(a.tiers());
    a.handle_success(secs(1), other, &answer(60, None));
    a.handle_failure(secs(1), "http://unknown.example/", &TrackerError::Timeout);
    assert_eq!(a.in_flight(), Some((url.as_str(), Event::Started)));
    assert_eq!(owned(a.tiers()), tiers);
    assert_eq!(a.last_working(), None);
    assert_eq!(a.errors().count(), 0);
}

#[test]
fn tracker_count_is_bounded() {
    // Proves at most MAX_TRACKERS distinct URLs are kept.
    let urls: Vec<String> = (0..MAX_TRACKERS + 10)
        .map(|i| format!("http://t{i}.example/"))
        .collect();
    let a = Announcer::new(AnnouncerConfig::default(), vec![urls], &mut Rng::new(1));
    assert_eq!(a.tiers()[0].len(), MAX_TRACKERS);
}

#[derive(Clone, Debug)]
enum Op {
    Started,
    Completed,
    Stopped,
    /// Let this many seconds pass, then take a due announce if any.
    Wait(u16),
    /// Report the announce in flight as a success with this interval and min interval.
    Success(u16, Option<u16>),
    /// Report the announce in flight as a failure.
    Failure,
    /// Report a URL that is not in flight.
    Stale,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Op::Started),
        Just(Op::Completed),
        Just(Op::Stopped),
        any::<u16>().prop_map(Op::Wait),
        (any::<u16>(), any::<Option<u16>>()).prop_map(|(i, m)| Op::Success(i, m)),
        Just(Op::Failure),
        Just(Op::Stale),
    ]
}

proptest::proptest! {
    #[test]
    fn a_timer_always_leads_to_an_announce(
        ops in proptest::collection::vec(op(), 0..60),
        bad_first in proptest::prelude::any::<bool>(),
    ) {
        // Proves, under any sequence of commands and reports, that whenever the announcer sets a
        // timer an announce is due at that time (no timer that wakes the driver for nothing),
        // and that only announced URLs are ever in flight.
        let first: &[&str] = if bad_first { &["wss://x.example"] } else { &["http://a.example/"] };
        let mut a = announcer(&[first, &["http://b.example/", "udp://c.example:1"]]);
        let mut now = secs(0);
        for op in ops {
            match op {
                Op::Started => a.started(now),
                Op::Completed => a.completed(now),
                Op::Stopped => a.stopped(now),
                Op::Wait(s) => now = now + Duration::from_secs(u64::from(s)),
                Op::Success(i, m) => {
                    if let Some((url, _)) = a.in_flight() {
                        let url = url.to_owned();
                        let response = answer(u64::from(i).max(1), m.map(u64::from));
                        a.handle_success(now, &url, &response);
                    }
                }
                Op::Failure => {
                    if let Some((url, _)) = a.in_flight() {
                        let url = url.to_owned();
                        a.handle_failure(now, &url, &TrackerError::Timeout);
                    }
                }
                Op::Stale => a.handle_failure(now, "http://stale.example/", &TrackerError::Timeout),
            }
            if let Some(deadline) = a.poll_timeout() {
                let at = now.max(deadline);
                let due = a.poll_announce(at);
                proptest::prop_assert!(due.is_some(), "timer at {deadline:?} with nothing due");
                let due = due.unwrap();
                proptest::prop_assert!(a.tiers().concat().contains(&due.url.as_str()));
                proptest::prop_assert_eq!(a.in_flight(), Some((due.url.as_str(), due.event)));
                now = at;
            }
        }
    }
}
