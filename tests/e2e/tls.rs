//! TLS end to end: agent ↔ gateway over `wss://` and agent ↔ VCS over `https://`, with a
//! private CA made in the test; refused certificates say what to do.

use crate::support;

use std::time::Duration;
use support::tls::*;
use support::upstream::{echo_pattern, Digest, PatternReader, Upstream};
use support::*;

/// An allowlisted GitLab path (archive download).
const PATH: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

const CA_CERT: &str = "SPACELIFT_VCS_AGENT_CA_CERT";
const CA_CERT_FILE: &str = "SPACELIFT_VCS_AGENT_CA_CERT_FILE";

#[test]
fn agent_dials_a_tls_gateway_trusting_a_private_ca() {
    let ca = Ca::new("Gateway Test CA");
    let gateway = start_tls_gateway(&ca.leaf(&["localhost", "127.0.0.1"]), false);
    gateway
        .proc
        .out
        .wait_for("agent port serves TLS", Duration::from_secs(5));
    let token = gateway.create_pool_for("wss", &format!("wss://{}", gateway.agent_addr));
    let upstream = Upstream::start();
    let dir = TempDir::new("ca");
    let ca_file = ca.write(&dir);
    let agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[(CA_CERT_FILE, &ca_file.display().to_string())],
    ));
    gateway.wait_streams("wss", 2);
    let response = client().get(gateway.url("wss", PATH)).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
    assert!(
        agent.out.text().contains("custom CAs"),
        "{}",
        agent.out.text()
    );
    assert!(agent.out.text().contains("is dialed over TLS, directly"));

    // Bodies stream both ways through the TLS WebSocket, many messages each.
    let len = 6 * 1024 * 1024 + 5;
    let archive = "/api/v4/projects/group%2Frepo/repository/archive";
    let r = client()
        .get(gateway.url("wss", &format!("{archive}?do=bytes&n={len}")))
        .call()
        .unwrap();
    let got = Digest::of_reader(r.into_body().into_reader()).unwrap();
    let want = Digest::of_reader(PatternReader { pos: 0, len }).unwrap();
    assert_eq!((got.0, got.1), (want.0, want.1));
    let upload = client().post(gateway.url(
        "wss",
        "/api/v4/projects/group%2Frepo/statuses/0123abc?do=echo",
    ));
    echo_pattern(upload, len, "an upload through the TLS WebSocket");
}

#[test]
fn api_port_serves_tls_too() {
    let ca = Ca::new("Api Test CA");
    let gateway = start_tls_gateway(&ca.leaf(&["localhost", "127.0.0.1"]), true);
    let token = gateway.create_pool_for(
        "apitls",
        &format!("wss://localhost:{}", port_of(&gateway.agent_addr)),
    );
    let upstream = Upstream::start();
    let _agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[(CA_CERT, &ca.base64())],
    ));
    let https = https_client(&ca);
    let health = format!("https://{}/healthz", gateway.api_addr);
    wait_until(Duration::from_secs(15), "2 streams over TLS", || {
        let (name, value) = gateway.admin_header();
        https
            .get(&health)
            .header(name, value)
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pools"]["apitls"]["streams"].as_u64())
            == Some(2)
    });
    let url = format!("https://{}/private/apitls{PATH}", gateway.api_addr);
    let (name, value) = gateway.caller_header();
    let response = https.get(&url).header(name, value).call().unwrap();
    assert_eq!(response.status(), 200);
    // Plain HTTP on the TLS port gets nowhere.
    assert!(client()
        .get(format!("http://{}/healthz", gateway.api_addr))
        .call()
        .is_err());
}

#[test]
fn untrusted_gateway_certificate_is_refused_with_a_hint() {
    let ca = Ca::new("Unknown CA");
    let gateway = start_tls_gateway(&ca.leaf(&["127.0.0.1"]), false);
    let token = gateway.create_pool_for("untrusted", &format!("wss://{}", gateway.agent_addr));
    let agent = start_agent(&agent_env(&token, "http://127.0.0.1:9", &[]));
    let line = agent
        .out
        .wait_for("cannot reach the gateway", Duration::from_secs(15));
    assert!(
        line.contains(&format!("the certificate of the gateway at {} is not trusted: add its CA with SPACELIFT_VCS_AGENT_CA_CERT or SPACELIFT_VCS_AGENT_CA_CERT_FILE", gateway.agent_addr)),
        "{line}"
    );
    assert_eq!(gateway.pool_state("untrusted").1, 0);
}

#[test]
fn gateway_certificate_for_another_name_is_refused() {
    let ca = Ca::new("Name CA");
    let gateway = start_tls_gateway(&ca.leaf(&["gateway.example"]), false);
    let token = gateway.create_pool_for("wrongname", &format!("wss://{}", gateway.agent_addr));
    let agent = start_agent(&agent_env(
        &token,
        "http://127.0.0.1:9",
        &[(CA_CERT, &ca.base64())],
    ));
    let line = agent
        .out
        .wait_for("cannot reach the gateway", Duration::from_secs(15));
    assert!(line.contains("does not match its name"), "{line}");
}

#[test]
fn insecure_dial_turns_a_wss_token_into_plain_ws() {
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool_for("insecure", &format!("wss://{}", gateway.agent_addr));
    let upstream = Upstream::start();
    let _agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_DIAL_INSECURE", "true")],
    ));
    gateway.wait_streams("insecure", 2);
}

