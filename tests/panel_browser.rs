//! The panel in a real browser: headless Chromium, driven through WebDriver, does what an
//! operator does: signs in, adds a pool and gets its token file, watches an agent connect
//! and a request appear in the access log, rotates the key, deletes the pool. A screenshot of
//! each page lands in `target/panel-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (Debian); without them it fails saying so.

mod support;

use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use support::browser::Browser;
use support::upstream::Upstream;
use support::*;

const ADMIN: &str = "panel-admin-token-0123456789abcdef";
const ARCHIVE: &str = "/api/v4/projects/group%2Frepo/repository/archive?do=echo";

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
    let log = browser.wait_text("#log", "Download repository archive");
    assert!(
        log.contains("/api/v4/projects/group%2Frepo/repository/archive"),
        "{log}"
    );
    assert!(log.contains("200"), "{log}");
    browser.wait_text("#log", "denied");
    shot(&browser, "05-pool-agents-and-log.png");

    // The pool list counts the hour's requests and denials.
    browser.click(".crumbs a");
    let row = browser.wait_text("#pools tr[data-pool='infra-eu']", "2 / 0");
    let cells: Vec<String> = browser
        .run(
            "return [...document.querySelectorAll(\"#pools tr[data-pool='infra-eu'] td\")].map(td => td.innerText);",
            json!([]),
        )
        .as_array()
        .expect("cells")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(cells[3], "1", "agents: {row}");
    assert_eq!(cells[5], "2", "requests in the last hour: {row}");
    assert_eq!(cells[6], "1", "denials in the last hour: {row}");
    shot(&browser, "06-pool-list.png");

    // Rotating the key downloads a new token and disconnects the agent on the old one.
    browser.click("#pools a[href='#/pools/infra-eu']");
    browser.wait_text("#pool-title", "infra-eu");
    browser.click("#rotate-key");
    browser.wait_text("#confirm", "Rotate the key of infra-eu?");
    shot(&browser, "07-rotate-confirm.png");
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
    shot(&browser, "08-rotated.png");
    browser.click("#token-done");

    // Deleting the pool takes it off the list.
    browser.click("#delete-pool");
    browser.wait_text("#confirm", "Delete pool infra-eu?");
    browser.click("#confirm-ok");
    browser.wait_text("#flash", "deleted");
    browser.wait_text("#list-view", "No pools yet");
    shot(&browser, "09-deleted.png");
    assert!(
        !gw.proc.out.text().contains(ADMIN),
        "admin token in the log"
    );
    assert!(
        !gw.proc.out.text().contains(decoded.key.expose()),
        "pool key in the log"
    );
}
