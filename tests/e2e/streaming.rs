//! Constant memory: bodies of any size pass through gateway and agent in bounded pieces.
//!
//! The proof compares peak RSS (`VmHWM`) of the real processes after a small transfer and
//! after a large one: if either side buffered bodies, the peak would grow with the body.

use crate::support;

use std::time::Duration;
use support::upstream::{Digest, PatternReader};
use support::*;

const MIB: u64 = 1024 * 1024;

fn download(gateway: &Gateway, len: u64) {
    let url = gateway.url(
        "stream",
        &format!("/api/v4/projects/group%2Frepo/repository/archive.tar.gz?do=bytes&n={len}"),
    );
    let response = client().get(url).call().unwrap();
    assert_eq!(response.status(), 200);
    let got = Digest::of_reader(response.into_body().into_reader()).unwrap();
    let want = Digest::of_reader(PatternReader { pos: 0, len }).unwrap();
    assert_eq!(
        (got.0, got.1),
        (want.0, want.1),
        "download of {len} bytes differs"
    );
}

fn upload(gateway: &Gateway, len: u64) {
    let url = gateway.url(
        "stream",
        "/api/v4/projects/group%2Frepo/statuses/0123abc?do=echo",
    );
    let response = client()
        .post(url)
        .header("Content-Type", "application/octet-stream")
        .send(ureq::SendBody::from_owned_reader(PatternReader {
            pos: 0,
            len,
        }))
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value =
        serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(echo["body_len"], len);
    let want = Digest::of_reader(PatternReader { pos: 0, len })
        .unwrap()
        .hex();
    assert_eq!(echo["body_digest"], want);
}

#[test]
fn memory_does_not_grow_with_body_size() {
    let Tunnel {
        agent,
        gateway,
        upstream: _upstream,
    } = Tunnel::start("stream", &[]);

    download(&gateway, 10 * MIB);
    upload(&gateway, 10 * MIB);
    let agent_small = agent.peak_rss_kib();
    let gateway_small = gateway.proc.peak_rss_kib();

    download(&gateway, 1024 * MIB);
    upload(&gateway, 100 * MIB);
    download(&gateway, 500 * MIB);
    let agent_large = agent.peak_rss_kib();
    let gateway_large = gateway.proc.peak_rss_kib();

    eprintln!("peak RSS KiB: agent {agent_small} -> {agent_large}, gateway {gateway_small} -> {gateway_large}");
    // 1.6 GiB moved; a few MiB of allocator noise is fine, anything body-sized is not.
    assert!(
        agent_large < agent_small + 8 * 1024,
        "agent grew from {agent_small} to {agent_large} KiB"
    );
    assert!(
        gateway_large < gateway_small + 8 * 1024,
        "gateway grew from {gateway_small} to {gateway_large} KiB"
    );
    // The operator's bound: an agent stays under 16 MiB while a gigabyte goes through it
    // (release builds hold about 6; an allocator committing its arenas up front held 22).
    assert!(agent_large < 16 * 1024, "agent peaked at {agent_large} KiB");
    let _ = Duration::ZERO;
}
