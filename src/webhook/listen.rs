//! The agent's webhook listener: a thread that accepts, and a fixed set of worker threads
//! that each handle one webhook at a time (one request per connection). A connection that
//! finds every worker busy and the hand-over queue full is answered `503` by the accepting
//! thread at once, so a flood never grows memory: at most `concurrency` bodies, each at
//! most the size cap, are held (plus the parsed JSON of each while it is checked).
//!
//! Checked before anything leaves the network, in this order: `POST`; a `Content-Length`
//! (chunked bodies are answered `411`) within the cap (`413`, the body unread); the
//! vendor's event header naming a relayed event (`403`); a JSON body (`400`); Azure
//! DevOps' `eventType`; the project the payload names, held to the allowlist's project
//! regex (`403`). Only then is the event relayed ([`super::relay`]).

use super::events::{self, EventRule};
use super::frames::{self, Event, Outcome};
use super::settings::WebhookConfig;
use super::AccessLine;
use crate::agent::shared::Shared;
use crate::http1::{self, Framing, RequestHead};
use crate::net::Stream;
use crate::observe::tally::{self, Tally};
use log::{debug, info};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest one read or write with the VCS may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook's end on the agent: what the VCS is answered and what the log says.
struct Handled {
    status: u16,
    reason: Option<String>,
    event: String,
    rule: &'static str,
    project: String,
    saas_status: Option<u16>,
    bytes: u64,
}

impl Handled {
    fn refused(status: u16, reason: impl Into<String>) -> Handled {
        Handled {
            status,
            reason: Some(reason.into()),
            event: String::new(),
            rule: "-",
            project: String::new(),
            saas_status: None,
            bytes: 0,
        }
    }

    fn about(mut self, event: &str, rule: Option<&EventRule>) -> Handled {
        self.event = event.to_string();
        self.rule = rule.map_or("-", |r| r.description);
        self
    }
}

/// Starts the listener when it is configured; returns the address it listens on.
pub fn start(shared: &Arc<Shared>) -> std::io::Result<Option<SocketAddr>> {
    let Some(config) = shared.config.webhook.clone() else {
        return Ok(None);
    };
    let tls = match &config.tls {
        None => None,
        Some((cert, key)) => Some(crate::net::tls::server_config(cert, key).map_err(|e| {
            std::io::Error::other(format!("{}: {e}", super::settings::WEBHOOK_TLS_CERT))
        })?),
    };
    let listener = TcpListener::bind(config.listen).map_err(|e| {
        let (variable, address) = (super::settings::WEBHOOK_LISTEN, config.listen);
        std::io::Error::other(format!("{variable}: cannot listen on {address}: {e}"))
    })?;
    let address = listener.local_addr()?;
    info!(
        "webhook listener ({}, vendor {}, bodies up to {} bytes, {} at once) listening on {address}",
        if tls.is_some() { "https" } else { "http" },
        shared.config.vendor.as_str(),
        config.max_body,
        config.concurrency,
    );
    let refusals = Arc::new(Tally::new("webhook", "webhooks refused"));
    let (hand, take) = crossbeam_channel::bounded::<TcpStream>(config.concurrency);
    for index in 0..config.concurrency {
        let (shared, take, tls) = (Arc::clone(shared), take.clone(), tls.clone());
        let (config, refusals) = (config.clone(), Arc::clone(&refusals));
        std::thread::Builder::new()
            .name(format!("webhook-{index}"))
            .spawn(move || {
                for tcp in take {
                    serve(&shared, &config, tls.clone(), tcp, &refusals);
                }
            })?;
    }
    let flusher = Arc::clone(&refusals);
    std::thread::Builder::new()
        .name("webhook-tally".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            flusher.flush();
        })?;
    std::thread::Builder::new()
        .name("webhook-listen".into())
        .spawn(move || accept_loop(&listener, &hand, &refusals))?;
    Ok(Some(address))
}

fn accept_loop(
    listener: &TcpListener,
    hand: &crossbeam_channel::Sender<TcpStream>,
    refusals: &Tally,
) {
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        if let Err(crossbeam_channel::TrySendError::Full(mut tcp)) = hand.try_send(tcp) {
            if let Ok(peer) = tcp.peer_addr() {
                refusals.count(tally::Event {
                    reason: "too many webhooks at once",
                    address: peer.ip(),
                    pool: "-",
                    example: &|| format!("{peer}: every worker busy"),
                });
            }
            let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
            let body = b"too many webhooks at once; redeliver later\n";
            let _ = http1::write_simple(&mut tcp, 503, "text/plain", body, false);
        }
    }
}

