//! TLS test support: a private CA made with rcgen at test time (no key is committed), server
//! certificates that are valid, expired or for the wrong name, a minimal HTTPS upstream
//! that records what it receives, and helpers to start a TLS gateway and talk to it.

use super::{Gateway, TempDir};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vcs_agent::http1;
use vcs_agent::net::Stream;

/// A private certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, in PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca cert"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA bundle base64-encoded, as `SPACELIFT_VCS_AGENT_CA_CERT` takes it.
    pub fn base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.pem())
    }

    /// Writes the CA to `dir/ca.pem` and returns the path.
    pub fn write(&self, dir: &TempDir) -> PathBuf {
        let path = dir.0.join("ca.pem");
        std::fs::write(&path, self.pem()).expect("write ca");
        path
    }

    /// A certificate for `names` (host names or IP addresses), valid now.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.sign(names, false)
    }

    /// A certificate for `names` that expired long ago.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.sign(names, true)
    }

    fn sign(&self, names: &[&str], expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "test server");
        if expired {
            params.not_before = date_time_ymd(2001, 1, 1);
            params.not_after = date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// Writes `dir/<name>.crt` and `dir/<name>.key`.
    pub fn write(&self, dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.0.join(format!("{name}.crt"));
        let key = dir.0.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    pub fn server_config(&self, dir: &TempDir, name: &str) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.write(dir, name);
        vcs_agent::net::tls::server_config(&cert, &key).expect("server config")
    }
}

/// A gateway whose agent port (and, with `api_tls`, api port) serves `leaf`.
pub fn start_tls_gateway(leaf: &Leaf, api_tls: bool) -> Gateway {
    let dir = TempDir::new("gw-tls");
    let (cert, key) = leaf.write(&dir, "gateway");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
    if api_tls {
        args.extend(["--api-tls-cert", &cert, "--api-tls-key", &key]);
    }
    Gateway::start_in(dir, "127.0.0.1:0", "127.0.0.1:0", &args)
}

/// The agent port's port number.
pub fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}

/// An HTTP client trusting only `ca`.
pub fn https_client(ca: &Ca) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let der = ca.issuer.der().to_vec();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&[
                    Certificate::from_der(&der).to_owned()
                ]))
                .build(),
        )
        .build()
        .into()
}

/// A minimal HTTPS upstream: answers every request with 200 and a JSON body naming the
/// target, and records each request target. Handshakes the agent refuses just end.
pub struct HttpsUpstream {
    pub addr: SocketAddr,
    targets: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl HttpsUpstream {
    pub fn start(config: Arc<rustls::ServerConfig>) -> HttpsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind https upstream");
        let addr = listener.local_addr().expect("addr");
        let targets: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let t = Arc::clone(&targets);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    let Ok(tls) = vcs_agent::net::tls::accept(config, tcp, Duration::from_secs(10))
                    else {
                        return;
                    };
                    let mut conn = BufReader::new(Stream::TlsServer(Box::new(tls)));
                    while let Ok(head) = http1::read_request_head(&mut conn) {
                        {
                            let (lock, cv) = &*t;
                            lock.lock().expect("targets").push(head.target.clone());
                            cv.notify_all();
                        }
                        let body =
                            serde_json::json!({ "tls": true, "target": head.target }).to_string();
                        let out = conn.get_mut();
                        let written = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .and_then(|_| out.flush());
                        if written.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpsUpstream { addr, targets }
    }

    /// `https://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Waits until `n` requests arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.targets;
        let mut guard = lock.lock().expect("targets");
        while guard.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "https upstream saw {} requests",
                guard.len()
            );
            guard = cv.wait_timeout(guard, left).expect("targets").0;
        }
        guard.clone()
    }
}
