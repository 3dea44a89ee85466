//! Proxies end to end: both agent legs through a recording CONNECT proxy on loopback, with
//! and without credentials, together with a custom CA, and `NO_PROXY` bypassing it.

use crate::support;

use std::time::Duration;
use support::proxy::{ConnectProxy, Policy};
use support::tls::*;
use support::upstream::Upstream;
use support::*;

/// An allowlisted GitLab path (archive download).
const PATH: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

#[test]
fn both_legs_go_through_the_proxy() {
    let proxy = ConnectProxy::start(Policy::default());
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start("proxied", &[("http_proxy", &proxy.url(None))]);
    proxy.wait_for_tunnel(&gateway.agent_addr, Duration::from_secs(5));
    let response = client().get(gateway.url("proxied", PATH)).call().unwrap();
    assert_eq!(response.status(), 200);
    proxy.wait_for_tunnel(&upstream.addr.to_string(), Duration::from_secs(5));
}

#[test]
fn tls_legs_through_an_authenticating_proxy_with_a_custom_ca() {
    let proxy = ConnectProxy::start(Policy {
        credentials: Some("agent:s3cr3t/pw".into()),
        ..Policy::default()
    });
    let ca = Ca::new("Proxy Test CA");
    let dir = TempDir::new("proxy-tls");
    let vcs = HttpsUpstream::start(ca.leaf(&["127.0.0.1"]).server_config(&dir, "vcs"));
    let gateway = start_tls_gateway(&ca.leaf(&["127.0.0.1"]), false);
    let token = gateway.create_pool_for("tlsproxy", &format!("wss://{}", gateway.agent_addr));
    let agent = start_agent(&agent_env(
        &token,
        &vcs.base(),
        &[
            ("HTTPS_PROXY", &proxy.url(Some("agent:s3cr3t%2Fpw"))),
            ("SPACELIFT_VCS_AGENT_CA_CERT", &ca.base64()),
        ],
    ));
    gateway.wait_streams("tlsproxy", 2);
    let response = client().get(gateway.url("tlsproxy", PATH)).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(vcs.wait_for_requests(1, Duration::from_secs(5)).len(), 1);
    let tunnels = proxy.tunnels();
    assert!(tunnels.contains(&gateway.agent_addr), "{tunnels:?}");
    assert!(tunnels.contains(&vcs.addr.to_string()), "{tunnels:?}");
    assert!(
        !agent.out.text().contains("s3cr3t"),
        "the proxy password was logged"
    );
}

#[test]
fn missing_proxy_credentials_are_reported_with_407() {
    let proxy = ConnectProxy::start(Policy {
        credentials: Some("agent:pw".into()),
        ..Policy::default()
    });
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    // The gateway is reached as `localhost` and bypasses the proxy; the VCS (127.0.0.1) does not.
    let token = gateway.create_pool_for(
        "needauth",
        &format!("ws://localhost:{}", port_of(&gateway.agent_addr)),
    );
    let _agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("HTTP_PROXY", &proxy.url(None)), ("NO_PROXY", "localhost")],
    ));
    gateway.wait_streams("needauth", 2);
    let (status, _kind, error) =
        error_kind(client().get(gateway.url("needauth", PATH)).call().unwrap());
    assert_eq!(status, 502);
    assert!(
        error.contains("407")
            && error.contains("requires credentials")
            && error.contains("HTTP_PROXY"),
        "{error}"
    );
    assert!(upstream.requests().is_empty());
    assert!(proxy.tunnels().is_empty());
}

#[test]
fn gateway_dial_reports_proxy_authentication_and_refusal() {
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("dialproxy");
    let needs_auth = ConnectProxy::start(Policy {
        credentials: Some("a:b".into()),
        ..Policy::default()
    });
    let agent = start_agent(&agent_env(
        &token,
        "http://127.0.0.1:9",
        &[("ALL_PROXY", &needs_auth.url(Some("a:wrong")))],
    ));
    let line = agent
        .out
        .wait_for("cannot reach the gateway", Duration::from_secs(15));
    assert!(
        line.contains("refused the credentials (407 Proxy Authentication Required)")
            && line.contains("ALL_PROXY")
            && !line.contains("wrong"),
        "{line}"
    );
    drop(agent);

    let refusing = ConnectProxy::start(Policy {
        refuse_with: Some(403),
        ..Policy::default()
    });
    let agent = start_agent(&agent_env(
        &token,
        "http://127.0.0.1:9",
        &[("http_proxy", &refusing.url(None))],
    ));
    let line = agent
        .out
        .wait_for("cannot reach the gateway", Duration::from_secs(15));
    assert!(
        line.contains(&format!(
            "refused CONNECT to {} with 403 Forbidden",
            gateway.agent_addr
        )),
        "{line}"
    );
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    let proxy = ConnectProxy::start(Policy::default());
    let Tunnel {
        agent: _agent,
        gateway,
        upstream,
    } = Tunnel::start(
        "bypass",
        &[
            ("HTTP_PROXY", &proxy.url(None)),
            ("HTTPS_PROXY", &proxy.url(None)),
            ("NO_PROXY", "example.org,127.0.0.0/8"),
        ],
    );
    let response = client().get(gateway.url("bypass", PATH)).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
    assert!(proxy.attempts().is_empty(), "{:?}", proxy.attempts());
}
