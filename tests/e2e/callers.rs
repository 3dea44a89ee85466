//! The front as an exposed service: callers authenticate every tunnel request with their own
//! header, are scoped to pools, and nothing on the api port tells an unauthenticated peer
//! more than liveness, whichever address it appears to come from.

use crate::support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::upstream::Upstream;
use support::*;

const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(GATEWAY)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// A tunnel request with `secret` (or none) in `Vcs-Gateway-Authorization`.
fn call(gw: &Gateway, pool: &str, secret: Option<&str>) -> (u16, String, String) {
    let request = bare_client().get(gw.url(pool, ARCHIVE));
    let request = match secret {
        Some(secret) => request.header(CALLER_HEADER, format!("Bearer {secret}")),
        None => request,
    };
    error_kind(request.call().unwrap())
}

#[test]
fn a_tunnel_request_needs_a_valid_caller_secret_which_never_goes_on() {
    let Tunnel {
        agent: _agent,
        gateway: gw,
        upstream,
    } = Tunnel::start("alpha", &[]);

    let (status, kind, error) = call(&gw, "alpha", None);
    assert_eq!((status, kind.as_str()), (401, "unauthorized"), "{error}");
    assert!(error.contains("Vcs-Gateway-Authorization"), "{error}");
    let wrong = format!("{}x", gw.caller_secret);
    assert_eq!(call(&gw, "alpha", Some(&wrong)).1, "unauthorized");
    // Not even whether a pool exists is told before authentication.
    assert_eq!(call(&gw, "nowhere", None).0, 401);
    assert!(
        upstream.requests().is_empty(),
        "an unauthenticated request went on"
    );

    // The VCS's own Authorization passes untouched; the caller's header goes no further.
    let response = bare_client()
        .get(gw.url("alpha", ARCHIVE))
        .header(CALLER_HEADER, format!("Bearer {}", gw.caller_secret))
        .header("Authorization", "Bearer vcs-token")
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.wait_for_requests(1, Duration::from_secs(5));
    let header = |name: &str| {
        seen[0]
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        header("authorization"),
        vec!["Bearer vcs-token".to_string()]
    );
    assert!(
        header(CALLER_HEADER).is_empty(),
        "the caller secret reached the VCS"
    );

    // Every access line names its caller (or `-`), and no line holds the secret.
    let line = gw.proc.out.wait_for("status=200", Duration::from_secs(5));
    assert!(line.contains("caller=harness-"), "{line}");
    // Refusals are summed up, not logged one by one.
    let refused = gw.proc.out.wait_for(
        "tunnel requests refused by the gateway",
        Duration::from_secs(5),
    );
    assert!(refused.contains("by reason: unauthorized="), "{refused}");
    assert!(!gw.proc.out.text().contains(&gw.caller_secret));
}

