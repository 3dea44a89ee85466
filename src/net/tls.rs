//! TLS for both programs with rustls and one crypto provider (`ring`): the agent's trust
//! store, the gateway's certificate, handshakes done on the connection's own thread, and
//! failures turned into one sentence that says what to do.
//!
//! Why one root list shared by both agent legs: a custom CA must work for the gateway (wss)
//! and the VCS (https) alike, which a peer project got wrong for a year. The list is the
//! system store (`rustls-native-certs`, so `SSL_CERT_FILE`/`SSL_CERT_DIR` apply), or the
//! Mozilla roots (`webpki-root-certs`) when the system has none (a scratch container), plus
//! the operator's CAs. Why handshakes are explicit rather than lazy inside the first read:
//! the handshake gets its own deadline, a slow client cannot hold an accept loop, and a
//! certificate problem is reported as such instead of as a broken WebSocket upgrade.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, ConnectionCommon, RootCertStore,
    ServerConfig, ServerConnection, StreamOwned,
};
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The variables that add CAs, named in every "not trusted" message.
pub(crate) const CA_HINT: &str =
    "add its CA with SPACELIFT_VCS_AGENT_CA_CERT or SPACELIFT_VCS_AGENT_CA_CERT_FILE";

/// The one crypto provider this program uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Extra CAs from the operator; `Debug` shows only how many.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct CustomCas(pub Vec<CertificateDer<'static>>);

impl fmt::Debug for CustomCas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomCas({} certificates)", self.0.len())
    }
}

/// Why a certificate, key or TLS configuration could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("not a valid PEM certificate bundle ({0})")]
    Bundle(rustls::pki_types::pem::Error),
    #[error("no certificate (-----BEGIN CERTIFICATE-----) in the PEM bundle")]
    EmptyBundle,
    #[error("not valid base64: expected a base64-encoded PEM bundle (base64 -w0 ca.pem)")]
    NotBase64,
    #[error("cannot read \"{path}\": {source}")]
    ReadBundle { path: String, source: io::Error },
    #[error("\"{path}\": {source}")]
    InBundle { path: String, source: Box<TlsError> },
    #[error("no usable CA certificate to trust")]
    NoUsableCa,
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
    #[error("{}: not a readable PEM certificate ({source})", .path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: not a readable PEM certificate chain ({source})", .path.display())]
    Chain {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no certificate in the file", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: not a readable PEM private key ({source})", .path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: not a usable CA certificate ({source})", .path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: {source}", .path.display())]
    ClientVerifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{} and {} do not form a usable certificate and key: {source}", .cert.display(), .key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Every certificate in a PEM bundle; an error when there is none or one is malformed.
pub(crate) fn parse_pem_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Bundle)?;
    if certs.is_empty() {
        return Err(TlsError::EmptyBundle);
    }
    Ok(certs)
}

/// `SPACELIFT_VCS_AGENT_CA_CERT`: a base64-encoded PEM bundle (line breaks allowed).
pub(crate) fn decode_base64_bundle(text: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| TlsError::NotBase64)?;
    parse_pem_bundle(&pem)
}

/// `SPACELIFT_VCS_AGENT_CA_CERT_FILE`: a PEM bundle on disk.
pub(crate) fn read_bundle_file(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadBundle {
        path: path.to_string(),
        source,
    })?;
    parse_pem_bundle(&pem).map_err(|source| TlsError::InBundle {
        path: path.to_string(),
        source: Box::new(source),
    })
}

/// The CAs the agent trusts, for both legs.
#[derive(Clone)]
pub(crate) struct Roots {
    pub(crate) certs: Arc<Vec<CertificateDer<'static>>>,
    /// Where they came from, for the start-up log line.
    pub(crate) source: String,
}

