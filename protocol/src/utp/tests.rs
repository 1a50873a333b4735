//! An in-memory pair of uTP sockets over two simulated links, in the manner of quinn-proto's
//! `Pair`: the clock jumps to the next event (a datagram's arrival or a socket's timer), and
//! every run is bounded in steps, so a livelock fails instead of hanging.
//!
//! A [`Link`] delays each datagram, and from a seeded [`Rng`] drops, duplicates and reorders
//! (random extra delay) them; with a rate it is a bottleneck: datagrams queue behind each other
//! and each one's wait in the queue is recorded, which is the queueing delay LEDBAT steers.

use core::time::Duration;
use std::collections::BTreeMap;

use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::congestion::TARGET_DELAY;
use crate::utp::packet::{Header, Packet, PacketType};
use crate::utp::seq::Seq;
use crate::utp::socket::{
    CloseReason, DUP_ACK_LIMIT, Event, MAX_PAYLOAD, MAX_SYN_RETRANSMITS, RECV_BUFFER_BYTES, Socket,
    WriteError,
};

/// One direction of the path.
#[derive(Clone, Debug, Default)]
struct Link {
    delay: Duration,
    /// Each datagram gets a uniform extra delay in `0..jitter`, so later ones can overtake.
    jitter: Duration,
    loss_per_mille: u64,
    dup_per_mille: u64,
    /// A bottleneck: bytes per second leaving the queue; `None` is unlimited.
    rate_bytes_per_s: Option<u64>,
    busy_until: Instant,
    in_flight: BTreeMap<(Instant, u64), Vec<u8>>,
    sent: u64,
    /// (when queued, how long it waited) for each datagram through the bottleneck.
    queue_delays: Vec<(Instant, Duration)>,
}

impl Link {
    fn with_delay(ms: u64) -> Link {
        Link {
            delay: Duration::from_millis(ms),
            ..Link::default()
        }
    }

    fn send(&mut self, now: Instant, rng: &mut Rng, datagram: Vec<u8>) {
        if rng.below(1000) < self.loss_per_mille {
            return;
        }
        let copies = if rng.below(1000) < self.dup_per_mille {
            2
        } else {
            1
        };
        let mut leave = now;
        if let Some(rate) = self.rate_bytes_per_s {
            let start = self.busy_until.max(now);
            self.queue_delays.push((now, start - now));
            let serialise = datagram.len() as u64 * 1_000_000 / rate;
            self.busy_until = start + Duration::from_micros(serialise);
            leave = self.busy_until;
        }
        for _ in 0..copies {
            let jitter = Duration::from_micros(rng.below(self.jitter.as_micros() as u64 + 1));
            self.sent += 1;
            self.in_flight
                .insert((leave + self.delay + jitter, self.sent), datagram.clone());
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|&(at, _)| at)
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        self.in_flight.pop_first().map(|(_, d)| d)
    }
}

/// A client that connects and sends `upload`, a server that accepts and sends `download`;
/// each closes once it has written everything and read to the end.
struct Pair {
    now: Instant,
    rng: Rng,
    client: Socket,
    server: Option<Socket>,
    to_server: Link,
    to_client: Link,
    upload: Vec<u8>,
    download: Vec<u8>,
    client_side: Side,
    server_side: Side,
    /// The server does not read while this is set.
    server_reads_paused: bool,
}

/// One end's progress through its transfer.
#[derive(Default)]
struct Side {
    written: usize,
    closed: bool,
    /// When the peer's stream ended here.
    read_closed_at: Option<Instant>,
    received: Vec<u8>,
    events: Vec<Event>,
}

/// Runs `socket`'s half of the transfer: writes what fits, reads what arrived, closes when done.
fn service(now: Instant, socket: &mut Socket, side: &mut Side, source: &[u8], read: bool) {
    if side.written < source.len() {
        side.written += socket.write(&source[side.written..]).unwrap_or(0);
    }
    if side.written == source.len() && !side.closed {
        side.closed = true;
        socket.close();
    }
    if read {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = socket.read(&mut buf);
            if n == 0 {
                break;
            }
            side.received.extend_from_slice(&buf[..n]);
        }
    }
    while let Some(e) = socket.poll_event() {
        if e == Event::ReadClosed {
            side.read_closed_at = Some(now);
        }
        side.events.push(e);
    }
}

impl Pair {
    fn new(seed: u64, to_server: Link, to_client: Link, upload: usize, download: usize) -> Pair {
        let mut rng = Rng::new(seed);
        let mut bytes = |n: usize| {
            let mut v = vec![0; n];
            rng.fill(&mut v);
            v
        };
        let (upload, download) = (bytes(upload), bytes(download));
        let client = Socket::connect(&mut rng);
        Pair {
            now: START,
            rng,
            client,
            server: None,
            to_server,
            to_client,
            upload,
            download,
            client_side: Side::default(),
            server_side: Side::default(),
            server_reads_paused: false,
        }
    }

