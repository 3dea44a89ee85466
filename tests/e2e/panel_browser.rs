//! The panel in a real browser: headless Chromium, driven through WebDriver, does what an
//! operator does: signs in, adds a pool and gets its token file, watches an agent connect
//! and requests appear in the access log, reads the pool's state and traffic chart, finds the
//! refused request shapes, filters the log, rotates the key, deletes the pool. A screenshot
//! of each page lands in `target/panel-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (Debian); without them it fails saying so.

use crate::support;

use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use support::browser::Browser;
use support::upstream::Upstream;
use support::*;

const ADMIN: &str = "panel-admin-token-0123456789abcdef";
const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

/// Requests, denials and failures, as sent or as drawn.
#[derive(Debug, Default, PartialEq, Eq)]
struct Traffic {
    requests: u64,
    denied: u64,
    errors: u64,
}

impl Traffic {
    /// Sends 14 more requests through pool `infra-eu` (after the two of the first look):
    /// 11 served, 2 denied hook paths, one 500 from the VCS. Returns the pool's totals.
    fn send(gw: &Gateway) -> Traffic {
        let get = |path: &str, status: u16| {
            let response = client().get(gw.url("infra-eu", path)).call().unwrap();
            assert_eq!(response.status(), status, "{path}");
        };
        for _ in 0..11 {
            get(ARCHIVE, 200);
        }
        get("/api/v4/projects/1/hooks", 403);
        get("/api/v4/projects/22/hooks?private_token=secret-value", 403);
        get(
            "/api/v4/projects/group%2Frepo/repository/archive?do=status&n=500",
            500,
        );
        Traffic {
            requests: 16,
            denied: 3,
            errors: 1,
        }
    }
}

/// The inner texts of every element matching `css`.
fn texts(browser: &Browser, css: &str) -> Vec<String> {
    browser
        .run(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText || e.textContent);",
            json!([css]),
        )
        .as_array()
        .expect("texts")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect()
}

