//! One tracker announce over real (or simulated) sockets: the byte moving around the sans-IO
//! tracker pieces of `bt_protocol::tracker`.
//!
//! HTTP: resolve, connect over TCP, write [`http_get_request`], feed what comes back to an
//! [`HttpResponseReader`]; the whole exchange is bounded by [`HTTP_TIMEOUT`]. HTTPS: the same
//! exchange inside a TLS session ([`tls`]: rustls, Mozilla's roots unless
//! [`announce_with_tls`] is given another config), the handshake counted in the same bound.
//! UDP: resolve, a socket connected to the tracker (so a closed port is reported at once), and a
//! [`UdpAnnounce`] driven with `tokio::time` on the [`UDP_CONFIG`] schedule. Every failure
//! becomes a [`TrackerError`] a person can act on.
//!
//! Bounds: the HTTP answer is bounded by the reader's limits (16 KiB headers, 2 MiB body); a UDP
//! datagram is read into one 64 KiB buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::rng::Rng;
use bt_protocol::time::Instant as ProtoInstant;
use bt_protocol::tracker::{
    AnnounceRequest, AnnounceResponse, HttpResponseReader, Scheme, TrackerError, TrackerUrl,
    UdpAnnounce, UdpConfig, announce_path_and_query, announce_response_from_http, http_get_request,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::{Net, NetUdp};

use crate::tls::{self, rustls::ClientConfig};

/// The longest an HTTP announce may take, connect to last byte (the protocol client's
/// [`bt_protocol::client::TRACKER_HTTP_TIMEOUT`]).
pub const HTTP_TIMEOUT: Duration = bt_protocol::client::TRACKER_HTTP_TIMEOUT;

/// The longest a TCP connect to an HTTP tracker may take
/// ([`bt_protocol::client::TRACKER_CONNECT_TIMEOUT`]).
pub const CONNECT_TIMEOUT: Duration = bt_protocol::client::TRACKER_CONNECT_TIMEOUT;

/// UDP retransmission for announces ([`bt_protocol::client::UDP_TRACKER_CONFIG`]).
pub const UDP_CONFIG: UdpConfig = bt_protocol::client::UDP_TRACKER_CONFIG;

/// Maps `tokio::time` to the protocol's clock: microseconds since an epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Clock {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The protocol time now.
    pub fn now(&self) -> ProtoInstant {
        let micros = tokio::time::Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros();
        ProtoInstant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The tokio instant of protocol time `at`.
    pub fn deadline(&self, at: ProtoInstant) -> tokio::time::Instant {
        self.epoch + Duration::from_micros(at.as_micros())
    }
}

/// A UDP tracker's connection id and when it was received, reusable for a minute (BEP 15).
pub type UdpConnection = (u64, ProtoInstant);

/// The outcome of [`announce`]: the answer, and for UDP the connection id to reuse next time.
#[derive(Clone, Debug)]
pub struct Announced {
    /// What the tracker answered, or why there is no answer.
    pub result: Result<AnnounceResponse, TrackerError>,
    /// For a UDP tracker: its address and the connection id it gave.
    pub udp: Option<(SocketAddr, UdpConnection)>,
}

/// Announces `request` to `tracker` once. `udp_cached` gives a UDP tracker's connection ids from
/// earlier announces (looked up by the resolved address); `rng` seeds UDP transaction ids. An
/// https tracker must show a certificate from one of Mozilla's roots ([`tls::default_config`]).
pub async fn announce<N: Net>(
    net: &N,
    clock: Clock,
    tracker: &TrackerUrl,
    request: AnnounceRequest,
    udp_cached: impl Fn(SocketAddr) -> Option<UdpConnection>,
    rng: &mut Rng,
) -> Announced {
    let tls = tls::default_config();
    announce_with_tls(net, clock, tracker, request, udp_cached, rng, &tls).await
}

/// [`announce`] with the TLS client config for https trackers given: for example
/// [`tls::config_with_extra_roots`] to trust a private tracker's own certificate authority.
pub async fn announce_with_tls<N: Net>(
    net: &N,
    clock: Clock,
    tracker: &TrackerUrl,
    request: AnnounceRequest,
    udp_cached: impl Fn(SocketAddr) -> Option<UdpConnection>,
    rng: &mut Rng,
    tls: &Arc<ClientConfig>,
) -> Announced {
    let addrs = match resolve(net, tracker).await {
        Ok(addrs) => addrs,
        Err(e) => {
            return Announced {
                result: Err(e),
                udp: None,
            };
        }
    };
    match tracker.scheme() {
        Scheme::Http | Scheme::Https => Announced {
            result: match tokio::time::timeout(
                HTTP_TIMEOUT,
                http(net, &addrs, tracker, &request, tls),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(TrackerError::Timeout),
            },
            udp: None,
        },
        Scheme::Udp => {
            let addr = addrs[0];
            let (result, connection) = udp(net, clock, addr, request, udp_cached(addr), rng).await;
            Announced {
                result,
                udp: connection.map(|c| (addr, c)),
            }
        }
    }
}

async fn resolve<N: Net>(net: &N, tracker: &TrackerUrl) -> Result<Vec<SocketAddr>, TrackerError> {
    if let Some(ip) = tracker.ip() {
        return Ok(vec![SocketAddr::new(ip, tracker.port())]);
    }
    let host = tracker.host().to_owned();
    match tokio::time::timeout(CONNECT_TIMEOUT, net.resolve(host.clone(), tracker.port())).await {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(TrackerError::Unreachable(format!("{host} has no address"))),
        Ok(Err(e)) => Err(TrackerError::Unreachable(format!(
            "cannot resolve {host}: {e}"
        ))),
        Err(_) => Err(TrackerError::Unreachable(format!(
            "resolving {host} took over {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// An HTTP or HTTPS announce: connect to the first of `addrs` that answers (at most four tried),
/// then one exchange, inside TLS for https.
async fn http<N: Net>(
    net: &N,
    addrs: &[SocketAddr],
    tracker: &TrackerUrl,
    request: &AnnounceRequest,
    tls: &Arc<ClientConfig>,
) -> Result<AnnounceResponse, TrackerError> {
    let mut last_error = None;
    let mut stream = None;
    for &addr in addrs.iter().take(4) {
        match tokio::time::timeout(CONNECT_TIMEOUT, net.connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_error = Some(format!("{addr}: {e}")),
            Err(_) => last_error = Some(format!("{addr}: no answer to connect in 10 s")),
        }
    }
    let Some((reader, writer)) = stream else {
        return Err(TrackerError::Unreachable(
            last_error.unwrap_or_else(|| "no address".into()),
        ));
    };
    let stream = tokio::io::join(reader, writer);
    if tracker.scheme() == Scheme::Https {
        let stream = tls::handshake(tls, tracker, stream).await?;
        exchange(stream, tracker, request).await
    } else {
        exchange(stream, tracker, request).await
    }
}

/// Writes the announce request on `stream` and reads the answer until it is complete or the
/// tracker closes the connection.
async fn exchange<S>(
    mut stream: S,
    tracker: &TrackerUrl,
    request: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bytes = http_get_request(tracker, &announce_path_and_query(tracker, request));
    let sent = match stream.write_all(&bytes).await {
        Ok(()) => stream.flush().await,
        Err(e) => Err(e),
    };
    sent.map_err(|e| TrackerError::Unreachable(format!("sending the announce: {e}")))?;
    let mut response = HttpResponseReader::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !response.is_complete() {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => response.feed(&buf[..n]),
            // A TLS tracker that closes without close_notify (common) ends the answer like a TCP
            // close; a body cut short still fails the reader's length check or the bencode parse.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(TrackerError::Unreachable(format!(
                    "reading the answer: {e}"
                )));
            }
        }
    }
    announce_response_from_http(&response.finish()?)
}

async fn udp<N: Net>(
    net: &N,
    clock: Clock,
    addr: SocketAddr,
    request: AnnounceRequest,
    cached: Option<UdpConnection>,
    rng: &mut Rng,
) -> (
    Result<AnnounceResponse, TrackerError>,
    Option<UdpConnection>,
) {
    let unreachable = |e: std::io::Error| TrackerError::Unreachable(format!("{addr}: {e}"));
    let socket = match net.udp_connect(addr).await {
        Ok(s) => s,
        Err(e) => return (Err(unreachable(e)), None),
    };
    let mut machine = UdpAnnounce::new(UDP_CONFIG, addr, request, cached, rng, clock.now());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(datagram) = machine.poll_transmit() {
            if let Err(e) = socket.send(&datagram).await {
                return (Err(unreachable(e)), machine.connection());
            }
        }
        if let Some(result) = machine.poll_result() {
            return (result, machine.connection());
        }
        let Some(deadline) = machine.poll_timeout() else {
            // Cannot happen (a timer runs until the result); end rather than wait forever.
            return (Err(TrackerError::Timeout), machine.connection());
        };
        tokio::select! {
            biased;
            received = socket.recv(&mut buf) => match received {
                Ok(n) => machine.handle_datagram(clock.now(), &buf[..n]),
                Err(e) => return (Err(unreachable(e)), machine.connection()),
            },
            _ = tokio::time::sleep_until(clock.deadline(deadline)) => {
                machine.handle_timeout(clock.now());
            }
        }
    }
}
