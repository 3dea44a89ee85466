//! The log setup: text lines for people, JSON lines for log shippers, one level knob.
//!
//! Both formats go to stdout (supervisord and container runtimes collect it). JSON lines have
//! stable field names: `ts`, `level`, `target`, `msg`, plus the structured fields of an access
//! line ([`super::access`]). Those fields travel from the access line to the formatter in a
//! thread-local, because a line is formatted on the thread that logs: no allocation or
//! parsing happens unless the JSON format is on and the line is enabled. `env_logger` parses
//! the level and `RUST_LOG` filters; the lines are written in batches by [`Lines`].
//!
//! Dependencies log what passes through them at debug and trace: tungstenite the upgrade
//! request (with the pool key) and every frame (tunnelled credentials, in clear and in hex),
//! ureq and rustls whole URLs and headers. None of that goes through our redaction, so no
//! level and no `RUST_LOG` filter lets a dependency's record below info through
//! ([`DEPENDENCY_CEILING`]); this crate's own records follow the level as asked.

use serde_json::Value;
use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A log format other than `text` or `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected text or json, got \"{0}\"")]
pub struct UnknownLogFormat(String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<LogFormat, UnknownLogFormat> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat(s.into())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// The levels `SPACELIFT_VCS_AGENT_LOG_LEVEL` accepts.
pub(crate) const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether the JSON format is on (the access line builds its fields only then).
pub(crate) fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Structured fields of a line, in output order.
pub(crate) type Fields = Vec<(&'static str, Value)>;

thread_local! {
    static FIELDS: RefCell<Option<Fields>> = const { RefCell::new(None) };
}

/// Runs `log` (one logging macro call) with `fields` attached to the JSON line it produces.
pub(crate) fn with_fields(fields: Fields, log: impl FnOnce()) {
    FIELDS.with(|f| *f.borrow_mut() = Some(fields));
    log();
    FIELDS.with(|f| f.borrow_mut().take());
}

/// Starts the logger. `level` (one of [`LEVELS`]) wins over `RUST_LOG`, which wins over
/// `default_filter`.
pub fn init(format: LogFormat, level: Option<&str>, default_filter: &str) {
    let mut builder = match level {
        Some(level) => {
            let mut b = env_logger::Builder::new();
            b.parse_filters(level);
            b
        }
        None => env_logger::Builder::from_env(
            env_logger::Env::default().default_filter_or(default_filter),
        ),
    };
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let filter = builder.build();
    let max = filter.filter();
    let logger = Capped {
        filter,
        format,
        out: Lines::stdout(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

/// Writes `record` as one line in `format` to `line` (emptied first), escaped and bounded
/// ([`super::escape::line`]) whatever it holds.
fn format_line(line: &mut String, format: LogFormat, record: &log::Record) {
    use super::escape::{self, Style};
    use std::fmt::Write as _;
    line.clear();
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    // Writing to a String fails only when a Display impl does; what was written is kept.
    match format {
        LogFormat::Text => {
            let _ = write!(
                line,
                "{now} {:<5} {}: {}",
                record.level(),
                short_target(record.target()),
                record.args()
            );
            escape::line(line, Style::Text);
        }
        LogFormat::Json => {
            let fields = FIELDS.with(|f| f.borrow_mut().take()).unwrap_or_default();
            let msg = record.args().to_string();
            let msg = escape::bounded(&msg, escape::MAX_LINE);
            *line = json_line(
                &now.to_string(),
                record.level(),
                record.target(),
                &msg,
                &fields,
            );
            escape::line(line, Style::Json);
        }
    }
    line.push('\n');
}

/// Log lines on their way to stdout: collected in memory and written in batches.
///
/// Every request makes an access line on each side. Written one `write` call each, with
/// `Stdout`'s lock held across it, the agent's slots queued on that lock (1.4 `futex` calls
/// per request) and, on a pipe as under supervisord, every line woke the reader. Access lines
/// of level info are appended to one buffer under a lock held only for the copy; a flusher
/// thread writes what gathered at most [`FLUSH_AFTER`] after the first line of a batch. Any
/// other line (warnings and errors, denied and failed requests, start-up and shutdown lines),
/// or a batch past [`FLUSH_AT`] bytes, is written at once by the thread that logs it, after
/// the lines before it. Lines keep their order and are never split. A process killed with
/// SIGKILL loses at most the last [`FLUSH_AFTER`] of access lines; a program that ends
/// normally flushes ([`flush`]).
struct Lines {
    pending: Mutex<Pending>,
    /// Signalled when a line lands in an empty buffer.
    gathered: Condvar,
    /// Whether the flusher thread runs (else each line is written at once).
    batched: AtomicBool,
}

struct Pending {
    lines: Vec<u8>,
    out: Box<dyn Write + Send>,
}

/// The longest an access line waits in memory.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// A batch this large is written at once.
const FLUSH_AT: usize = 32 * 1024;

impl Lines {
    /// Lines to the process's stdout, through a descriptor of its own (`dup`), so writes skip
    /// `Stdout`'s lock and line buffer.
    fn stdout() -> Arc<Lines> {
        use std::os::fd::AsFd;
        let own = std::io::stdout().as_fd().try_clone_to_owned();
        let out: Box<dyn Write + Send> = match own {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(_) => Box::new(std::io::stdout()),
        };
        Lines::start(out)
    }

    /// Lines to `out`, with a flusher thread.
    fn start(out: Box<dyn Write + Send>) -> Arc<Lines> {
        let lines = Arc::new(Lines {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(FLUSH_AT),
                out,
            }),
            gathered: Condvar::new(),
            batched: AtomicBool::new(true),
        });
        let flusher = Arc::clone(&lines);
        let spawned = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || flusher.flush_forever());
        if spawned.is_err() {
            // No flusher: every line is written at once.
            lines.batched.store(false, Ordering::Relaxed);
        }
        lines
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one line; writes it (and the lines before it) at once when `urgent`.
    fn add(&self, line: &[u8], urgent: bool) {
        let mut pending = self.lock();
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        if urgent || pending.lines.len() >= FLUSH_AT || !self.batched.load(Ordering::Relaxed) {
            pending.write_out();
        } else if first {
            drop(pending);
            self.gathered.notify_one();
        }
    }

    fn flush(&self) {
        self.lock().write_out();
    }

    fn flush_forever(&self) {
        loop {
            let mut pending = self.lock();
            while pending.lines.is_empty() {
                pending = self
                    .gathered
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            drop(pending);
            std::thread::sleep(FLUSH_AFTER);
            self.flush();
        }
    }
}

impl Pending {
    /// Writes and empties the buffer. A line that cannot be written has nowhere to be
    /// reported; it is dropped.
    fn write_out(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let _ = self
            .out
            .write_all(&self.lines)
            .and_then(|()| self.out.flush());
        self.lines.clear();
        if self.lines.capacity() > 4 * FLUSH_AT {
            self.lines.shrink_to(FLUSH_AT); // a burst of long lines keeps no memory
        }
    }
}

/// Writes the log lines still in memory; programs call it before they exit.
pub fn flush() {
    log::logger().flush();
}

thread_local! {
    /// Each thread's line buffer, reused so a line costs no allocation of its own.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
}

/// The most detailed level a dependency's record may have to be written.
pub(crate) const DEPENDENCY_CEILING: log::Level = log::Level::Info;

/// Whether a record's target is this crate's code: module paths of the library and of the
/// gateway binary, and the names given by hand with `target:` (access lines, API events).
fn is_ours(target: &str) -> bool {
    let root = target.split("::").next().unwrap_or(target);
    matches!(
        root,
        "vcs_agent" | "vcs_gateway" | "access" | "front" | "api" | "debug"
    )
}

/// Whether a record may be written at all, whatever the filter says.
fn admitted(metadata: &log::Metadata) -> bool {
    metadata.level() <= DEPENDENCY_CEILING || is_ours(metadata.target())
}

/// The configured filter with dependency records capped at [`DEPENDENCY_CEILING`], writing
/// through [`Lines`].
struct Capped {
    filter: env_logger::Logger,
    format: LogFormat,
    out: Arc<Lines>,
}

impl log::Log for Capped {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        admitted(metadata) && self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !admitted(record.metadata()) || !self.filter.matches(record) {
            return;
        }
        let urgent = record.level() <= log::Level::Warn || !is_access_line(record.target());
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                format_line(&mut line, self.format, record);
                self.out.add(line.as_bytes(), urgent);
                if line.capacity() > 16 * 1024 {
                    *line = String::with_capacity(256); // a rare long line keeps no memory
                }
            }
            // A record logged while formatting another (a Display impl that logs).
            Err(_) => {
                let mut own = String::new();
                format_line(&mut own, self.format, record);
                self.out.add(own.as_bytes(), urgent);
            }
        });
    }

    fn flush(&self) {
        self.out.flush();
    }
}

/// Whether a record's target is that of the per-request access lines (the agent's `access`,
/// the gateway's `front`), the only lines worth batching: any other line is rare and some,
/// such as "listening on …", are what a supervisor or a script waits for.
fn is_access_line(target: &str) -> bool {
    matches!(target, "access" | "front")
}

/// `vcs_agent::agent::slot` → `slot`; a `target:` given by hand stays as it is.
fn short_target(target: &str) -> &str {
    target.rsplit("::").next().unwrap_or(target)
}

/// A level as JSON lines name it: `warning` for warnings, as the original agent's lines do;
/// the others in lower case.
fn json_level(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// One JSON line: `ts`, `level`, `target`, `msg`, then `fields` in their order.
pub(crate) fn json_line(
    ts: &str,
    level: log::Level,
    target: &str,
    msg: &str,
    fields: &Fields,
) -> String {
    let mut line = String::with_capacity(128 + msg.len());
    line.push('{');
    let mut push = |name: &str, value: &Value| {
        if line.len() > 1 {
            line.push(',');
        }
        line.push_str(&Value::String(name.to_string()).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    };
    push("ts", &Value::from(ts));
    push("level", &Value::from(json_level(level)));
    push("target", &Value::from(short_target(target)));
    push("msg", &Value::from(msg));
    for (name, value) in fields {
        if !matches!(*name, "ts" | "level" | "target" | "msg") {
            push(name, value);
        }
    }
    line.push('}');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_stop_at_info_and_our_targets_do_not() {
        let meta = |level, target| log::Metadata::builder().level(level).target(target).build();
        use log::Level::{Debug, Info, Trace, Warn};
        assert!(!admitted(&meta(Trace, "tungstenite::protocol")));
        assert!(!admitted(&meta(Debug, "ureq::unversioned::transport")));
        assert!(!admitted(&meta(Debug, "vcs_agentx")));
        assert!(admitted(&meta(Warn, "rustls::common_state")));
        assert!(admitted(&meta(Info, "ureq")));
        assert!(admitted(&meta(Trace, "vcs_agent::agent::slot")));
        assert!(admitted(&meta(Debug, "vcs_gateway")));
        assert!(admitted(&meta(Debug, "front")));
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("TEXT".parse::<LogFormat>(), Ok(LogFormat::Text));
        let yaml = "yaml".parse::<LogFormat>().map_err(|e| e.to_string());
        assert_eq!(yaml, Err("expected text or json, got \"yaml\"".to_string()));
    }

    #[test]
    fn json_lines_have_stable_fields_in_order() {
        let line = json_line(
            "2024-01-01T00:00:00.000Z",
            log::Level::Warn,
            "vcs_agent::agent::slot",
            "say \"hi\"\n",
            &vec![
                ("status", Value::from(403)),
                ("msg", Value::from("ignored")),
                ("project", Value::Null),
            ],
        );
        assert_eq!(
            line,
            r#"{"ts":"2024-01-01T00:00:00.000Z","level":"warning","target":"slot","msg":"say \"hi\"\n","status":403,"project":null}"#
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["status"], 403);
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn access_lines_wait_for_a_batch_and_other_lines_take_them_along_in_order() {
        let out = Shared::default();
        let lines = Lines::start(Box::new(out.clone()));
        lines.add(b"access 1\n", false);
        lines.add(b"access 2\n", false);
        lines.add(b"WARN denied\n", true);
        assert_eq!(out.text(), "access 1\naccess 2\nWARN denied\n");

        lines.add(b"access 3\n", false);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.text().ends_with("denied\n") {
            assert!(
                std::time::Instant::now() < deadline,
                "the flusher never wrote"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "access 1\naccess 2\nWARN denied\naccess 3\n");

        lines.add(b"access 4\n", false);
        lines.flush();
        assert!(out.text().ends_with("access 3\naccess 4\n"));
        let big = vec![b'x'; FLUSH_AT];
        lines.add(&big, false);
        assert!(
            out.text().len() > FLUSH_AT,
            "a full batch is written at once"
        );
    }

    #[test]
    fn only_info_access_lines_are_batched() {
        assert!(is_access_line("access") && is_access_line("front"));
        assert!(!is_access_line("vcs_agent::agent::slot") && !is_access_line("api"));
    }
}