#[test]
fn a_scoped_caller_cannot_tell_other_pools_from_missing_ones() {
    let Tunnel {
        agent: _alpha,
        gateway: gw,
        upstream,
    } = Tunnel::start("alpha", &[]);
    let _beta = gw.agent_for("beta", &upstream.base(), &[], 2);
    let secret = create_caller(&gw.dir.0, "saas-eu", &["--pools", "alpha"]);
    assert!(
        secret.starts_with("vgc_") && secret.len() >= 4 + 43,
        "{secret}"
    );

    assert_eq!(call(&gw, "alpha", Some(&secret)).0, 200);
    let (status, kind, other) = call(&gw, "beta", Some(&secret));
    assert_eq!((status, kind.as_str()), (403, "forbidden"), "{other}");
    let (status, kind, missing) = call(&gw, "gamma", Some(&secret));
    assert_eq!((status, kind.as_str()), (403, "forbidden"));
    assert_eq!(
        other.replace("beta", "gamma"),
        missing,
        "other pools and missing ones must read the same"
    );
    // A caller of every pool may know which exist.
    assert_eq!(
        call(&gw, "gamma", Some(&gw.caller_secret)).1,
        "unknown_pool"
    );

    // The store keeps hashes only, in a private file; list shows scopes, never secrets.
    let stored = std::fs::read_to_string(gw.dir.0.join("callers.json")).unwrap();
    assert!(!stored.contains(&secret) && !stored.contains(&gw.caller_secret));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gw.dir.0.join("callers.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let list = String::from_utf8(cli(&gw.dir.0, &["caller", "list"]).stdout).unwrap();
    assert!(
        list.contains("saas-eu") && list.contains("alpha") && list.contains("all pools"),
        "{list}"
    );
    assert!(!list.contains(&secret));

    // Rotation: the old secret stops working, the new one works.
    let rotated = cli(&gw.dir.0, &["caller", "rotate", "--name", "saas-eu"]);
    assert!(rotated.status.success());
    let new = String::from_utf8(rotated.stdout).unwrap();
    let new = new.trim_end().lines().last().unwrap().to_string();
    assert_eq!(call(&gw, "alpha", Some(&new)).0, 200);
    wait_until(
        Duration::from_secs(5),
        "the old secret to stop working",
        || call(&gw, "alpha", Some(&secret)).0 == 401,
    );
    let deleted = cli(&gw.dir.0, &["caller", "delete", "--name", "saas-eu"]);
    assert!(deleted.status.success());
    wait_until(
        Duration::from_secs(5),
        "a deleted caller to stop working",
        || call(&gw, "alpha", Some(&new)).0 == 401,
    );
}

#[test]
fn caller_commands_refuse_bad_input_with_one_line_naming_the_flag() {
    let dir = TempDir::new("callers-cli");
    for (args, flag) in [
        (vec!["caller", "create", "--name", "x"], "--pools"),
        (
            vec!["caller", "create", "--name", "x", "--pools", "nope"],
            "--pools",
        ),
        (
            vec!["caller", "create", "--name", "Bad", "--all-pools"],
            "--name",
        ),
        (vec!["caller", "rotate", "--name", "ghost"], "--name"),
        (vec!["caller", "delete", "--name", "ghost"], "--name"),
    ] {
        let out = cli(&dir.0, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

/// Calls the JSON API with the admin token.
fn api(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (name, value) = gw.admin_header();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.api_addr))
        .header(name, value);
    let agent = bare_client();
    let response = match body {
        Some(body) => agent.run(request.body(body.to_string()).unwrap()),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[test]
fn callers_are_managed_through_the_json_api() {
    let Tunnel {
        agent: _agent,
        gateway: gw,
        upstream: _upstream,
    } = Tunnel::start("alpha", &[]);
    let (status, body) = api(
        &gw,
        "POST",
        "/api/callers",
        Some(json!({"name": "ci", "pools": ["alpha"]})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["caller"]["pools"], json!(["alpha"]));
    assert_eq!(body["caller"]["all_pools"], false);
    let secret = body["secret"].as_str().unwrap().to_string();
    assert_eq!(call(&gw, "alpha", Some(&secret)).0, 200);

    let (status, body) = api(
        &gw,
        "POST",
        "/api/callers",
        Some(json!({"name": "ci", "all_pools": true})),
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (409, Some("name")),
        "{body}"
    );
    let (status, body) = api(
        &gw,
        "POST",
        "/api/callers",
        Some(json!({"name": "x", "pools": ["nope"]})),
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("pools")),
        "{body}"
    );
    let (status, body) = api(&gw, "POST", "/api/callers", Some(json!({"name": "x"})));
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("pools")),
        "{body}"
    );

    let (status, body) = api(&gw, "GET", "/api/callers", None);
    assert_eq!(status, 200);
    let names: Vec<&str> = body["callers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ci"), "{body}");
    assert!(!body.to_string().contains(&secret) && !body.to_string().contains("sha256"));

    let (status, body) = api(&gw, "POST", "/api/callers/ci/rotate", None);
    assert_eq!(status, 200, "{body}");
    let new = body["secret"].as_str().unwrap();
    assert_eq!(
        call(&gw, "alpha", Some(&secret)).0,
        401,
        "rotation through the API is immediate"
    );
    assert_eq!(call(&gw, "alpha", Some(new)).0, 200);

    // Deleting a pool takes it out of every caller's scope.
    assert_eq!(api(&gw, "DELETE", "/api/pools/alpha", None).0, 200);
    assert_eq!(
        api(&gw, "GET", "/api/callers/ci", None).1["caller"]["pools"],
        json!([])
    );
    assert_eq!(api(&gw, "DELETE", "/api/callers/ci", None).0, 200);
    assert_eq!(call(&gw, "alpha", Some(new)).0, 401);
    assert_eq!(api(&gw, "DELETE", "/api/callers/ci", None).0, 404);
    assert!(!gw.proc.out.text().contains(new));
}

#[test]
fn loopback_is_no_boundary_and_the_unauthenticated_learn_only_liveness() {
    // No --admin-token: one is made, kept private, and its place (not its value) logged.
    let gw = Gateway::start(&[]);
    gw.create_pool("secret-pool");
    let path = gw.dir.0.join("admin-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(gw.admin_token.len() >= 43);
    let line = gw.proc.out.wait_for("admin-token", Duration::from_secs(5));
    assert!(line.contains(&*path.to_string_lossy()), "{line}");
    assert!(!gw.proc.out.text().contains(&gw.admin_token));

    // A reverse proxy on the same host forwards outside requests from loopback, addressed to
    // loopback: that proves nothing.
    let api_url = format!("http://{}/api/pools", gw.api_addr);
    for host in [gw.api_addr.as_str(), "127.0.0.1", "localhost"] {
        let response = bare_client()
            .get(&api_url)
            .header("Host", host)
            .call()
            .unwrap();
        assert_eq!(response.status(), 401, "Host: {host}");
        let created = bare_client()
            .post(&api_url)
            .header("Host", host)
            .send(r#"{"name":"planted"}"#)
            .unwrap();
        assert_eq!(created.status(), 401, "Host: {host}");
    }
    let health = format!("http://{}/healthz", gw.api_addr);
    let open = bare_client()
        .get(&health)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&open).unwrap(),
        json!({"status": "ok"})
    );
    let metrics = format!("http://{}/metrics", gw.api_addr);
    let (status, kind, _) = error_kind(bare_client().get(&metrics).call().unwrap());
    assert_eq!((status, kind.as_str()), (401, "unauthorized"));

    // With the admin token: figures and pool names.
    let (name, value) = gw.admin_header();
    let full = bare_client()
        .get(&health)
        .header(name, &value)
        .call()
        .unwrap();
    assert!(full
        .into_body()
        .read_to_string()
        .unwrap()
        .contains("secret-pool"));
    let scraped = bare_client()
        .get(&metrics)
        .header(name, &value)
        .call()
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert_eq!(api(&gw, "GET", "/api/pools", None).0, 200);
}

#[test]
fn a_metrics_port_serves_figures_without_the_admin_token() {
    let gw = Gateway::start(&["--metrics-listen", "127.0.0.1:0"]);
    gw.create_pool("scraped");
    let line = gw
        .proc
        .out
        .wait_for("metrics port listening on", Duration::from_secs(5));
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    let get = |path: &str| {
        let response = bare_client()
            .get(format!("http://{addr}{path}"))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.into_body().read_to_string().unwrap())
    };
    let (status, health) = get("/healthz");
    assert_eq!(status, 200);
    assert!(health.contains("scraped"), "{health}");
    let (status, metrics) = get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("vcs_gateway_pools"), "{metrics}");
    // Nothing else: not the tunnel, not the API.
    assert_eq!(get("/api/pools").0, 404);
    assert_eq!(get("/private/scraped/x").0, 404);
}

