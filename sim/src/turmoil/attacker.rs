//! The turmoil engine's attackers: a turmoil host with raw TCP sockets running the
//! [`crate::attack::Attacker`] script, against honest hosts that run the real runtime.
//!
//! The host listens on the peer port, announces to the first tracker through the runtime's own
//! tracker client (as a seed, `left = 0`, at the tracker's interval), dials each address the
//! tracker gives once (never another attacker), and runs the script on every connection: what it
//! sends first, then its ticks. It hands what arrives to the script (an MSE attack keeps the
//! peer's key; the rest is discarded) and never closes a connection itself. Each connection it opens is put in [`super::peer::State`] under the address
//! the honest peer sees (the attacker's end of the socket), so the honest driver's
//! `PeerClosed` report finds it: the reason, and the time from the attacker's open to the honest
//! close. What is left there at the end was open at the end.
//!
//! Not modelled here, unlike the fast engine: the attacker's `up` and `down` (its sockets are not
//! paced; turmoil's TCP window still holds a fast sender back), and what honest peers queue for
//! an attacker (inside the runtime's tasks, out of the engine's sight).
//!
//! Bounds: one task per open connection (at most the group's `max_peers`, further accepts are
//! dropped at once), a script writes at most [`MAX_QUEUED`] bytes per tick, the addresses
//! remembered as dialled are at most the scenario's peers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bt_protocol::io::ConnId;
use bt_protocol::rng::Rng;
use bt_protocol::tracker::{AnnounceRequest, Event, TrackerUrl};
use bt_protocol::wire::PeerId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net::TurmoilNet;
use super::peer::{Ctx, PORT, Shared};
use crate::attack::{Attacker, MAX_QUEUED};
use crate::scenario::Role;

/// How long the attacker waits before announcing again after a failed announce.
const RETRY: Duration = Duration::from_secs(15);

/// The script and the connection numbers of one attacker life, shared by its tasks.
struct Script {
    attacker: Attacker,
    next_conn: u64,
    open: usize,
}

/// One life of attacker `id`: listen, announce, dial, and run the script on every connection.
pub(super) async fn life(ctx: Arc<Ctx>, shared: Arc<Shared>, id: usize) -> ::turmoil::Result {
    let (_, seed, group, _stop) = shared.begin_life(id);
    let spec = &ctx.groups[group];
    let Some(attack) = spec.attack else {
        return Ok(());
    };
    let max_peers = spec.max_peers;
    let mut rng = Rng::new(seed);
    let script = Arc::new(Mutex::new(Script {
        attacker: Attacker::new(
            attack,
            rng.fork(1),
            u32::try_from(ctx.meta.info_bytes.len()).unwrap_or(u32::MAX),
        ),
        next_conn: 1,
        open: 0,
    }));
    let listener =
        turmoil::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT))).await?;
    {
        let (ctx, shared, script) = (ctx.clone(), shared.clone(), script.clone());
        tokio::spawn(announce(ctx, shared, script, id, rng.fork(2), max_peers));
    }
    loop {
        let (stream, _) = listener.accept().await?;
        if lock(&script).open >= max_peers {
            continue;
        }
        tokio::spawn(connection(
            ctx.clone(),
            shared.clone(),
            script.clone(),
            id,
            stream,
            false,
        ));
    }
}

fn lock(script: &Mutex<Script>) -> MutexGuard<'_, Script> {
    script.lock().unwrap_or_else(|e| e.into_inner())
}