impl Roots {
    /// The system store (or the bundled Mozilla roots when it is empty) plus `custom`.
    pub(crate) fn load(custom: &CustomCas) -> Roots {
        let native = rustls_native_certs::load_native_certs();
        for error in native.errors.iter().take(3) {
            log::debug!("system CA store: {error}");
        }
        let (mut certs, source) = if native.certs.is_empty() {
            (
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec(),
                "the bundled Mozilla roots (the system store is empty)".to_string(),
            )
        } else {
            let n = native.certs.len();
            (native.certs, format!("{n} CAs from the system store"))
        };
        let source = if custom.0.is_empty() {
            source
        } else {
            format!("{source} and {} custom CAs", custom.0.len())
        };
        certs.extend(custom.0.iter().cloned());
        Roots {
            certs: Arc::new(certs),
            source,
        }
    }

    /// A rustls client configuration trusting these roots.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(self.certs.iter().cloned());
        if added == 0 {
            return Err(TlsError::NoUsableCa);
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The gateway's certificate chain and key, from PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for_clients(cert_path, key_path, None)
}

/// The certificates of a PEM file, at least one.
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// [`server_config`] that also asks clients for a certificate issued by a CA of
/// `client_ca` (optional for the client: one without a certificate still connects, and is
/// then judged by what it sends).
pub fn server_config_for_clients(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Chain {
            path: cert_path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::Key {
        path: key_path.to_path_buf(),
        source,
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_certificates(ca)? {
                roots.add(cert).map_err(|source| TlsError::ClientCa {
                    path: ca.to_path_buf(),
                    source,
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|source| TlsError::ClientVerifier {
                path: ca.to_path_buf(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Pair {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    Tls(rustls::Error),
    Io(io::Error),
    Timeout,
    /// The peer closed the connection in the middle.
    Closed,
}

impl HandshakeError {
    /// One sentence about a handshake with `peer` (e.g. "the gateway at gw:443").
    pub(crate) fn describe(&self, peer: &str) -> String {
        match self {
            HandshakeError::Tls(e) => describe_tls_error(e, peer),
            HandshakeError::Io(e) => format!("TLS handshake with {peer} failed: {e}"),
            HandshakeError::Timeout => format!("TLS handshake with {peer} timed out"),
            HandshakeError::Closed => format!(
                "{peer} closed the connection during the TLS handshake: check that it serves TLS on that port"
            ),
        }
    }
}

/// The certificate problem in `error`, if that is what it is, in words that say what to do.
pub(crate) fn describe_tls_error(error: &rustls::Error, peer: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                format!("the certificate of {peer} is not trusted: {CA_HINT}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the certificate of {peer} does not match its name ({cert}): use the host name the certificate was issued for"
                )
            }
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the certificate of {peer} has expired (not valid after {}): renew it on that server",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(not_after.as_secs())
                )
            ),
            CertificateError::Expired => {
                format!("the certificate of {peer} has expired: renew it on that server")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the certificate of {peer} is not valid yet ({cert}): check this machine's clock"
            ),
            other => format!("the certificate of {peer} was refused: {other}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "{peer} did not answer with TLS ({error}): check that it serves TLS on that port"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("{peer} ended the TLS handshake with the alert {alert:?}")
        }
        other => format!("TLS with {peer} failed: {other}"),
    }
}

/// Finds a rustls error carried inside an I/O error (how rustls streams report them).
pub(crate) fn rustls_error_in(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Runs a handshake to the end within `timeout`, on the caller's thread.
fn drive<D>(
    conn: &mut ConnectionCommon<D>,
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<(), HandshakeError> {
    let deadline = Instant::now() + timeout;
    let old_read = tcp.read_timeout().ok().flatten();
    let old_write = tcp.write_timeout().ok().flatten();
    let result = (|| {
        while conn.is_handshaking() || conn.wants_write() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeError::Timeout);
            }
            let _ = tcp.set_read_timeout(Some(left));
            let _ = tcp.set_write_timeout(Some(left));
            if conn.wants_write() {
                conn.write_tls(tcp).map_err(io_error)?;
                continue;
            }
            if !conn.is_handshaking() {
                break;
            }
            match conn.read_tls(tcp) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(_) => {}
                Err(e) => return Err(io_error(e)),
            }
            if let Err(e) = conn.process_new_packets() {
                // Tell the peer why (the alert rustls queued), then give up.
                while conn.wants_write() {
                    if conn.write_tls(tcp).is_err() {
                        break;
                    }
                }
                return Err(HandshakeError::Tls(e));
            }
        }
        Ok(())
    })();
    let _ = tcp.set_read_timeout(old_read);
    let _ = tcp.set_write_timeout(old_write);
    result
}

fn io_error(e: io::Error) -> HandshakeError {
    if super::stream::is_timeout(&e) {
        HandshakeError::Timeout
    } else {
        HandshakeError::Io(e)
    }
}

/// Client side: TLS to `host` over `tcp`, the handshake finished before returning.
pub(crate) fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
    timeout: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, HandshakeError> {
    let name = ServerName::try_from(host.to_string()).map_err(|_| {
        HandshakeError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("\"{host}\" is not a valid TLS server name"),
        ))
    })?;
    let mut conn = ClientConnection::new(config, name).map_err(HandshakeError::Tls)?;
    drive(&mut conn, &mut tcp, timeout)?;
    Ok(StreamOwned::new(conn, tcp))
}

/// Server side: the handshake of an accepted connection, on that connection's thread.
pub fn accept(
    config: Arc<ServerConfig>,
    mut tcp: TcpStream,
    timeout: Duration,
) -> Result<StreamOwned<ServerConnection, TcpStream>, HandshakeError> {
    let mut conn = ServerConnection::new(config).map_err(HandshakeError::Tls)?;
    drive(&mut conn, &mut tcp, timeout)?;
    Ok(StreamOwned::new(conn, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_inputs_are_refused() {
        assert!(matches!(
            decode_base64_bundle("!!!"),
            Err(TlsError::NotBase64)
        ));
        use base64::Engine;
        let no_cert = base64::engine::general_purpose::STANDARD.encode("hello");
        assert!(matches!(
            decode_base64_bundle(&no_cert),
            Err(TlsError::EmptyBundle)
        ));
        let missing = read_bundle_file("/nonexistent/ca.pem").unwrap_err();
        assert!(matches!(missing, TlsError::ReadBundle { .. }));
        assert!(missing
            .to_string()
            .starts_with("cannot read \"/nonexistent/ca.pem\": "));
    }

    fn self_signed(dir: &Path) -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (server_config(&c, &k).unwrap(), cert.cert.der().clone())
    }

    #[test]
    fn handshakes_complete_and_silent_clients_time_out() {
        let dir = std::env::temp_dir().join(format!("vcs-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (server, ca) = self_signed(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();

        // A client that connects and says nothing is dropped at the deadline.
        let silent = TcpStream::connect(addr).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        let started = Instant::now();
        let result = accept(Arc::clone(&server), tcp, Duration::from_millis(200));
        assert!(matches!(result, Err(HandshakeError::Timeout)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(silent);

        // A real client completes, and bytes flow both ways.
        let roots = Roots {
            certs: Arc::new(vec![ca]),
            source: String::new(),
        };
        let client_config = roots.client_config().unwrap();
        let client = std::thread::spawn(move || {
            let tcp = TcpStream::connect(addr).unwrap();
            let mut tls = connect(client_config, "localhost", tcp, Duration::from_secs(5)).unwrap();
            use std::io::{Read, Write};
            tls.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).unwrap();
            buf
        });
        let (tcp, _) = listener.accept().unwrap();
        let mut tls = accept(server, tcp, Duration::from_secs(5)).unwrap();
        use std::io::{Read, Write};
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").unwrap();
        tls.flush().unwrap();
        assert_eq!(&client.join().unwrap(), b"pong");
    }

    #[test]
    fn messages_say_what_to_do() {
        let m = describe_tls_error(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "the gateway at gw:443",
        );
        assert!(m.contains("is not trusted") && m.contains("SPACELIFT_VCS_AGENT_CA_CERT_FILE"));
        let m = describe_tls_error(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            "x",
        );
        assert!(m.contains("expired"));
    }
}
