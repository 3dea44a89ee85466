//! What operators watch, end to end on loopback: the agent's `/healthz` and `/metrics`
//! (`SPACELIFT_VCS_AGENT_METRICS_ADDR`), the gateway's `/metrics`, JSON log lines and the
//! level knob, and the redaction of `SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL` dumps.

use crate::support;

use std::time::Duration;
use support::upstream::Upstream;
use support::*;
use vcs_agent::allowlist::{Allowlist, Vendor};
use vcs_agent::token::Token;

/// An allowlisted GitLab path (archive download) whose upstream answers `n` pattern bytes.
const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=bytes&n=1000";
/// A path no GitLab rule allows.
const DENIED: &str = "/admin/secrets";

fn get(url: &str) -> (u16, String) {
    get_as(url, ("X-None", String::new()))
}

/// [`get`] with one more header (the gateway's admin token).
fn get_as(url: &str, (name, value): (&str, String)) -> (u16, String) {
    match client().get(url).header(name, value).call() {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.into_body().read_to_vec().unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The value of the sample line that starts with `series` (name and labels), if any.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn rule_of(path: &str) -> &'static str {
    Allowlist::new(Vendor::Gitlab, None)
        .check("GET", path)
        .expect("allowlisted")
        .description
}

fn endpoint(agent: &Proc) -> String {
    agent
        .out
        .wait_for(
            "health and metrics endpoint listening on",
            Duration::from_secs(10),
        )
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn agent_and_gateway_metrics_follow_streams_requests_and_reconnects() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let token = gateway.create_pool("metered");
    let agent = start_agent(&agent_env(
        &token,
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_METRICS_ADDR", "127.0.0.1:0")],
    ));
    let addr = endpoint(&agent);
    let healthz = format!("http://{addr}/healthz");
    let metrics = format!("http://{addr}/metrics");
    gateway.wait_streams("metered", 2);
    // The gateway counts a stream once it accepted the upgrade, the agent once it read the
    // answer: await the agent's own count too.
    let mut health = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(10),
        "agent /healthz 200 with 2 streams",
        || {
            let (status, body) = get(&healthz);
            health = serde_json::from_str(&body).unwrap_or_default();
            status == 200 && health["streams"] == 2
        },
    );
    assert_eq!(health["configured"], 2);

    let archive = client()
        .get(gateway.url("metered", ARCHIVE))
        .call()
        .expect("archive");
    assert_eq!(archive.status(), 200);
    assert_eq!(archive.into_body().read_to_vec().expect("body").len(), 1000);
    assert_eq!(get(&gateway.url("metered", DENIED)).0, 403);

    let rule = rule_of(ARCHIVE);
    let served = format!("vcs_agent_requests_total{{rule=\"{rule}\",status=\"200\"}}");
    let mut scrape = String::new();
    wait_until(
        Duration::from_secs(10),
        "both requests in the agent's metrics and their streams idle again",
        || {
            scrape = get(&metrics).1;
            // A request is counted just before its stream is released.
            sample(&scrape, &served) == Some(1.0)
                && sample(
                    &scrape,
                    "vcs_agent_requests_total{rule=\"-\",status=\"403\"}",
                ) == Some(1.0)
                && sample(&scrape, "vcs_agent_streams_busy") == Some(0.0)
        },
    );
    for (series, expected) in [
        ("vcs_agent_streams_connected", 2.0),
        ("vcs_agent_streams_busy", 0.0),
        ("vcs_agent_streams_configured", 2.0),
        ("vcs_agent_denials_total{reason=\"no_rule\"}", 1.0),
        ("vcs_agent_request_errors_total{kind=\"denied\"}", 1.0),
        ("vcs_agent_bytes_out_total", 1000.0),
        ("vcs_agent_bytes_in_total", 0.0),
        ("vcs_agent_upstream_latency_seconds_count", 1.0),
        (
            "vcs_agent_upstream_latency_seconds_bucket{le=\"+Inf\"}",
            1.0,
        ),
        ("vcs_agent_reconnects_total", 0.0),
    ] {
        assert_eq!(
            sample(&scrape, series),
            Some(expected),
            "{series} in:\n{scrape}"
        );
    }
    assert!(scrape.contains("# TYPE vcs_agent_upstream_latency_seconds histogram"));
    let (status, _) = get(&format!("http://{addr}/nothing"));
    assert_eq!(status, 404);

    // The gateway's per-pool figures.
    let gateway_metrics = format!("http://{}/metrics", gateway.api_addr);
    let mut scrape = String::new();
    wait_until(
        Duration::from_secs(10),
        "both requests in the gateway's metrics",
        || {
            scrape = get_as(&gateway_metrics, gateway.admin_header()).1;
            sample(
                &scrape,
                "vcs_gateway_requests_total{pool=\"metered\",status=\"200\"}",
            ) == Some(1.0)
                && sample(
                    &scrape,
                    "vcs_gateway_requests_total{pool=\"metered\",status=\"403\"}",
                ) == Some(1.0)
        },
    );
    for (series, expected) in [
        ("vcs_gateway_pools", 1.0),
        ("vcs_gateway_pool_streams{pool=\"metered\"}", 2.0),
        ("vcs_gateway_pool_busy_streams{pool=\"metered\"}", 0.0),
        ("vcs_gateway_pool_agents{pool=\"metered\"}", 1.0),
        (
            "vcs_gateway_request_errors_total{pool=\"metered\",kind=\"denied\"}",
            1.0,
        ),
        ("vcs_gateway_bytes_out_total{pool=\"metered\"}", 1000.0),
    ] {
        assert_eq!(
            sample(&scrape, series),
            Some(expected),
            "{series} in:\n{scrape}"
        );
    }

    // The gateway goes away: unhealthy. It comes back on the same agent port: healthy again,
    // and every stream counts a reconnect.
    let Gateway {
        proc,
        dir,
        agent_addr,
        ..
    } = gateway;
    drop(proc);
    wait_until(Duration::from_secs(10), "agent /healthz 503", || {
        get(&healthz).0 == 503
    });
    assert_eq!(
        sample(&get(&metrics).1, "vcs_agent_streams_connected"),
        Some(0.0)
    );
    let gateway = Gateway::start_in(dir, &agent_addr, "127.0.0.1:0", &[]);
    gateway.wait_streams("metered", 2);
    wait_until(Duration::from_secs(30), "reconnects counted", || {
        let scrape = get(&metrics).1;
        sample(&scrape, "vcs_agent_reconnects_total") == Some(2.0)
            && sample(&scrape, "vcs_agent_streams_connected") == Some(2.0)
    });
    assert_eq!(get(&healthz).0, 200);
    assert!(sample(&get(&metrics).1, "vcs_agent_dial_failures_total").is_some());
}