/// What the chart at `css` draws, added over its minutes, after checking that every bar's
/// segments are as tall as their counts on the chart's scale.
fn chart_figures(browser: &Browser, css: &str) -> Traffic {
    let chart = browser.run(
        "const svg = document.querySelector(arguments[0]); \
         const box = svg.viewBox.baseVal; \
         const base = svg.querySelector('.base-line').y1.baseVal.value; \
         const top = Math.min(...[...svg.querySelectorAll('.hit')].map(r => r.y.baseVal.value)); \
         return { max: Number(svg.dataset.max), plot: base - top, height: box.height, \
           bars: [...svg.querySelectorAll('.bar')].map(g => ({ \
             requests: Number(g.dataset.requests), denied: Number(g.dataset.denied), \
             errors: Number(g.dataset.errors), \
             heights: Object.fromEntries([...g.querySelectorAll('rect:not(.hit)')] \
               .map(r => [r.getAttribute('class'), r.height.baseVal.value])) })) };",
        json!([css]),
    );
    let bars = chart["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), 60, "one bar a minute for an hour");
    let max = chart["max"].as_f64().expect("max");
    let scale = chart["plot"].as_f64().expect("plot height") / max;
    let mut total = Traffic::default();
    for bar in bars {
        let n = |k: &str| bar[k].as_u64().unwrap_or(0);
        let (requests, denied, errors) = (n("requests"), n("denied"), n("errors"));
        assert!(requests as f64 <= max, "{bar}");
        for (kind, count) in [
            ("served", requests - denied - errors),
            ("denied", denied),
            ("errors", errors),
        ] {
            let height = bar["heights"][kind].as_f64().unwrap_or(0.0);
            assert!(
                (height - count as f64 * scale).abs() < 0.01,
                "{kind} of {bar} on scale {scale}"
            );
        }
        total.requests += requests;
        total.denied += denied;
        total.errors += errors;
    }
    total
}

/// Waits until the access log shows exactly `n` rows, each passing `check`.
fn wait_rows(browser: &Browser, n: usize, check: impl Fn(&str) -> bool) {
    wait_until(Duration::from_secs(20), &format!("{n} log rows"), || {
        let rows = texts(browser, "#log tbody tr");
        !browser.text("#log").is_empty() && rows.len() == n && rows.iter().all(|r| check(r))
    });
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("panel-screenshots")
}

#[test]
fn an_operator_adds_a_pool_watches_its_agent_and_reads_its_access_log() {
    let shots = screenshots();
    let shot = |browser: &Browser, name: &str| browser.screenshot(&shots.join(name));
    let upstream = Upstream::start();
    let gw = Gateway::start(&["--admin-token", ADMIN]);
    let browser = Browser::start();
    let panel = format!("http://{}/", gw.api_addr);

    // Sign in: the panel asks for the admin token once.
    browser.goto(&panel);
    browser.wait_text("#login-view", "Admin token");
    shot(&browser, "01-sign-in.png");
    browser.fill("#admin-token", "not the token");
    browser.click("#login-form button[type=submit]");
    browser.wait_text("#login-error", "refused");
    browser.fill("#admin-token", ADMIN);
    browser.click("#login-form button[type=submit]");
    browser.wait_text("#list-view", "No pools yet");
    shot(&browser, "02-no-pools.png");

    // Add a pool: a bad name is explained next to the field.
    browser.click("#add-pool");
    browser.fill("#pool-name", "Infra EU");
    browser.fill("#pool-description", "GitLab in the Frankfurt office");
    browser.click("#add-submit");
    browser.wait_text("#pool-name-error", "lowercase");
    shot(&browser, "03-add-pool-invalid.png");
    browser.fill("#pool-name", "infra-eu");
    browser.click("#add-submit");
    browser.wait_text("#token-notice", "infra-eu.token");
    let token = browser.downloaded("infra-eu.token");
    let decoded = vcs_agent::token::Token::decode(token.trim()).expect("a valid token file");
    assert_eq!(decoded.host, format!("ws://{}", gw.agent_addr));
    browser.wait_text("#pools", "GitLab in the Frankfurt office");
    shot(&browser, "04-pool-created.png");
    browser.click("#token-done");

    // An agent with that token and a metadata tag shows up on the pool page.
    let _agent = start_agent(&agent_env(
        token.trim(),
        &upstream.base(),
        &[("SPACELIFT_METADATA_team", "infra")],
    ));
    gw.wait_streams("infra-eu", 2);
    browser.click("#pools a[href='#/pools/infra-eu']");
    browser.wait_text("#pool-title", "infra-eu");
    let agents = browser.wait_text("#agents", "team=infra");
    assert!(agents.contains("127.0.0.1:"), "{agents}");
    assert!(agents.contains("2 / 0"), "two idle streams: {agents}");

    // Requests through private://infra-eu appear in the live log without a reload.
    let ok = client().get(gw.url("infra-eu", ARCHIVE)).call().unwrap();
    assert_eq!(ok.status(), 200);
    let denied = client()
        .get(gw.url("infra-eu", "/api/v4/admin/secrets"))
        .call()
        .unwrap();
    assert_eq!(denied.status(), 403);
    browser.click("#pool-tabs [data-tab=log]");
    let log = browser.wait_text("#log", "Download repository archive");
    assert!(
        log.contains("/api/v4/projects/group%2Frepo/repository/archive"),
        "{log}"
    );
    assert!(log.contains("200"), "{log}");
    browser.wait_text("#log", "denied");
    shot(&browser, "05-pool-log.png");

    // More traffic: served, refused (two hook paths of different projects, one with a
    // secret in its query) and one failing at the VCS.
    let traffic = Traffic::send(&gw);
    assert_eq!(
        traffic,
        Traffic {
            requests: 16,
            denied: 3,
            errors: 1
        }
    );

    // The pool list tells each pool's state without reading a number, and the small chart's
    // bars add up to what was sent.
    gw.create_pool("infra-us");
    browser.click("#nav [data-nav=list]");
    browser.wait_text("#pools tr[data-pool='infra-us']", "No agent");
    let row = "#pools tr[data-pool='infra-eu']";
    // (A request is counted just after its answer is sent: wait for the last one.)
    browser.wait_text(row, "Refusing\n3 of 16 requests denied");
    let cells = texts(&browser, &format!("{row} td"));
    assert!(cells[1].contains("3 of 16 requests denied"), "{cells:?}");
    assert!(
        cells[3].starts_with('1') && cells[3].contains("1 warning"),
        "{cells:?}"
    );
    assert_eq!(cells[5], "16", "requests in the last hour: {cells:?}");
    assert_eq!(cells[6], "3", "denials in the last hour: {cells:?}");
    assert_eq!(cells[7], "1", "failures in the last hour: {cells:?}");
    assert_eq!(
        chart_figures(&browser, &format!("{row} svg.chart")),
        traffic
    );
    shot(&browser, "06-pool-list.png");

    // One click on the denial count: the refused shapes, the two hook paths in one row.
    browser.click(&format!("{row} a[href='#/pools/infra-eu/refused']"));
    let hooks = "#pool-refused tr[data-shape='GET /api/v4/projects/{project}/hooks']";
    let text = browser.wait_text(hooks, "/api/v4/projects/{project}/hooks");
    let cells = texts(&browser, &format!("{hooks} td"));
    assert_eq!(cells[0], "2", "{cells:?}");
    assert!(cells[2].contains("no rule allows GET"), "{cells:?}");
    assert_eq!(cells[5], "/api/v4/projects/22/hooks", "{cells:?}");
    assert!(!text.contains("private_token"), "{text}");
    let rows = texts(&browser, "#pool-refused tbody tr");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].starts_with('2'), "most frequent first: {rows:?}");
    assert!(!browser.text("#pool-refused").contains("secret-value"));
    shot(&browser, "07-pool-refused.png");

    // The same over all pools, one click from anywhere.
    browser.click("#nav [data-nav=refused]");
    let all = browser.wait_text("#all-refused", "/api/v4/projects/{project}/hooks");
    assert!(
        all.contains("infra-eu") && all.contains("/api/v4/admin/secrets"),
        "{all}"
    );
    shot(&browser, "08-all-refused.png");

    // The pool page: state, warning, the large chart with axes and hover titles.
    browser.click("#all-refused a[href='#/pools/infra-eu/refused']");
    browser.click("#pool-tabs [data-tab=overview]");
    browser.wait_text("#pool-state", "Refusing");
    browser.wait_text("#pool-warnings", "only one agent");
    assert_eq!(chart_figures(&browser, "#pool-chart svg.chart"), traffic);
    let label = browser.run(
        "return document.querySelector('#pool-chart svg').getAttribute('aria-label');",
        json!([]),
    );
    assert_eq!(
        label,
        "Last hour: 16 requests, 12 served, 3 denied, 1 failed"
    );
    let titles = texts(&browser, "#pool-chart svg .bar title");
    assert!(
        titles
            .iter()
            .any(|t| t.contains("denied") && !t.contains(" 0 denied")),
        "{titles:?}"
    );
    let axis = texts(&browser, "#pool-chart svg text.axis");
    assert!(
        axis.iter().any(|t| t.contains(':')),
        "time labels: {axis:?}"
    );
    shot(&browser, "09-pool-overview.png");

    // The access log filters by outcome and by path; paths break only after "/" and "%2F".
    browser.click("#pool-tabs [data-tab=log]");
    browser.wait_text("#log", "Download repository archive");
    browser.click("#log-outcome option[value=denied]");
    wait_rows(&browser, 3, |row| row.contains("denied"));
    browser.click("#log-outcome option[value=errors]");
    wait_rows(&browser, 1, |row| row.contains("500"));
    let pieces = browser.run(
        "const td = document.querySelector('#log tbody td.path'); \
         return [td.textContent, td.querySelectorAll('wbr').length, \
                 [...td.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent)];",
        json!([]),
    );
    let failed = "/api/v4/projects/group%2Frepo/repository/archive?do=status&n=500";
    assert_eq!(pieces[0], failed);
    assert_eq!(
        pieces[2],
        json!([
            "/",
            "api/",
            "v4/",
            "projects/",
            "group%2F",
            "repo/",
            "repository/",
            "archive?do=status&n=500"
        ])
    );
    browser.click("#log-outcome option[value=all]");
    browser.fill("#log-path", "HOOKS");
    wait_rows(&browser, 2, |row| row.contains("/hooks"));
    shot(&browser, "10-log-filtered.png");
    browser.fill("#log-path", "");
    browser.click("#pool-tabs [data-tab=overview]");

    // Callers: one scoped to infra-eu; its secret is shown once and downloaded.
    browser.click("#nav [data-nav=callers]");
    browser.wait_text("#callers", "all pools");
    browser.click("#add-caller");
    browser.fill("#caller-name", "ci-bot");
    browser.click("#caller-pool-list input[data-pool='infra-eu']");
    browser.click("#caller-submit");
    browser.wait_text("#secret-notice", "ci-bot.secret");
    let secret = browser.downloaded("ci-bot.secret");
    assert_eq!(browser.text("#secret-value"), secret.trim());
    shot(&browser, "11-caller-created.png");
    browser.click("#secret-done");
    assert_eq!(
        browser.text("#secret-value"),
        "",
        "the secret is shown once"
    );

    // Its requests count under its name, in the callers list, the log and the refused view.
    let as_bot = |path: &str, secret: &str| {
        client()
            .get(gw.url("infra-eu", path))
            .header("Vcs-Gateway-Authorization", format!("Bearer {secret}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(as_bot(ARCHIVE, secret.trim()), 200);
    assert_eq!(as_bot("/api/v4/projects/5/hooks", secret.trim()), 403);
    let bot = "#callers tr[data-caller='ci-bot']";
    browser.wait_text(bot, "infra-eu (2 requests, 1 denied)");
    let cells = texts(&browser, &format!("{bot} td"));
    assert_eq!(
        (cells[2].as_str(), cells[3].as_str()),
        ("2", "1"),
        "{cells:?}"
    );
    shot(&browser, "12-callers.png");
    browser.click("#nav [data-nav=list]");
    browser.click("#pools a[href='#/pools/infra-eu/refused']");
    browser.wait_text(hooks, "ci-bot");
    browser.click("#pool-tabs [data-tab=log]");
    browser.fill("#log-caller", "ci-bot");
    wait_rows(&browser, 2, |row| row.contains("ci-bot"));
    browser.fill("#log-caller", "");

    // Rotating its secret refuses the old one; deleting it refuses the new one.
    browser.click("#nav [data-nav=callers]");
    browser.click(&format!("{bot} button[data-action=rotate]"));
    browser.wait_text("#confirm", "Rotate the secret of ci-bot?");
    browser.click("#confirm-ok");
    browser.wait_text("#secret-notice", "ci-bot.secret");
    wait_until(Duration::from_secs(20), "a second secret file", || {
        browser
            .download_names()
            .iter()
            .filter(|n| n.contains(".secret") && !n.ends_with(".crdownload"))
            .count()
            == 2
    });
    let rotated = browser.text("#secret-value");
    assert_ne!(rotated, secret.trim());
    assert_eq!(as_bot(ARCHIVE, secret.trim()), 401);
    assert_eq!(as_bot(ARCHIVE, &rotated), 200);
    browser.click("#secret-done");
    browser.click(&format!("{bot} button[data-action=delete]"));
    browser.wait_text("#confirm", "Delete caller ci-bot?");
    browser.click("#confirm-ok");
    browser.wait_text("#flash", "Caller ci-bot deleted");
    assert_eq!(as_bot(ARCHIVE, &rotated), 401);
    browser.click("#nav [data-nav=list]");
    browser.click("#pools a[href='#/pools/infra-eu']");
    browser.wait_text("#pool-title", "infra-eu");

    // Rotating the key downloads a new token and disconnects the agent on the old one.
    browser.click("#rotate-key");
    browser.wait_text("#confirm", "Rotate the key of infra-eu?");
    shot(&browser, "13-rotate-confirm.png");
    browser.click("#confirm-ok");
    browser.wait_text("#token-notice", "infra-eu.token");
    wait_until(Duration::from_secs(20), "a second token file", || {
        browser
            .download_names()
            .iter()
            .filter(|n| n.ends_with(".token"))
            .count()
            == 2
    });
    browser.wait_text("#no-agents", "No agent is connected");
    shot(&browser, "14-rotated.png");
    browser.click("#token-done");

    // Deleting the pool takes it off the list.
    browser.click("#delete-pool");
    browser.wait_text("#confirm", "Delete pool infra-eu?");
    browser.click("#confirm-ok");
    browser.wait_text("#flash", "deleted");
    wait_until(Duration::from_secs(20), "infra-eu off the list", || {
        let list = browser.text("#list-view");
        list.contains("infra-us") && !list.contains("infra-eu")
    });
    shot(&browser, "15-deleted.png");
    assert!(
        !gw.proc.out.text().contains(ADMIN),
        "admin token in the log"
    );
    assert!(
        !gw.proc.out.text().contains(decoded.key.expose()),
        "pool key in the log"
    );
}