    fn done(&self) -> bool {
        self.client.is_drained() && self.server.as_ref().is_none_or(Socket::is_drained)
    }

    /// One step: service both ends, send what they have, then jump to the next event and
    /// handle it. `false` when nothing is scheduled any more.
    fn step(&mut self) -> bool {
        let now = self.now;
        service(
            now,
            &mut self.client,
            &mut self.client_side,
            &self.upload,
            true,
        );
        while let Some(d) = self.client.poll_transmit(now) {
            self.to_server.send(now, &mut self.rng, d);
        }
        if let Some(server) = &mut self.server {
            let read = !self.server_reads_paused;
            service(now, server, &mut self.server_side, &self.download, read);
            while let Some(d) = server.poll_transmit(now) {
                self.to_client.send(now, &mut self.rng, d);
            }
        }
        let timers = [
            self.client.poll_timeout(),
            self.server.as_ref().and_then(Socket::poll_timeout),
        ];
        let arrivals = [self.to_server.next_arrival(), self.to_client.next_arrival()];
        let Some(next) = timers.into_iter().chain(arrivals).flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        if arrivals[0] == Some(next) {
            let d = self.to_server.pop().expect("arrival");
            self.deliver_to_server(&d);
        } else if arrivals[1] == Some(next) {
            let d = self.to_client.pop().expect("arrival");
            self.client.handle_datagram(self.now, &d);
        }
        self.client.handle_timeout(self.now);
        if let Some(server) = &mut self.server {
            server.handle_timeout(self.now);
        }
        true
    }

    fn deliver_to_server(&mut self, d: &[u8]) {
        match &mut self.server {
            Some(server) => server.handle_datagram(self.now, d),
            None => {
                let syn = Packet::decode(d).expect("the client sends valid packets");
                assert_eq!(syn.header.ty, PacketType::Syn, "first packet is the SYN");
                self.server = Socket::accept(self.now, &mut self.rng, &syn);
            }
        }
    }

    /// Steps until both ends are drained; panics after `max_steps`, naming the seed's scenario.
    fn run(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.done() || !self.step() {
                return;
            }
        }
        panic!(
            "not done after {max_steps} steps at {:?}: client {:?} server {:?}",
            self.now,
            self.client.stats(),
            self.server.as_ref().map(Socket::stats)
        );
    }

    /// Asserts both transfers arrived byte for byte and both ends finished cleanly.
    fn assert_transferred(&self) {
        let server = self.server.as_ref().expect("accepted");
        assert!(self.server_side.received == self.upload, "upload differs");
        assert!(
            self.client_side.received == self.download,
            "download differs"
        );
        assert_eq!(self.client.close_reason(), Some(CloseReason::Finished));
        assert_eq!(server.close_reason(), Some(CloseReason::Finished));
        for events in [&self.client_side.events, &self.server_side.events] {
            assert_eq!(events.last(), Some(&Event::Closed(CloseReason::Finished)));
            assert!(events.contains(&Event::ReadClosed));
        }
        assert_eq!(self.client_side.events.first(), Some(&Event::Connected));
    }
}

const MB: usize = 1 << 20;

/// When every pair starts (not zero, so nothing confuses the epoch with "never").
const START: Instant = Instant::from_micros(1_000_000);

fn lossy(delay_ms: u64, loss_per_mille: u64) -> Link {
    Link {
        loss_per_mille,
        ..Link::with_delay(delay_ms)
    }
}

