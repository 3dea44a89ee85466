//! Per-vendor allowlists (placeholder until the allowlist lands).
