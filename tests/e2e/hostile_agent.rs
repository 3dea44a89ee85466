//! A pool key in the wrong hands must not reach callers' connections: the gateway checks
//! every answer head an agent sends before writing a byte of it.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;
use tungstenite::Message;
use vcs_agent::protocol::{self, Control, Frame};

/// A hand-written agent stream, authenticated with the pool's real key.
fn fake_agent(gateway: &Gateway, token: &str) -> tungstenite::WebSocket<TcpStream> {
    let token = vcs_agent::token::Token::decode(token).unwrap();
    let tcp = TcpStream::connect(&gateway.agent_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}{}", gateway.agent_addr, protocol::CONNECT_PATH);
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    let headers = request.headers_mut();
    for (name, value) in [
        (protocol::HEADER_POOL_ULID, token.pool_ulid.as_str()),
        (protocol::HEADER_KEY, token.key.expose()),
        (protocol::HEADER_PROTOCOL, protocol::PROTOCOL_VERSION),
        (protocol::HEADER_INSTANCE, "hostile"),
        (protocol::HEADER_VERSION, "0"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    tungstenite::client::client(request, tcp).unwrap().0
}

/// Sends one tunnel request on a raw connection and returns everything the gateway wrote.
fn call(gateway: &Gateway) -> std::thread::JoinHandle<String> {
    let (api, auth) = (gateway.api_addr.clone(), gateway.auth_line());
    std::thread::spawn(move || {
        let mut conn = TcpStream::connect(api).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let request = format!(
            "GET /private/evil/api/v4/user HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
}

fn next_request(agent: &mut tungstenite::WebSocket<TcpStream>) -> String {
    loop {
        let message = agent.read().unwrap();
        match protocol::decode(&message).unwrap() {
            Some(Frame::Control(Control::Request { id, .. })) => return id.into_owned(),
            Some(_) | None => continue,
        }
    }
}

/// A fake agent stream of pool `evil` given one caller's request: the stream, the caller
/// (its answer when joined) and an answer head for that request with `status`, `headers`
/// and `body`, for the test to send.
fn forge(
    gateway: &Gateway,
    token: &str,
    status: u16,
    headers: protocol::HeaderPairs<'static>,
    body: bool,
) -> (
    tungstenite::WebSocket<TcpStream>,
    std::thread::JoinHandle<String>,
    Message,
) {
    let mut agent = fake_agent(gateway, token);
    gateway.wait_streams("evil", 1);
    let caller = call(gateway);
    let id = next_request(&mut agent);
    let head = Control::Response {
        id: id.into(),
        status,
        headers,
        body,
        rule: None,
        project: None,
    };
    (agent, caller, head.to_message())
}

#[test]
fn forged_answer_heads_never_reach_the_caller() {
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("evil");
    let forged: Vec<(u16, protocol::HeaderPairs)> = vec![
        (
            200,
            vec![("X-Evil".into(), "a\r\nSet-Cookie: pwned=1".into())],
        ),
        (200, vec![("Bad Name".into(), "pwned".into())]),
        (101, vec![("Upgrade".into(), "pwned".into())]),
        (700, vec![("X-Evil".into(), "pwned".into())]),
        (
            200,
            vec![
                ("Content-Length".into(), "5".into()),
                ("Content-Length".into(), "500".into()),
                ("X-Evil".into(), "pwned".into()),
            ],
        ),
    ];
    for (status, headers) in forged {
        let (mut agent, caller, head) = forge(&gateway, &token, status, headers, false);
        agent.send(head).unwrap();
        let answer = caller.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 502"),
            "status {status}: {answer}"
        );
        assert!(answer.contains("agent_lost"), "{answer}");
        assert!(
            !answer.contains("pwned"),
            "forged bytes reached the caller: {answer}"
        );
        gateway.wait_streams("evil", 0);
    }
    // A body for a status that has none (204 claiming a body) is refused, the stream dropped.
    let (mut agent, caller, head) = forge(&gateway, &token, 204, vec![], true);
    agent.write(head).unwrap();
    agent
        .send(Message::binary(
            b"HTTP/1.1 200 OK\r\nX-Smuggled: pwned\r\n\r\n".to_vec(),
        ))
        .unwrap();
    let answer = caller.join().unwrap();
    assert!(!answer.contains("pwned"), "{answer}");
    gateway.wait_streams("evil", 0);
    gateway
        .proc
        .out
        .wait_for("body for an answer without one", Duration::from_secs(5));
}

#[test]
fn hop_by_hop_headers_from_an_agent_never_reach_the_caller() {
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("evil");
    let headers: protocol::HeaderPairs = vec![
        ("Transfer-Encoding".into(), "chunked".into()),
        ("Content-Length".into(), "3".into()),
        ("Connection".into(), "x-leak".into()),
        ("X-Leak".into(), "pwned".into()),
        ("Keep-Alive".into(), "pwned".into()),
        ("Proxy-Authenticate".into(), "pwned".into()),
        ("X-Kept".into(), "yes".into()),
    ];
    let (mut agent, caller, head) = forge(&gateway, &token, 200, headers, true);
    agent.write(head).unwrap();
    agent.write(Message::binary(b"abc".to_vec())).unwrap();
    agent.send(Control::End.to_message()).unwrap();
    let answer = caller.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(
        !head.contains("pwned") && !head.contains("x-leak"),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(
        head.contains("content-length: 3") && head.contains("x-kept: yes"),
        "{head}"
    );
    assert_eq!(body, "abc");
}

/// The request frame's `front` is one more field: the gateway names the base URL the caller
/// used (the api port's scheme and the caller's `Host`), and an agent of an earlier version,
/// which reads only the fields it knows, is served as before.
#[test]
fn an_agent_that_knows_nothing_of_the_front_is_served_as_before() {
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("evil");
    let mut agent = fake_agent(&gateway, &token);
    gateway.wait_streams("evil", 1);
    let caller = call(&gateway);
    let text = loop {
        if let Message::Text(text) = agent.read().unwrap() {
            break text.to_string();
        }
    };
    let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(frame["front"], "http://x/private/evil", "{text}");
    for field in ["type", "id", "method", "target", "headers", "body"] {
        assert!(frame.get(field).is_some(), "{field} in {text}");
    }
    let head = serde_json::json!({
        "type": "response", "id": frame["id"], "status": 200, "body": true,
        "headers": [["Content-Type", "application/json"], ["Content-Length", "2"]],
    });
    agent.send(Message::text(head.to_string())).unwrap();
    agent.send(Message::binary(b"{}".to_vec())).unwrap();
    agent.send(Message::text(r#"{"type":"end"}"#)).unwrap();
    let answer = caller.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("{}"),
        "{answer}"
    );
}