#[test]
fn json_logs_have_stable_fields_and_the_level_knob_wins() {
    let upstream = Upstream::start();
    let gateway = Gateway::start(&[]);
    let json_token = gateway.create_pool("json");
    let quiet_token = gateway.create_pool("quiet");
    let json = start_agent(&agent_env(
        &json_token,
        &upstream.base(),
        &[("SPACELIFT_VCS_AGENT_LOG_FORMAT", "json")],
    ));
    let quiet = start_agent(&agent_env(
        &quiet_token,
        &upstream.base(),
        &[
            ("SPACELIFT_VCS_AGENT_LOG_LEVEL", "warn"),
            ("RUST_LOG", "trace"),
        ],
    ));
    gateway.wait_streams("json", 2);
    gateway.wait_streams("quiet", 2);
    for pool in ["json", "quiet"] {
        let secret = format!("{ARCHIVE}&private_token=glpat-secret");
        assert_eq!(get(&gateway.url(pool, &secret)).0, 200);
        assert_eq!(get(&gateway.url(pool, DENIED)).0, 403);
    }

    // JSON: every line is an object with ts, level, target, msg; access lines add typed fields.
    json.out.wait_for("\"status\":403", Duration::from_secs(10));
    json.out.wait_for("\"status\":200", Duration::from_secs(10));
    let lines: Vec<serde_json::Value> = json
        .out
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for field in ["ts", "level", "target", "msg"] {
            assert!(line[field].is_string(), "{field} missing in {line}");
        }
    }
    let access: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 2, "{lines:?}");
    let served = access.iter().find(|l| l["status"] == 200).expect("served");
    assert_eq!(served["level"], "info");
    assert_eq!(served["method"], "GET");
    assert_eq!(
        served["raw_path"],
        "/api/v4/projects/group%2Frepo/repository/archive"
    );
    assert_eq!(
        served["path"],
        "/api/v4/projects/group/repo/repository/archive"
    );
    assert_eq!(served["query"], "do=bytes&n=1000&private_token=***");
    assert_eq!(served["for"], rule_of(ARCHIVE));
    // The original agent's names for the same facts.
    assert_eq!(served["name"], served["for"]);
    assert_eq!(served["status_code"], 200);
    assert!(served["elapsed"].as_str().is_some_and(|e| e.ends_with('s')));
    let pool = Token::decode(&json_token).unwrap().pool_ulid;
    assert_eq!(served["pool_id"], pool.as_str());
    assert_eq!(served["project"], "group/repo");
    assert_eq!(served["bytes_in"], 0);
    assert_eq!(served["bytes_out"], 1000);
    assert!(served["elapsed_ms"].is_number());
    assert!(served["id"].as_str().is_some_and(|id| id.len() == 26));
    assert!(served["error"].is_null() && served["reason"].is_null());
    let denied = access.iter().find(|l| l["status"] == 403).expect("denied");
    assert_eq!(denied["level"], "warning");
    assert_eq!(denied["error"], "denied");
    assert_eq!(denied["for"], "-");
    assert!(denied["project"].is_null());
    assert!(denied["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("no rule allows GET /admin/secrets")));
    assert!(!json.out.text().contains("glpat-secret"));

    // LOG_LEVEL=warn wins over RUST_LOG=trace: the denial is logged, nothing below warn is.
    quiet.out.wait_for("status=403", Duration::from_secs(10));
    let text = quiet.out.text();
    assert!(
        text.lines()
            .all(|l| !(l.contains(" INFO ") || l.contains(" DEBUG ") || l.contains(" TRACE "))),
        "{text}"
    );
    assert!(!text.contains("status=200"), "{text}");
}

#[test]
fn debug_print_all_shows_heads_but_never_secrets() {
    let Tunnel {
        agent,
        gateway,
        upstream,
    } = Tunnel::start("debug", &[("SPACELIFT_VCS_AGENT_DEBUG_PRINT_ALL", "true")]);
    let path =
        "/api/v4/projects/group%2Frepo/repository/archive?do=echo&private_token=sekrit-query";
    let response = client()
        .get(gateway.url("debug", path))
        .header("Authorization", "Bearer sekrit-bearer")
        .header("PRIVATE-TOKEN", "sekrit-pat")
        .header("Cookie", "session=sekrit-cookie")
        .header("X-Visible", "shown-value")
        .header("Accept", "application/json")
        .call()
        .expect("request");
    assert_eq!(response.status(), 200);
    // The secrets did travel: the dump is the only place they must not appear.
    let seen = upstream.wait_for_requests(1, Duration::from_secs(5));
    assert!(seen[0]
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("authorization") && v == "Bearer sekrit-bearer"));
    assert!(seen[0]
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("private-token") && v == "sekrit-pat"));

    let request = agent
        .out
        .wait_for("debug: request id=", Duration::from_secs(10))
        .to_ascii_lowercase();
    let answer = agent
        .out
        .wait_for("debug: response id=", Duration::from_secs(10))
        .to_ascii_lowercase();
    for shown in [
        "x-visible: shown-value",
        "accept: application/json",
        "authorization: ***",
        "private-token: ***",
        "cookie: ***",
        "private_token=***",
    ] {
        assert!(request.contains(shown), "{shown:?} not in {request}");
    }
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains("set-cookie: ***"), "{answer}");
    agent.out.wait_for("status=200", Duration::from_secs(10));
    let text = agent.out.text();
    assert!(
        !text.contains("sekrit"),
        "a secret reached the log:\n{text}"
    );
}
