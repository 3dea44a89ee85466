//! Durations as operators write them, in the agent's environment
//! (`SPACELIFT_VCS_AGENT_DRAIN_TIMEOUT=30s`) and on the gateway's command line
//! (`--queue-timeout 500ms`): one reading for both programs.
//!
//! A bare number is seconds, as in the original agent's variables; `ms`, `s`, `m` and `h` are
//! the units. Zero and anything above a week are refused: every duration here is a timeout or
//! an interval, and neither value is one an operator means.

use std::time::Duration;

/// Why a duration was refused; each message quotes the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration such as 30, 30s, 500ms or 2m, got \"{0}\"")]
    NotANumber(String),
    #[error("unknown unit \"{unit}\" (use ms, s, m or h), got \"{text}\"")]
    Unit { unit: String, text: String },
    #[error("expected a duration above 0 and at most a week, got \"{0}\"")]
    OutOfRange(String),
}

/// `30`, `30s`, `500ms`, `2m`, `1h`: a positive duration of at most a week.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.into()))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(DurationError::Unit {
                unit: unit.into(),
                text: text.into(),
            })
        }
    };
    if !(seconds > 0.0 && seconds <= 7.0 * 86400.0) {
        return Err(DurationError::OutOfRange(text.into()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bounds() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("0"), Err(DurationError::OutOfRange("0".into())));
        assert_eq!(
            parse("8d").map_err(|e| e.to_string()),
            Err("unknown unit \"d\" (use ms, s, m or h), got \"8d\"".into())
        );
        assert!(matches!(
            parse("5 parsecs"),
            Err(DurationError::Unit { .. })
        ));
        assert!(matches!(parse("soon"), Err(DurationError::NotANumber(_))));
    }
}