#[test]
fn a_client_certificate_identifies_its_caller_on_a_tls_api_port() {
    use support::tls::Ca;
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let (server_ca, client_ca) = (Ca::new("Api CA"), Ca::new("Client CA"));
    let dir = TempDir::new("mtls");
    let (cert, key) = server_ca.leaf(&["127.0.0.1"]).write(&dir, "api");
    let client_ca_pem = client_ca.write(&dir);
    let registered = client_ca.leaf(&["saas-client"]);
    let (client_cert, _) = registered.write(&dir, "client");
    let stranger = client_ca.leaf(&["someone-else"]);
    let data = TempDir::new("mtls-data");
    let upstream = Upstream::start();
    let args = [
        "--api-tls-cert",
        cert.to_str().unwrap(),
        "--api-tls-key",
        key.to_str().unwrap(),
        "--api-client-ca",
        client_ca_pem.to_str().unwrap(),
    ];
    let gw = Gateway::start_in(data, "127.0.0.1:0", "127.0.0.1:0", &args);
    let token = gw.create_pool("mtls");
    let _agent = start_agent(&agent_env(&token, &upstream.base(), &[]));
    create_caller(
        &gw.dir.0,
        "cert-saas",
        &[
            "--pools",
            "mtls",
            "--client-cert",
            client_cert.to_str().unwrap(),
        ],
    );
    let https = |leaf: Option<&support::tls::Leaf>| -> ureq::Agent {
        let root = Certificate::from_pem(server_ca.pem().as_bytes()).unwrap();
        let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[root]));
        if let Some(leaf) = leaf {
            let chain = [Certificate::from_pem(leaf.cert_pem.as_bytes()).unwrap()];
            let key = PrivateKey::from_pem(leaf.key_pem.as_bytes()).unwrap();
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls.build())
            .build()
            .into()
    };
    let url = format!("https://{}/private/mtls{ARCHIVE}", gw.api_addr);
    let with_cert = https(Some(&registered));
    wait_until(Duration::from_secs(15), "the agent and a 200", || {
        with_cert.get(&url).call().map(|r| r.status().as_u16()).ok() == Some(200)
    });
    let status = |agent: ureq::Agent| error_kind(agent.get(&url).call().unwrap());
    assert_eq!(status(https(None)).1, "unauthorized");
    assert_eq!(status(https(Some(&stranger))).1, "unauthorized");
    let line = gw.proc.out.wait_for("status=200", Duration::from_secs(5));
    assert!(line.contains("caller=cert-saas"), "{line}");

    // Deleted by another process (the CLI), the certificate stops working too.
    cli(&gw.dir.0, &["caller", "delete", "--name", "cert-saas"]);
    wait_until(
        Duration::from_secs(5),
        "the deleted caller's certificate refused",
        || with_cert.get(&url).call().map(|r| r.status().as_u16()).ok() == Some(401),
    );
}
