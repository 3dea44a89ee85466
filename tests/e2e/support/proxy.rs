//! A CONNECT proxy on loopback port 0 that records every tunnel it opens, so a test can
//! prove traffic went through it (or, for `NO_PROXY`, that it did not). It can require
//! Basic credentials (407 when they are missing or wrong) or refuse every CONNECT with a
//! fixed status.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vcs_agent::http1;

#[derive(Clone, Default)]
pub struct Policy {
    /// `user:password` that must arrive in `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
    /// Answer every CONNECT with this status instead of opening a tunnel.
    pub refuse_with: Option<u16>,
}

#[derive(Default)]
struct Log {
    /// Targets of tunnels opened.
    tunnels: Mutex<Vec<String>>,
    /// Every CONNECT, with the status it got.
    attempts: Mutex<Vec<(String, u16)>>,
    changed: Condvar,
}

pub struct ConnectProxy {
    pub addr: SocketAddr,
    log: Arc<Log>,
}

impl ConnectProxy {
    pub fn start(policy: Policy) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let log = Arc::new(Log::default());
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let l = Arc::clone(&l);
                let policy = policy.clone();
                std::thread::spawn(move || handle(conn, &policy, &l));
            }
        });
        ConnectProxy { addr, log }
    }

    /// `http://127.0.0.1:port`, or with `user:password@` when given.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn tunnels(&self) -> Vec<String> {
        self.log
            .tunnels
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    pub fn attempts(&self) -> Vec<(String, u16)> {
        self.log
            .attempts
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Waits until a tunnel to `target` was opened.
    pub fn wait_for_tunnel(&self, target: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.log.tunnels.lock().expect("log");
        while !guard.iter().any(|t| t == target) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no tunnel to {target}; tunnels: {:?}",
                *guard
            );
            guard = self.log.changed.wait_timeout(guard, left).expect("log").0;
        }
    }
}

fn record_attempt(log: &Log, target: &str, status: u16) {
    if let Ok(mut a) = log.attempts.lock() {
        a.push((target.to_string(), status));
    }
    if status == 200 {
        if let Ok(mut t) = log.tunnels.lock() {
            t.push(target.to_string());
        }
    }
    log.changed.notify_all();
}

fn handle(conn: TcpStream, policy: &Policy, log: &Log) {
    let mut reader = BufReader::new(conn);
    let Ok(head) = http1::read_request_head(&mut reader) else {
        return;
    };
    let target = head.target.clone();
    let answer = |reader: &mut BufReader<TcpStream>, status: u16, extra: &str| {
        let reason = match status {
            200 => "Connection established",
            407 => "Proxy Authentication Required",
            403 => "Forbidden",
            405 => "Method Not Allowed",
            _ => "Bad Gateway",
        };
        let _ = write!(
            reader.get_mut(),
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        let _ = reader.get_mut().flush();
    };
    if head.method != "CONNECT" {
        record_attempt(log, &format!("{} {target}", head.method), 405);
        return answer(&mut reader, 405, "");
    }
    if let Some(status) = policy.refuse_with {
        record_attempt(log, &target, status);
        return answer(&mut reader, status, "");
    }
    if let Some(credentials) = &policy.credentials {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        if head.header("proxy-authorization") != Some(expected.as_str()) {
            record_attempt(log, &target, 407);
            return answer(
                &mut reader,
                407,
                "Proxy-Authenticate: Basic realm=\"test\"\r\n",
            );
        }
    }
    let Ok(upstream) = TcpStream::connect(&target) else {
        record_attempt(log, &target, 502);
        return answer(&mut reader, 502, "");
    };
    record_attempt(log, &target, 200);
    answer(&mut reader, 200, "");
    // Bytes the client sent after the head (none, usually) go first.
    let early = reader.buffer().to_vec();
    let client = reader.into_inner();
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    if upstream_write.write_all(&early).is_err() {
        return;
    }
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match upstream_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client_write.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}
