//! A headless Chromium driven through WebDriver, for testing the panel as a person uses it.
//!
//! WebDriver is plain JSON over HTTP, so a few `ureq` calls to a `chromedriver` child on a
//! loopback port do it: no WebDriver crate, no async runtime. Each browser gets a fresh
//! profile and download directory, both removed on drop, and chromedriver is killed on drop.

use super::{wait_until, Proc, TempDir};
use base64::Engine;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const INSTALL: &str = "the panel browser test needs Chromium and its WebDriver: \
    apt-get install -y chromium chromium-driver (Debian; /usr/bin/chromium and \
    /usr/bin/chromedriver), or point VCS_TEST_CHROMIUM and VCS_TEST_CHROMEDRIVER at them";

pub struct Browser {
    http: ureq::Agent,
    base: String,
    session: String,
    pub downloads: TempDir,
    _profile: TempDir,
    _driver: Proc,
}

/// An element reference in the current page.
#[derive(Clone)]
pub struct Element(String);

/// The executable named by `var`, else the first of `candidates` that exists or is on PATH.
fn find_binary(var: &str, candidates: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var}={} does not exist: {INSTALL}",
            path.display()
        );
        return path;
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    candidates
        .iter()
        .find_map(|c| {
            let p = Path::new(c);
            if p.is_absolute() {
                p.is_file().then(|| p.to_path_buf())
            } else {
                on_path(c)
            }
        })
        .unwrap_or_else(|| panic!("{} not found: {INSTALL}", candidates.join(" or ")))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a laptop-sized window.
    pub fn start() -> Browser {
        let chromium = find_binary(
            "VCS_TEST_CHROMIUM",
            &[
                "/usr/bin/chromium",
                "chromium",
                "chromium-browser",
                "google-chrome",
            ],
        );
        let chromedriver = find_binary(
            "VCS_TEST_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "chromedriver"],
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let mut command = Command::new(&chromedriver);
        command.arg(format!("--port={port}"));
        let driver = Proc::spawn(command);
        let base = format!("http://127.0.0.1:{port}");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        wait_until(Duration::from_secs(20), "chromedriver to be ready", || {
            http.get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        });
        let profile = TempDir::new("chromium-profile");
        let downloads = TempDir::new("chromium-downloads");
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1440,900",
                        format!("--user-data-dir={}", profile.0.display()),
                    ],
                    "prefs": {
                        "download.default_directory": downloads.0,
                        "download.prompt_for_download": false,
                        "download.directory_upgrade": true,
                        "safebrowsing.enabled": false,
                    },
                },
            }},
        });
        let response = http
            .post(format!("{base}/session"))
            .send(capabilities.to_string())
            .unwrap_or_else(|e| panic!("chromedriver: {e}\n{}", driver.out.text()));
        let text = response.into_body().read_to_string().expect("session");
        let value: Value = serde_json::from_str(&text).expect("session JSON");
        let session = value["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start: {text}\n{INSTALL}"))
            .to_string();
        Browser {
            http,
            base,
            session,
            downloads,
            _profile: profile,
            _driver: driver,
        }
    }

    /// One WebDriver command; returns its `value`, panics with WebDriver's message on error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// One WebDriver command; `Err` holds WebDriver's error code and message.
    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self
                .http
                .post(&url)
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        if status >= 400 {
            return Err(format!(
                "{status} {}: {}",
                value["value"]["error"].as_str().unwrap_or(""),
                value["value"]["message"].as_str().unwrap_or(&text)
            ));
        }
        Ok(value["value"].clone())
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn find(&self, css: &str) -> Element {
        let value = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        Element(
            value[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {value}"))
                .to_string(),
        )
    }

    /// Clicks the element at `css`, finding it again if the page re-rendered it meanwhile
    /// (the panel redraws its tables as it polls) and waiting while it is not shown yet (a
    /// view appears once its data arrived).
    pub fn click(&self, css: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let Element(id) = self.find(css);
            match self.try_command("POST", &format!("/element/{id}/click"), None) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") || e.contains("not interactable") => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "click {css}: {e} for 20 s"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Clears a field and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let Element(id) = self.find(css);
        self.command("POST", &format!("/element/{id}/clear"), None);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The visible text of the first element matching `css`, or "" when there is none or it
    /// is hidden.
    pub fn text(&self, css: &str) -> String {
        self.run(
            "const e = document.querySelector(arguments[0]); \
             return e && e.checkVisibility() ? e.innerText : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Waits until the element at `css` is visible and its text contains `needle`.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.text(css);
            if seen.contains(needle) {
                return seen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{css} never showed {needle:?}; it shows {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let data = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("screenshot data"))
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Waits for a finished download named `name` and returns its content.
    pub fn downloaded(&self, name: &str) -> String {
        let path = self.downloads.0.join(name);
        wait_until(Duration::from_secs(20), &format!("download {name}"), || {
            path.is_file()
                && std::fs::read_dir(&self.downloads.0)
                    .map(|d| {
                        d.flatten()
                            .all(|e| !e.file_name().to_string_lossy().ends_with(".crdownload"))
                    })
                    .unwrap_or(false)
        });
        std::fs::read_to_string(&path).expect("downloaded file")
    }

    /// Names of the files in the download directory.
    pub fn download_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.downloads.0)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .call();
    }
}
