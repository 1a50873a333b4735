//! The driver's user-set limits on connections: `Driver::set_max_half_open` bounds the outgoing
//! connects in progress at once, over a `Net` whose connects take a while and then fail (so every
//! queued peer is tried and each connect stays half-open long enough to be counted).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bt_protocol::content::ContentSpec;
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::SessionConfig;
use bt_protocol::torrent::Bitfield;
use bt_runtime::driver::{Driver, Report, StopWhen};
use bt_runtime::net::{Net, TokioNet};
use bt_runtime::storage::MemStorage;

/// Connects in progress now, the most seen at once, and how many were made.
#[derive(Default)]
struct Counts {
    now: AtomicUsize,
    most: AtomicUsize,
    made: AtomicUsize,
}

/// [`TokioNet`], except that a connect waits [`CONNECT_DELAY`] and then is refused.
#[derive(Clone)]
struct SlowConnects {
    inner: TokioNet,
    counts: Arc<Counts>,
}

const CONNECT_DELAY: Duration = Duration::from_millis(200);

impl Net for SlowConnects {
    type Udp = <TokioNet as Net>::Udp;
    type BoundUdp = <TokioNet as Net>::BoundUdp;
    type Reader = <TokioNet as Net>::Reader;
    type Writer = <TokioNet as Net>::Writer;
    type Listener = <TokioNet as Net>::Listener;

    async fn connect(&self, _addr: SocketAddr) -> std::io::Result<(Self::Reader, Self::Writer)> {
        let c = &self.counts;
        c.made.fetch_add(1, Ordering::SeqCst);
        let now = c.now.fetch_add(1, Ordering::SeqCst) + 1;
        c.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(CONNECT_DELAY).await;
        c.now.fetch_sub(1, Ordering::SeqCst);
        Err(std::io::ErrorKind::ConnectionRefused.into())
    }

    async fn listen(&self, addr: SocketAddr) -> std::io::Result<Self::Listener> {
        self.inner.listen(addr).await
    }

    fn local_addr(listener: &Self::Listener) -> std::io::Result<SocketAddr> {
        TokioNet::local_addr(listener)
    }

    async fn accept(
        listener: &mut Self::Listener,
    ) -> std::io::Result<(Self::Reader, Self::Writer, SocketAddr)> {
        TokioNet::accept(listener).await
    }

    async fn udp_connect(&self, remote: SocketAddr) -> std::io::Result<Self::Udp> {
        self.inner.udp_connect(remote).await
    }

    async fn udp_bind(&self, addr: SocketAddr) -> std::io::Result<Self::BoundUdp> {
        self.inner.udp_bind(addr).await
    }

    async fn resolve(&self, host: String, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        self.inner.resolve(host, port).await
    }
}

fn torrent() -> Metainfo {
    let spec = ContentSpec::single("limits.bin", 16 * 1024, 64 * 1024);
    bt_protocol::content::torrent(7, &spec).unwrap()
}

/// Queues `peers` peers on a driver (half-open limit `limit`, if any) and runs it until every
/// connect failed; returns the most connects seen in progress at once.
async fn most_connects_at_once(peers: u16, limit: Option<usize>) -> usize {
    let meta = torrent();
    let n = meta.info.layout.piece_count();
    let counts = Arc::new(Counts::default());
    let net = SlowConnects {
        inner: TokioNet,
        counts: counts.clone(),
    };
    let disk = Arc::new(MemStorage::empty(meta.info.layout.clone(), 7));
    let mut driver = Driver::new(
        net,
        disk,
        &meta,
        Bitfield::new(n),
        SessionConfig::default(),
        1,
    )
    .unwrap();
    if let Some(limit) = limit {
        driver.set_max_half_open(limit);
    }
    for port in 1..=peers {
        let torrent = driver
            .first_torrent()
            .expect("the driver holds its torrent");
        driver.add_peer(torrent, SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let failed = Arc::new(AtomicUsize::new(0));
    let seen = failed.clone();
    let all_failed = async move {
        // Bounded: 20 s at most, checked every 20 ms.
        for _ in 0..1000 {
            if seen.load(Ordering::SeqCst) >= usize::from(peers) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    driver
        .run(StopWhen::Interrupted, all_failed, |_, r| {
            if let Report::ConnectFailed { .. } = r {
                failed.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;
    assert_eq!(
        counts.made.load(Ordering::SeqCst),
        usize::from(peers),
        "every queued peer is dialled once"
    );
    counts.most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "current_thread")]
async fn half_open_connects_stay_under_the_limit() {
    // Proves at most the set number of connects run at once, and that the limit is what holds
    // them back (without it, all twelve run together).
    assert_eq!(most_connects_at_once(12, Some(3)).await, 3);
    assert_eq!(most_connects_at_once(12, None).await, 12);
}
