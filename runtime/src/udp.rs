//! The client's UDP socket: one bound socket carrying every datagram of the protocol client,
//! the DHT's KRPC and uTP alike (the client sorts what arrives, `Client::handle_datagram`).
//!
//! bt binds it to the TCP listener's address and port, as libtorrent does, so a peer that
//! learned our port dials it over either transport. A receive task reads datagrams in batches
//! (through [`crate::net::NetBoundUdp::recv_batch`]; for real sockets quinn-udp's `recvmmsg`,
//! up to 32 datagrams or GRO batches per system call, into a scratch buffer of
//! [`RECV_BUFFER`] bytes) and hands each batch to the driver whole through a channel of its
//! own, so the driver wakes once per batch and gives the client the batch at once (one uTP
//! acknowledgement per batch). The driver hands the datagrams one drain of the client made to
//! a send task at once ([`ClientUdp::send`] collects them, [`ClientUdp::flush`] hands them
//! over, one channel message per drain); the send task takes everything waiting and writes it
//! [`SEND_BATCH`] datagrams at a time through [`crate::net::NetBoundUdp::send_batch`] (for real
//! sockets, consecutive datagrams to one peer of one size go out as one GSO `sendmsg` where the
//! system has GSO, the rest one datagram per call). The kernel's buffers are asked to hold
//! [`crate::net::UDP_SOCKET_BUFFER_BYTES`] each way.
//!
//! Bounds: the receive channel holds [`RECV_QUEUE`] batches, each at most [`RECV_BUFFER`]
//! bytes (in at most 32 datagrams, unless GRO coalesced them). While it is full the receive
//! task waits, so datagrams wait in the kernel's receive buffer and are dropped there only when
//! that overflows too (a uTP sender then backs off, a DHT query times out). The send queue
//! holds [`MAX_SEND_QUEUE`] datagrams, counted from the hand-over until they are sent (so
//! also those the send task is writing); past it a datagram is dropped at the hand-over, as a
//! congested link would. Before the hand-over a drain's datagrams wait in [`ClientUdp`], at
//! most what one drain of the client makes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::{Net, NetBoundUdp};

/// Batches received and not yet taken by the driver before the receive task waits (the
/// driver takes every waiting batch at once; the kernel's buffer holds what arrives
/// meanwhile).
pub const RECV_QUEUE: usize = 16;

/// Datagrams handed to the send task and not yet sent before new ones are dropped (a uTP
/// window of about 2.8 MB in 1400-byte packets).
pub const MAX_SEND_QUEUE: usize = 2048;

/// The most datagrams the send task hands to [`crate::net::NetBoundUdp::send_batch`] at once (quinn-udp's GSO takes at most 64 segments a call).
pub const SEND_BATCH: usize = 64;

/// The receive task's scratch buffer: one [`crate::net::RECV_SLOT`] per datagram (or GRO
/// batch) of a batched read. Only the pages the datagrams touch become resident.
pub const RECV_BUFFER: usize = 32 * crate::net::RECV_SLOT;

/// How long [`ClientUdp::close`] waits for the queued datagrams to go out.
pub const FLUSH_TIMEOUT: Duration = Duration::from_millis(200);

/// A datagram received: its sender and bytes.
pub(crate) type Received = (SocketAddr, Bytes);

/// Datagrams received by one read of the socket, in order.
pub(crate) type ReceivedBatch = Vec<Received>;

/// A datagram to send: its address and bytes.
type Outgoing = (SocketAddr, Vec<u8>);

/// The client's UDP socket and its two tasks (aborted on drop).
pub(crate) struct ClientUdp {
    local: SocketAddr,
    /// The send task's queue, one message per hand-over; `None` once closed.
    out: Option<mpsc::Sender<Vec<Outgoing>>>,
    /// Datagrams handed to the send task and not yet sent (at most [`MAX_SEND_QUEUE`]).
    queued: Arc<AtomicUsize>,
    /// Datagrams collected since the last hand-over.
    collected: Vec<Outgoing>,
    /// The send task and the receive task.
    tasks: [JoinHandle<()>; 2],
}

