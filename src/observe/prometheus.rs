//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! A scrape is a handful of families and a few dozen samples: a `String` and `write!` are
//! all it takes, and no metrics crate (with its globals and its async exporters) comes in.

use std::fmt::{Display, Write};

/// The `Content-Type` of a scrape answer.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub(crate) const LATENCY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One scrape's text, built family by family.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line: `name{label="value",...} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape(text));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram from per-bucket (not cumulative) counts over [`LATENCY_BUCKETS`] plus one
    /// overflow bucket, the sum in seconds and the total count.
    pub(crate) fn histogram(&mut self, name: &str, buckets: &[u64], sum_seconds: f64, count: u64) {
        let mut cumulative = 0u64;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(buckets) {
            cumulative += n;
            self.sample(
                &format!("{name}_bucket"),
                &[("le", &bound.to_string())],
                cumulative,
            );
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count);
        self.sample(&format!("{name}_sum"), &[], sum_seconds);
        self.sample(&format!("{name}_count"), &[], count);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "Things.");
        e.sample("x_total", &[("rule", "Say \"hi\"\\\n")], 3);
        e.sample("y", &[], 1.5);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{rule=\"Say \\\"hi\\\"\\\\\\n\"} 3\ny 1.5\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut e = Exposition::default();
        let mut buckets = [0u64; 14];
        buckets[0] = 2;
        buckets[4] = 1;
        buckets[13] = 1;
        e.histogram("h_seconds", &buckets, 70.25, 4);
        let text = e.finish();
        assert!(
            text.contains("h_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_bucket{le=\"0.1\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"60\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(
            text.contains("h_seconds_sum 70.25\nh_seconds_count 4\n"),
            "{text}"
        );
    }
}
