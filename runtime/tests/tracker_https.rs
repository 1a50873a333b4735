//! HTTPS announces over loopback: a tokio-rustls tracker whose certificate comes from a test CA
//! answers through `announce_with_tls` when that CA is trusted; with Mozilla's roots only, or a
//! certificate for another name, the announce fails with an `Unreachable` that says why.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bt_protocol::metainfo::InfoHash;
use bt_protocol::rng::Rng;
use bt_protocol::tracker::{AnnounceRequest, Event, TrackerError, TrackerUrl};
use bt_protocol::wire::PeerId;
use bt_runtime::net::TokioNet;
use bt_runtime::tls;
use bt_runtime::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use bt_runtime::tls::rustls::{self, ServerConfig};
use bt_runtime::tracker::{Announced, Clock, announce, announce_with_tls};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The peer the tracker hands out: 10.1.2.3:6881.
const PEER: [u8; 6] = [10, 1, 2, 3, 0x1a, 0xe1];

/// Every test is over in this time, or fails.
const TEST_BOUND: Duration = Duration::from_secs(15);

/// A test CA and a tracker certificate it signed for `names`.
struct Certs {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn certs(names: &[&str]) -> Certs {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bt test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Certs {
        ca: ca.der().clone(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// Starts a TLS tracker on 127.0.0.1 that answers every announce with [`PEER`]; returns its
/// address and the request heads it has read.
async fn tracker(certs: &Certs) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.chain.clone(), certs.key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let requests = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // A refused handshake (the client does not trust us) just ends that connection.
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            requests
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let mut body = b"d8:intervali1800e5:peers6:".to_vec();
            body.extend_from_slice(&PEER);
            body.push(b'e');
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(&body);
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
        }
    });
    (addr, seen)
}

fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0xab; 20]),
        peer_id: PeerId(*b"-BT0100-123456789012"),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event: Event::Started,
        numwant: Some(50),
        key: 7,
        tracker_id: None,
    }
}

fn url(addr: SocketAddr) -> TrackerUrl {
    TrackerUrl::parse(&format!("https://{addr}/announce")).unwrap()
}

/// The announce error, or a panic naming what came instead.
fn unreachable_reason(announced: Announced) -> String {
    match announced.result {
        Err(TrackerError::Unreachable(reason)) => reason,
        other => panic!("expected an Unreachable error, got {other:?}"),
    }
}

/// Trusting the test CA, the announce gets the tracker's peer, and the tracker saw a BEP 3 GET.
#[tokio::test]
async fn announce_over_tls_with_trusted_root() {
    let certs = certs(&["localhost", "127.0.0.1"]);
    let (addr, seen) = tracker(&certs).await;
    let config = tls::config_with_extra_roots([certs.ca.clone()]).unwrap();
    let mut rng = Rng::new(1);
    let announced = tokio::time::timeout(
        TEST_BOUND,
        announce_with_tls(
            &TokioNet,
            Clock::start(),
            &url(addr),
            request(),
            |_| None,
            &mut rng,
            &config,
        ),
    )
    .await
    .expect("the announce ends within the bound");
    let response = announced.result.expect("the announce succeeds");
    assert_eq!(response.peers, vec!["10.1.2.3:6881".parse().unwrap()]);
    assert_eq!(response.interval, Duration::from_secs(1800));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    assert!(
        seen[0].starts_with("GET /announce?info_hash="),
        "request: {:?}",
        seen[0]
    );
}

/// With only Mozilla's roots (what `announce` uses), the test CA's certificate is not trusted,
/// and the error says so.
#[tokio::test]
async fn untrusted_certificate_is_reported() {
    let certs = certs(&["localhost", "127.0.0.1"]);
    let (addr, seen) = tracker(&certs).await;
    let mut rng = Rng::new(2);
    let announced = tokio::time::timeout(
        TEST_BOUND,
        announce(
            &TokioNet,
            Clock::start(),
            &url(addr),
            request(),
            |_| None,
            &mut rng,
        ),
    )
    .await
    .expect("the announce ends within the bound");
    let reason = unreachable_reason(announced);
    assert!(
        reason.starts_with("TLS handshake with 127.0.0.1 failed: "),
        "{reason}"
    );
    assert!(reason.contains("certificate is not trusted"), "{reason}");
    assert!(seen.lock().unwrap().is_empty(), "no request sent in clear");
}

/// A trusted certificate for another name is refused too, and the error names the mismatch.
#[tokio::test]
async fn certificate_for_another_name_is_reported() {
    let certs = certs(&["tracker.example"]);
    let (addr, _) = tracker(&certs).await;
    let config = tls::config_with_extra_roots([certs.ca.clone()]).unwrap();
    let mut rng = Rng::new(3);
    let announced = tokio::time::timeout(
        TEST_BOUND,
        announce_with_tls(
            &TokioNet,
            Clock::start(),
            &url(addr),
            request(),
            |_| None,
            &mut rng,
            &config,
        ),
    )
    .await
    .expect("the announce ends within the bound");
    let reason = unreachable_reason(announced);
    assert!(reason.starts_with("TLS handshake with 127.0.0.1 failed: "));
    assert!(
        reason.contains("another name") && reason.contains("tracker.example"),
        "{reason}"
    );
}