impl ClientUdp {
    /// Binds `addr` (port 0 picks one) and starts the tasks; what arrives goes to `to_driver`.
    /// `inject_panic` makes the receive task panic on its first datagram (the driver's
    /// `INJECT_PEER_PANIC_ENV`, for tests: uTP peers are read here).
    pub(crate) async fn bind<N: Net>(
        net: &N,
        addr: SocketAddr,
        to_driver: mpsc::Sender<ReceivedBatch>,
        inject_panic: bool,
    ) -> std::io::Result<ClientUdp> {
        let socket = std::sync::Arc::new(net.udp_bind(addr).await?);
        let local = socket.local_addr()?;
        // Every message holds a datagram or more and at most MAX_SEND_QUEUE datagrams are
        // queued, so the channel is never full.
        let (out, mut out_rx) = mpsc::channel::<Vec<Outgoing>>(MAX_SEND_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let sender = socket.clone();
        let sent = queued.clone();
        let send_task = tokio::spawn(async move {
            let mut handed = Vec::new();
            let mut waiting = Vec::new();
            // Every hand-over waiting, joined so that runs to one peer span them; a failed send
            // (an unreachable address) is a lost datagram, as UDP goes.
            while out_rx.recv_many(&mut handed, MAX_SEND_QUEUE).await > 0 {
                waiting.extend(handed.drain(..).flatten());
                for batch in waiting.chunks(SEND_BATCH) {
                    sender.send_batch(batch).await;
                    sent.fetch_sub(batch.len(), Ordering::Relaxed);
                }
                waiting.clear();
            }
        });
        let recv_task = tokio::spawn(async move {
            let mut scratch = vec![0u8; RECV_BUFFER];
            loop {
                let mut batch = ReceivedBatch::new();
                match socket.recv_batch(&mut scratch, &mut batch).await {
                    Ok(()) if inject_panic => {
                        panic!("injected into the UDP receive task (BT_TEST_INJECT_PEER_PANIC)")
                    }
                    Ok(()) => {
                        for (from, _) in &mut batch {
                            *from = canonical(*from);
                        }
                        if to_driver.send(batch).await.is_err() {
                            return;
                        }
                    }
                    // An ICMP error surfaces as a failed receive on some systems: not fatal.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        Ok(ClientUdp {
            local,
            out: Some(out),
            queued,
            collected: Vec::new(),
            tasks: [send_task, recv_task],
        })
    }

    /// The address it is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops receiving, and sends what is queued (the last ACKs and FINs of a run's end) for at
    /// most [`FLUSH_TIMEOUT`].
    pub(crate) async fn close(&mut self) {
        self.flush();
        let [send_task, recv_task] = &mut self.tasks;
        recv_task.abort();
        // The send task ends once the queue is empty and closed.
        self.out = None;
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, send_task).await;
    }

    /// Collects a datagram for the next [`ClientUdp::flush`].
    pub(crate) fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.out.is_some() {
            self.collected.push((to, bytes));
        }
    }

    /// Hands the collected datagrams to the send task in one message; those past
    /// [`MAX_SEND_QUEUE`] are dropped.
    pub(crate) fn flush(&mut self) {
        let Some(out) = &self.out else {
            return;
        };
        let room = MAX_SEND_QUEUE.saturating_sub(self.queued.load(Ordering::Relaxed));
        self.collected.truncate(room);
        let n = self.collected.len();
        if n == 0 {
            return;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if out.try_send(std::mem::take(&mut self.collected)).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

impl Drop for ClientUdp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `from` with an IPv4-mapped IPv6 address (how a dual-stack socket shows IPv4 senders) turned
/// back into IPv4, so a peer or node has one address whichever socket heard it.
fn canonical(from: SocketAddr) -> SocketAddr {
    match from {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => from,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_senders_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:6881".parse().unwrap();
        assert_eq!(canonical(mapped), "10.1.2.3:6881".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        let v4: SocketAddr = "10.1.2.3:1".parse().unwrap();
        assert_eq!(canonical(v4), v4);
    }
}