/// A plain gateway and an agent whose VCS is `target`, with `extra` variables.
fn vcs_setup(pool: &str, target: &str, extra: &[(&str, &str)]) -> (Gateway, Proc) {
    let gateway = Gateway::start(&[]);
    let agent = gateway.agent_for(pool, target, extra, 2);
    (gateway, agent)
}

#[test]
fn https_vcs_with_a_ca_from_either_variable() {
    let ca = Ca::new("VCS CA");
    let dir = TempDir::new("vcs-tls");
    let vcs = HttpsUpstream::start(ca.leaf(&["127.0.0.1"]).server_config(&dir, "vcs"));
    let ca_file = ca.write(&dir).display().to_string();
    for (pool, variable, value) in [
        ("byvalue", CA_CERT, ca.base64()),
        ("byfile", CA_CERT_FILE, ca_file),
    ] {
        let before = vcs.targets().len();
        let (gateway, _agent) = vcs_setup(pool, &vcs.base(), &[(variable, &value)]);
        let response = client().get(gateway.url(pool, PATH)).call().unwrap();
        assert_eq!(response.status(), 200, "with {variable}");
        let body = response.into_body().read_to_string().unwrap();
        assert!(body.contains("\"tls\":true"), "{body}");
        assert_eq!(
            vcs.wait_for_requests(before + 1, Duration::from_secs(5))
                .len(),
            before + 1
        );
    }
}

/// The `error` of the JSON answer to a tunnel request against an HTTPS VCS serving `leaf`.
fn vcs_refusal(pool: &str, leaf: Leaf, ca: Option<&Ca>) -> (u16, String) {
    let dir = TempDir::new("vcs-bad");
    let vcs = HttpsUpstream::start(leaf.server_config(&dir, "vcs"));
    let extra = ca.map(|c| (CA_CERT, c.base64()));
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (gateway, _agent) = vcs_setup(pool, &vcs.base(), &extra);
    let (status, _kind, error) = error_kind(client().get(gateway.url(pool, PATH)).call().unwrap());
    assert!(
        vcs.targets().is_empty(),
        "no request may reach a refused server"
    );
    (status, error)
}

#[test]
fn untrusted_vcs_certificate_is_refused_with_a_hint() {
    let ca = Ca::new("Other CA");
    let (status, error) = vcs_refusal("vcsuntrusted", ca.leaf(&["127.0.0.1"]), None);
    assert_eq!(status, 502);
    assert!(error.contains("is not trusted: add its CA with SPACELIFT_VCS_AGENT_CA_CERT or SPACELIFT_VCS_AGENT_CA_CERT_FILE"), "{error}");
}

#[test]
fn expired_vcs_certificate_is_refused() {
    let ca = Ca::new("Expiry CA");
    let (status, error) = vcs_refusal("vcsexpired", ca.expired_leaf(&["127.0.0.1"]), Some(&ca));
    assert_eq!(status, 502);
    assert!(
        error.contains("has expired") && error.contains("renew"),
        "{error}"
    );
}

#[test]
fn vcs_certificate_for_another_name_is_refused() {
    let ca = Ca::new("Wrong Name CA");
    let (status, error) = vcs_refusal("vcsname", ca.leaf(&["git.example"]), Some(&ca));
    assert_eq!(status, 502);
    assert!(error.contains("does not match its name"), "{error}");
}

#[test]
fn bad_ca_input_exits_2_naming_the_variable() {
    let token = {
        let gateway = Gateway::start(&[]);
        gateway.create_pool("badca")
    };
    let dir = TempDir::new("badca");
    let empty = dir.0.join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let missing = dir.0.join("missing.pem");
    let cases = [
        (CA_CERT, "%%%not base64".to_string(), "not valid base64"),
        (CA_CERT, "aGVsbG8K".to_string(), "no certificate"),
        (CA_CERT_FILE, empty.display().to_string(), "no certificate"),
        (CA_CERT_FILE, missing.display().to_string(), "cannot read"),
    ];
    for (variable, value, problem) in cases {
        let mut agent = start_agent(&agent_env(
            &token,
            "http://127.0.0.1:9",
            &[(variable, &value)],
        ));
        let status = agent.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{variable}={value}");
        agent.out.wait_for(variable, Duration::from_secs(5));
        let text = agent.out.text();
        assert!(
            text.starts_with(&format!("{variable}: "))
                && text.contains(problem)
                && !text.contains('\n'),
            "{text:?}"
        );
    }
}

#[test]
fn system_store_honours_ssl_cert_file_and_falls_back_to_mozilla_roots() {
    let ca = Ca::new("System Store CA");
    let gateway = start_tls_gateway(&ca.leaf(&["127.0.0.1"]), false);
    let dir = TempDir::new("sslcertfile");
    let ca_file = ca.write(&dir).display().to_string();
    let upstream = Upstream::start();

    // SSL_CERT_FILE is the system store: the private CA is trusted without our variables.
    let token = gateway.create_pool_for("sslfile", &format!("wss://{}", gateway.agent_addr));
    let agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SSL_CERT_FILE", &ca_file)],
    ));
    gateway.wait_streams("sslfile", 2);
    assert!(agent.out.text().contains("1 CAs from the system store"));

    // An empty system store falls back to the bundled roots, custom CAs still added.
    let missing = dir.0.join("none.pem").display().to_string();
    let token = gateway.create_pool_for("fallback", &format!("wss://{}", gateway.agent_addr));
    let agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SSL_CERT_FILE", &missing), (CA_CERT, &ca.base64())],
    ));
    gateway.wait_streams("fallback", 2);
    assert!(
        agent.out.text().contains("bundled Mozilla roots"),
        "{}",
        agent.out.text()
    );
}