/// One connection, one webhook.
fn serve(
    shared: &Shared,
    config: &WebhookConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    tcp: TcpStream,
    refusals: &Tally,
) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let started = Instant::now();
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => match crate::net::tls::accept(tls, tcp, IO_TIMEOUT) {
            Ok(tls) => Stream::TlsServer(Box::new(tls)),
            Err(e) => {
                debug!("{}", e.describe(&format!("webhook sender {peer}")));
                return;
            }
        },
    };
    let mut reader = BufReader::new(stream);
    let handled = handle(shared, config, &mut reader, started);
    let body = match &handled.reason {
        Some(reason) => format!("{reason}\n"),
        None => "delivered\n".to_string(),
    };
    let _ = http1::write_simple(
        reader.get_mut(),
        handled.status,
        "text/plain",
        body.as_bytes(),
        false,
    );
    if handled.saas_status.is_none() && handled.status != 502 && handled.status != 504 {
        refused(refusals, peer, &handled);
        return;
    }
    AccessLine {
        side: "agent",
        pool: &shared.config.token.pool_ulid,
        event: &handled.event,
        rule: handled.rule,
        project: &handled.project,
        status: handled.status,
        saas_status: handled.saas_status,
        bytes: handled.bytes,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        reason: handled.reason.as_deref(),
    }
    .log();
}

/// A webhook refused before it was relayed: counted, summed up in the log.
fn refused(refusals: &Tally, peer: SocketAddr, handled: &Handled) {
    let reason = handled.reason.as_deref().unwrap_or("refused");
    refusals.count(tally::Event {
        reason,
        address: peer.ip(),
        pool: "-",
        example: &|| {
            format!(
                "{peer} event=\"{}\" project={} status={}: {reason}",
                handled.event,
                if handled.project.is_empty() {
                    "-"
                } else {
                    &handled.project
                },
                handled.status
            )
        },
    });
}

fn handle(
    shared: &Shared,
    config: &WebhookConfig,
    reader: &mut BufReader<Stream>,
    started: Instant,
) -> Handled {
    let head = match http1::read_request_head(reader) {
        Ok(head) => head,
        Err(e) => return Handled::refused(400, e.to_string()),
    };
    if head.method != "POST" {
        return Handled::refused(
            405,
            format!("method {} is not allowed: webhooks are POST", head.method),
        );
    }
    let length = match head.framing() {
        Ok(Framing::Length(n)) => n,
        Ok(Framing::Empty) => return Handled::refused(400, "a webhook needs a JSON body"),
        Ok(Framing::Chunked) => {
            return Handled::refused(411, "send the body with a Content-Length")
        }
        Err(e) => return Handled::refused(400, e.to_string()),
    };
    if length > config.max_body {
        let cap = config.max_body;
        return Handled::refused(
            413,
            format!("the body of {length} bytes is over the cap of {cap} bytes"),
        );
    }
    let vendor = shared.config.vendor;
    let named = match events::event_header(vendor) {
        Some(header) => match head.header(header) {
            Some(name) => match events::rule(vendor, name) {
                Some(rule) => Some(rule),
                None => {
                    return Handled::refused(403, format!("event \"{name}\" is not relayed"))
                        .about(name, None)
                }
            },
            None => {
                return Handled::refused(
                    403,
                    format!("no {header} header: not a {} webhook", vendor.as_str()),
                )
            }
        },
        None => None,
    };
    if head.expects_continue() {
        let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut body = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    match reader.by_ref().take(length).read_to_end(&mut body) {
        Ok(n) if n as u64 == length => {}
        _ => return Handled::refused(400, "the body ended before its Content-Length"),
    }
    checked(shared, &head, named, body, started)
}

/// The body's checks (JSON, Azure's event, the project), then the relay.
fn checked(
    shared: &Shared,
    head: &RequestHead,
    named: Option<&'static EventRule>,
    body: Vec<u8>,
    started: Instant,
) -> Handled {
    let vendor = shared.config.vendor;
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Handled::refused(400, "the body is not JSON");
    };
    let rule = match named {
        Some(rule) => rule,
        None => {
            let name = json.get("eventType").and_then(|v| v.as_str()).unwrap_or("");
            match events::rule(vendor, name) {
                Some(rule) => rule,
                None if name.is_empty() => {
                    return Handled::refused(403, "the body names no eventType")
                }
                None => {
                    return Handled::refused(403, format!("event \"{name}\" is not relayed"))
                        .about(name, None)
                }
            }
        }
    };
    let project =
        match events::project_of(vendor, &json, &shared.allowlist, &shared.config.target.path) {
            Some(project) => project,
            None if rule.ping => String::new(),
            None => {
                return Handled::refused(403, "the payload names no project")
                    .about(rule.name, Some(rule))
            }
        };
    drop(json);
    if !project.is_empty() {
        if let Err(denied) = shared.allowlist.project_allowed(&project, None) {
            let mut handled = Handled::refused(403, denied.reason).about(rule.name, Some(rule));
            handled.project = project;
            return handled;
        }
    }
    let event = Event {
        vendor: vendor.as_str().to_string(),
        event: rule.name.to_string(),
        rule: rule.description.to_string(),
        project,
        headers: head
            .headers
            .iter()
            .filter(|(name, _)| frames::kept(name))
            .cloned()
            .collect(),
        length: body.len() as u64,
    };
    let outcome = super::relay::relay(shared, &event, &body, started + super::VCS_PATIENCE);
    answered(event, outcome, rule)
}

fn answered(event: Event, outcome: Outcome, rule: &'static EventRule) -> Handled {
    Handled {
        status: outcome.status,
        reason: outcome.reason,
        event: event.event,
        rule: rule.description,
        project: event.project,
        saas_status: outcome.saas_status,
        bytes: event.length,
    }
}