#[test]
fn transfers_a_megabyte_without_loss() {
    // Proves a clean path delivers 1 MB byte-identical, both ends finish, and nothing is resent.
    let mut pair = Pair::new(1, Link::with_delay(20), Link::with_delay(20), MB, 0);
    pair.run(100_000);
    pair.assert_transferred();
    let stats = pair.client.stats();
    assert_eq!(stats.timeout_resends + stats.fast_resends, 0, "{stats:?}");
    let took = pair
        .server_side
        .read_closed_at
        .unwrap()
        .saturating_since(START);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn transfers_through_one_percent_loss() {
    // Proves retransmission recovers every loss at 1 % in both directions, for several seeds.
    for seed in 0..4 {
        let mut pair = Pair::new(seed, lossy(20, 10), lossy(20, 10), MB, 0);
        pair.run(200_000);
        pair.assert_transferred();
        assert!(pair.client.stats().fast_resends > 0, "seed {seed}");
    }
}

#[test]
fn transfers_through_five_percent_loss_both_ways() {
    // Proves 5 % loss each way, with data flowing both ways at once, still delivers both streams.
    for seed in 10..13 {
        let mut pair = Pair::new(seed, lossy(15, 50), lossy(15, 50), MB, MB / 4);
        pair.run(400_000);
        pair.assert_transferred();
    }
}

#[test]
fn transfers_through_reordering_and_duplication() {
    // Proves heavy reordering (jitter beyond the one-way delay) and 5 % duplication deliver the
    // exact stream.
    let link = Link {
        jitter: Duration::from_millis(30),
        dup_per_mille: 50,
        ..Link::with_delay(10)
    };
    for seed in 20..23 {
        let mut pair = Pair::new(seed, link.clone(), link.clone(), MB, MB / 8);
        pair.run(200_000);
        pair.assert_transferred();
        let server = pair.server.as_ref().unwrap();
        assert!(server.stats().duplicates_received > 0);
    }
}

#[test]
fn a_server_that_stops_reading_stalls_the_sender_within_its_window() {
    // Proves the receive window: with the reader paused, the sender stops once the receiver's
    // buffer is full, and resumes when it reads.
    let mut pair = Pair::new(3, Link::with_delay(10), Link::with_delay(10), 3 * MB, 0);
    pair.server_reads_paused = true;
    for _ in 0..50_000 {
        pair.step();
    }
    let server = pair.server.as_ref().unwrap();
    assert!(server.readable_len() <= RECV_BUFFER_BYTES);
    assert!(server.readable_len() + MAX_PAYLOAD >= RECV_BUFFER_BYTES - 4 * MAX_PAYLOAD);
    assert!(pair.client.unacked_bytes() > MB, "the sender is stalled");
    assert!(
        pair.client.is_connected(),
        "{:?}",
        pair.client.close_reason()
    );
    pair.server_reads_paused = false;
    pair.run(200_000);
    pair.assert_transferred();
}

#[test]
fn queueing_delay_settles_near_the_target_at_a_bottleneck() {
    // Proves LEDBAT: through a 250 kB/s bottleneck with a deep queue, the queueing delay the
    // sender causes settles near the 100 ms target instead of filling the queue (without the
    // decrease on delay over target the window, and so the queue, would only grow).
    let bottleneck = Link {
        rate_bytes_per_s: Some(250_000),
        ..Link::with_delay(10)
    };
    let mut pair = Pair::new(7, bottleneck, Link::with_delay(10), 5 * MB, 0);
    pair.run(400_000);
    pair.assert_transferred();
    let delays = &pair.to_server.queue_delays;
    let start = delays[0].0;
    let settled: Vec<Duration> = delays
        .iter()
        .filter(|(at, _)| at.saturating_since(start) > Duration::from_secs(5))
        .map(|&(_, d)| d)
        .collect();
    let mut sorted = settled.clone();
    sorted.sort_unstable();
    let pct = |p: usize| sorted[sorted.len() * p / 100];
    let secs = pair
        .server_side
        .read_closed_at
        .unwrap()
        .saturating_since(start)
        .as_secs_f64();
    let throughput = pair.upload.len() as f64 / secs;
    eprintln!(
        "queueing delay after 5 s: p10 {:?} p50 {:?} p90 {:?} max {:?}; {:.0} B/s over {secs:.1} s",
        pct(10),
        pct(50),
        pct(90),
        sorted.last().unwrap(),
        throughput
    );
    let target = TARGET_DELAY;
    assert!(
        pct(50) > target / 2 && pct(50) < target * 3 / 2,
        "median {:?}",
        pct(50)
    );
    assert!(pct(90) < target * 2, "p90 {:?}", pct(90));
    // The link stays busy: LEDBAT yields delay, not throughput.
    assert!(throughput > 200_000.0, "{throughput} B/s");
}

/// A client and server connected by hand, every datagram passed directly.
fn connected_by_hand(seed: u64) -> (Instant, Socket, Socket) {
    let mut rng = Rng::new(seed);
    let now = START;
    let mut client = Socket::connect(&mut rng);
    let syn = client.poll_transmit(now).expect("SYN");
    let mut server = Socket::accept(now, &mut rng, &Packet::decode(&syn).unwrap()).unwrap();
    let state = server.poll_transmit(now).expect("ST_STATE");
    client.handle_datagram(now, &state);
    assert!(client.is_connected() && server.is_connected());
    assert_eq!(client.poll_event(), Some(Event::Connected));
    assert_eq!(server.poll_event(), Some(Event::Connected));
    (now, client, server)
}

/// A packet from the server to the client of type `ty` with `ack_nr`.
fn forged(client: &Socket, ty: PacketType, ack_nr: Seq) -> Vec<u8> {
    let mut out = Vec::new();
    Packet {
        header: Header {
            ty,
            connection_id: client.recv_id(),
            timestamp_micros: 0,
            timestamp_difference_micros: 0,
            wnd_size: 0,
            seq_nr: Seq(0),
            ack_nr,
        },
        sack: None,
        payload: &[],
    }
    .encode(&mut out);
    out
}

#[test]
fn ids_follow_bep_29() {
    // Proves the id rule: the initiator sends on recv + 1, the acceptor sends on the SYN's id.
    let (_, client, server) = connected_by_hand(5);
    assert_eq!(client.send_id(), client.recv_id().wrapping_add(1));
    assert_eq!(server.send_id(), client.recv_id());
    assert_eq!(server.recv_id(), client.send_id());
}

#[test]
fn an_unanswered_connect_gives_up() {
    // Proves the SYN is resent a bounded number of times with a doubling timeout, then the
    // connect ends as timed out.
    let mut rng = Rng::new(1);
    let mut client = Socket::connect(&mut rng);
    let mut now = START;
    let mut syns = 0;
    while let Some(deadline) = client
        .poll_timeout()
        .or(Some(now))
        .filter(|_| !client.is_drained())
    {
        while let Some(d) = client.poll_transmit(now) {
            assert_eq!(Packet::decode(&d).unwrap().header.ty, PacketType::Syn);
            syns += 1;
        }
        now = now.max(deadline);
        client.handle_timeout(now);
        assert!(syns <= 10, "SYNs without end");
    }
    assert_eq!(syns, 1 + MAX_SYN_RETRANSMITS);
    assert_eq!(client.close_reason(), Some(CloseReason::TimedOut));
    assert_eq!(now.saturating_since(START), Duration::from_secs(15));
}

#[test]
fn a_reset_ends_the_connection_at_once() {
    // Proves ST_RESET closes at once, that one acknowledging a packet never sent is ignored,
    // and that nothing is sent or written after.
    let (now, mut client, _server) = connected_by_hand(6);
    client.write(b"hello").unwrap();
    let data = client.poll_transmit(now).unwrap();
    let sent = Packet::decode(&data).unwrap().header.seq_nr;
    client.handle_datagram(now, &forged(&client, PacketType::Reset, sent.plus(5)));
    assert!(
        client.is_connected(),
        "a RESET for a packet never sent is spoofed"
    );
    client.handle_datagram(now, &forged(&client, PacketType::Reset, sent));
    assert_eq!(client.close_reason(), Some(CloseReason::Reset));
    assert_eq!(client.poll_event(), Some(Event::Closed(CloseReason::Reset)));
    assert!(client.is_drained());
    assert_eq!(client.write(b"more"), Err(WriteError::Closed));
    assert_eq!(client.poll_transmit(now), None);
}

#[test]
fn three_duplicate_acks_resend_at_once() {
    // Proves fast retransmit: the packet after a thrice-repeated ack_nr is resent without
    // waiting for the timer, and only once.
    let (now, mut client, _server) = connected_by_hand(8);
    client.write(&vec![1; 5 * MAX_PAYLOAD]).unwrap();
    let first = client.poll_transmit(now).unwrap();
    let lost = Packet::decode(&first).unwrap().header.seq_nr;
    while client.poll_transmit(now).is_some() {}
    for _ in 0..DUP_ACK_LIMIT + 2 {
        client.handle_datagram(now, &forged(&client, PacketType::State, lost.minus(1)));
    }
    let resent = client.poll_transmit(now).expect("fast retransmit");
    assert_eq!(Packet::decode(&resent).unwrap().header.seq_nr, lost);
    assert_eq!(client.stats().fast_resends, 1);
    assert!(
        client
            .poll_transmit(now)
            .is_none_or(|d| Packet::decode(&d).unwrap().header.seq_nr != lost)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    #[test]
    fn any_path_delivers_both_streams(
        seed in 0u64..1_000_000,
        delay_ms in 1u64..80,
        jitter_ms in 0u64..60,
        loss_per_mille in 0u64..100,
        dup_per_mille in 0u64..100,
        upload in 0usize..200_000,
        download in 0usize..50_000,
    ) {
        // Proves that whatever the delay, reordering, loss (under 10 %) and duplication, both
        // streams arrive byte-identical and both ends finish cleanly; or, when every SYN or
        // every answer to it was lost, the connect times out and both ends give up.
        let link = Link {
            jitter: Duration::from_millis(jitter_ms),
            loss_per_mille,
            dup_per_mille,
            ..Link::with_delay(delay_ms)
        };
        let mut pair = Pair::new(seed, link.clone(), link, upload, download);
        pair.run(400_000);
        if !pair.client_side.events.contains(&Event::Connected) {
            proptest::prop_assert_eq!(pair.client.close_reason(), Some(CloseReason::TimedOut));
            return Ok(());
        }
        pair.assert_transferred();
    }
}
