//! TLS to Electrum servers (`ssl://`), through rustls with ring: the build's
//! one crypto stack.
//!
//! Most public Electrum servers present a self-signed certificate, which no
//! authority vouches for; the Electrum wallets pin it. So does btt: with a
//! pinned certificate, the server must present exactly that certificate (its
//! handshake signature is still checked against it), and its name and dates
//! do not matter. Without a pin, the system's roots and the host name decide,
//! as in a browser.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, StreamOwned,
};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A TLS connection to a server, blocking, as the Electrum client reads it.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {msg}")]
    Cert { path: String, msg: String },
    #[error("{0}")]
    Connect(String),
    #[error(
        "its certificate is not signed by an authority this system trusts (a self-signed \
         certificate?): pin it with --electrum-cert FILE (the server's certificate, PEM)"
    )]
    Untrusted,
    #[error("its certificate is not the pinned certificate (--electrum-cert): the server changed it, or this is not the server")]
    NotPinned,
    #[error("its certificate is not valid for this host name ({0})")]
    WrongName(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The first certificate of a PEM file.
pub fn read_pin(path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_file(path).map_err(|e| TlsError::Cert {
        path: path.display().to_string(),
        msg: match e {
            rustls::pki_types::pem::Error::Io(e) => e.to_string(),
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM certificate in it".into(),
            e => e.to_string(),
        },
    })
}

/// Accepts exactly one certificate.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to `host:port` and completes the handshake, so that a refused
/// certificate is reported here, with its cause.
pub fn dial(
    host: &str,
    port: u16,
    pin: Option<&CertificateDer<'static>>,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Tls(e.to_string()))?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = match pin {
        Some(cert) => Arc::new(Pinned {
            cert: cert.clone(),
            provider: provider.clone(),
        }),
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| TlsError::Tls(format!("the system's roots: {e}")))?,
        ),
    };
    let config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::Connect(format!("{host:?} is not a host name")))?;
    let tcp = connect(host, port, timeout)?;
    let conn =
        ClientConnection::new(Arc::new(config), name).map_err(|e| TlsError::Tls(e.to_string()))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            return Err(handshake_error(e, pin.is_some()));
        }
    }
    Ok(s)
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, TlsError> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| TlsError::Connect(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let set = s
                    .set_read_timeout(Some(timeout))
                    .and_then(|_| s.set_write_timeout(Some(timeout)));
                set.map_err(|e| TlsError::Connect(e.to_string()))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(TlsError::Connect(match last {
        Some(e) => e.to_string(),
        None => format!("{host} has no address"),
    }))
}

fn handshake_error(e: std::io::Error, pinned: bool) -> TlsError {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return TlsError::Connect(e.to_string());
    };
    match tls {
        rustls::Error::InvalidCertificate(_) if pinned => TlsError::NotPinned,
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsError::WrongName(tls.to_string())
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
            | CertificateError::Revoked => TlsError::Tls(tls.to_string()),
            // Unknown issuer, a CA certificate as the server's own (what
            // `openssl req -x509` makes), a bad signature: nobody vouches for it.
            _ => TlsError::Untrusted,
        },
        other => TlsError::Tls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_a_certificate_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = read_pin(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = read_pin(&d.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn refusals_name_their_cause() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let unknown = || rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(matches!(
            handshake_error(io(unknown()), false),
            TlsError::Untrusted
        ));
        assert!(matches!(
            handshake_error(io(unknown()), true),
            TlsError::NotPinned
        ));
        let self_signed = rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(std::io::Error::other("CaUsedAsEndEntity"))),
        ));
        assert!(matches!(
            handshake_error(io(self_signed), false),
            TlsError::Untrusted
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            handshake_error(refused, false),
            TlsError::Connect(_)
        ));
    }
}
