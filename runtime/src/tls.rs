//! TLS for `https://` trackers: a rustls client (ring crypto, TLS 1.2 and 1.3) run over any byte
//! stream, here the two halves of a [`crate::net::Net`] connection joined into one.
//!
//! Trust: Mozilla's root certificates (webpki-roots, compiled in, so the result does not depend
//! on the machine's certificate store). [`default_config`] builds that client config once per
//! process and shares it; [`config_with_extra_roots`] adds roots of one's own (a private tracker's
//! CA, a test's). Every handshake failure becomes a [`TrackerError::Unreachable`] that says in
//! words what was wrong (certificate not trusted, expired, for another name, ...).

use std::io;
use std::sync::{Arc, OnceLock};

use bt_protocol::tracker::{TrackerError, TrackerUrl};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use rustls::pki_types::{CertificateDer, DnsName, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
/// The rustls these configs come from, for callers that build their own
/// ([`crate::tracker::announce_with_tls`] takes an `Arc<rustls::ClientConfig>`).
pub use tokio_rustls::rustls;

/// The client config for https trackers: Mozilla's roots, no client certificate. Built on first
/// use and shared by every announce after.
pub fn default_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(client_config(mozilla_roots())))
        .clone()
}

/// A client config that trusts Mozilla's roots and `extra_roots` too (DER certificates, each
/// used as a trust anchor). Fails when one of them cannot be parsed as a certificate.
pub fn config_with_extra_roots(
    extra_roots: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = mozilla_roots();
    for root in extra_roots {
        roots.add(root)?;
    }
    Ok(Arc::new(client_config(roots)))
}

fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn client_config(roots: RootCertStore) -> ClientConfig {
    // The provider is named rather than taken from the process default, so a dependency that
    // enables another rustls provider cannot make the choice ambiguous.
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring's provider supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Runs a TLS client handshake over `stream` with `tracker`'s host as the server name (SNI and
/// the name the certificate must carry; an IP literal host must be in the certificate as an IP
/// address).
pub(crate) async fn handshake<S>(
    config: &Arc<ClientConfig>,
    tracker: &TrackerUrl,
    stream: S,
) -> Result<TlsStream<S>, TrackerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = tracker.host();
    let failed = |reason: String| {
        TrackerError::Unreachable(format!("TLS handshake with {host} failed: {reason}"))
    };
    let name = match tracker.ip() {
        Some(ip) => ServerName::IpAddress(ip.into()),
        None => ServerName::DnsName(
            DnsName::try_from(host.to_owned())
                .map_err(|_| failed(format!("{host} is not a name a certificate can carry")))?,
        ),
    };
    TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| failed(reason(&e, host)))
}

/// Says in words why a handshake failed, naming the usual causes so a user knows what to fix.
fn reason(error: &io::Error, host: &str) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof => "the tracker closed the connection".into(),
            _ => error.to_string(),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => "the certificate is not trusted (its issuer is \
                not a known certificate authority: self-signed, or a missing intermediate)"
                .into(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the certificate has expired ({certificate})")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the certificate is not valid yet; is the clock right? ({certificate})")
            }
            CertificateError::NotValidForName => {
                format!("the certificate is not valid for {host}")
            }
            CertificateError::NotValidForNameContext { .. } => {
                format!("the certificate is for another name ({certificate})")
            }
            CertificateError::Revoked => "the certificate has been revoked".into(),
            other => format!("the certificate was refused ({other})"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion => {
                format!("the tracker found no TLS version or cipher in common (alert {alert:?})")
            }
            AlertDescription::UnrecognisedName => {
                format!("the tracker does not serve the name {host} (alert {alert:?})")
            }
            _ => format!("the tracker ended the handshake (alert {alert:?})"),
        },
        rustls::Error::PeerIncompatible(_) => {
            format!("no TLS version or cipher in common with the tracker ({tls})")
        }
        other => other.to_string(),
    }
}