/// Announces to the first tracker for as long as the host lives, dialling the peers it gives.
async fn announce(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    script: Arc<Mutex<Script>>,
    id: usize,
    mut rng: Rng,
    max_peers: usize,
) {
    let Some(url) = ctx
        .tiers
        .first()
        .and_then(|t| t.first())
        .and_then(|u| TrackerUrl::parse(u).ok())
    else {
        return;
    };
    let mut peer_id = *b"-XX0001-000000000000";
    rng.fill(&mut peer_id[8..]);
    let key = rng.next_u32();
    let mut event = Event::Started;
    loop {
        let request = AnnounceRequest {
            info_hash: ctx.meta.info_hash,
            peer_id: PeerId(peer_id),
            port: PORT,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event,
            numwant: Some(bt_protocol::client::NUMWANT),
            key,
            tracker_id: None,
        };
        let clock = bt_runtime::tracker::Clock::start();
        let net = TurmoilNet::default();
        let announced =
            bt_runtime::tracker::announce(&net, clock, &url, request, |_| None, &mut rng).await;
        let wait = match announced.result {
            Ok(response) => {
                event = Event::None;
                for addr in response.peers {
                    let dial = {
                        let s = shared.lock();
                        s.by_ip
                            .get(&addr.ip())
                            .is_some_and(|h| s.hosts[*h].role != Role::Attacker && *h != id)
                    };
                    let mut sc = lock(&script);
                    if !dial || sc.open >= max_peers || !sc.attacker.tried.insert(addr) {
                        continue;
                    }
                    drop(sc);
                    let (ctx, shared, script) = (ctx.clone(), shared.clone(), script.clone());
                    tokio::spawn(async move {
                        let connect = turmoil::net::TcpStream::connect(addr);
                        let timeout = bt_protocol::client::CONNECT_TIMEOUT;
                        if let Ok(Ok(stream)) = tokio::time::timeout(timeout, connect).await {
                            connection(ctx, shared, script, id, stream, true).await;
                        }
                    });
                }
                response.interval
            }
            Err(_) => RETRY,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Runs the script on one open connection until the honest side closes it.
async fn connection(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    script: Arc<Mutex<Script>>,
    id: usize,
    stream: turmoil::net::TcpStream,
    dialled: bool,
) {
    let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let Some(honest) = shared.lock().by_ip.get(&remote.ip()).copied() else {
        return;
    };
    let conn = {
        let mut sc = lock(&script);
        sc.open += 1;
        let conn = ConnId(sc.next_conn);
        sc.next_conn += 1;
        conn
    };
    // The honest peer knows this connection by our end's address.
    let seen_as = SocketAddr::new(attacker_ip(local, &shared, id), local.port());
    shared.attack_opened(id, honest, seen_as, conn);
    let (mut reader, mut writer) = stream.into_split();
    let layout = &ctx.meta.info.layout;
    let step = lock(&script)
        .attacker
        .opened(conn, dialled, ctx.meta.info_hash, layout);
    let mut bytes = step.bytes;
    let mut next = step.again.map(|d| tokio::time::Instant::now() + d);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !bytes.is_empty() {
            shared.attack_sent(id, bytes.len());
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
            bytes.clear();
        }
        let due = next;
        tokio::select! {
            biased;
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    shared.attack_received(id, n);
                    let step = lock(&script).attacker.received(conn, &buf[..n], ctx.meta.info_hash);
                    bytes = step.bytes;
                }
            },
            () = sleep_until(due), if due.is_some() => {
                shared.attack_tick(id, conn);
                let step = lock(&script).attacker.tick(conn, layout, MAX_QUEUED);
                bytes = step.bytes;
                next = step.again.map(|d| tokio::time::Instant::now() + d);
            }
        }
    }
    shared.attack_ended(honest, seen_as, conn);
    let mut sc = lock(&script);
    sc.attacker.forget(conn);
    sc.open -= 1;
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Our address as others see it: the socket's local address, or our host's if unspecified.
fn attacker_ip(local: SocketAddr, shared: &Shared, id: usize) -> IpAddr {
    if !local.ip().is_unspecified() {
        return local.ip();
    }
    let s = shared.lock();
    s.by_ip
        .iter()
        .find(|(_, h)| **h == id)
        .map_or(local.ip(), |(ip, _)| *ip)
}
