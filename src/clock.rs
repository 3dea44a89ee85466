//! Wall-clock time as the programs record and show it: Unix seconds for what is stored
//! (when a pool or caller was made, when an agent connected), Unix milliseconds for what is
//! counted per minute or rate-limited, and one written form for people (RFC 3339, UTC).
//!
//! A clock set before 1970 reads as 0 rather than failing: these times label and bucket
//! things, they never decide whether something is allowed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-27T19:08:09Z` for a Unix time.
pub fn format_time(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}
