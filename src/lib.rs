//! vcs-agent: VCS Agent Pools as a synchronous thread-pool proxy.
//!
//! A SaaS reaches a VCS server inside a private network through two programs: the **agent**
//! runs inside the network and dials OUT to the **gateway**; the SaaS sends
//! `private://<pool>/<path>` requests to the gateway, which hands each to an idle agent
//! stream; the agent checks it against its vendor's allowlist, forwards it to the VCS and
//! streams the answer back. No async runtime: OS threads and blocking sockets.
//!
//! The map (data flows top to bottom on the way in, and back up on the way out):
//! - [`gateway`]: the pool store ([`gateway::store`]), the running state: live pools and
//!   their idle streams ([`gateway::state`]), the `private://` front and its dispatch
//!   ([`gateway::front`]), one request over one agent stream ([`gateway::exchange`]), the agent
//!   port ([`gateway::agent_port`]), the operator's panel, JSON API and monitoring
//!   ([`gateway::operator`]), forwarding between replicas ([`gateway::replicas`]), and what
//!   `vcs-gateway serve` starts with and the start-up policy that checks it
//!   ([`gateway::config`]).
//! - [`protocol`]: the frames both sides speak and their order; [`protocol::link`], one
//!   framed connection that reads, decodes and tracks liveness.
//! - [`agent`]: slot threads, one WebSocket each ([`agent::slot`]), one request on it
//!   ([`agent::request`]), the HTTP leg to the VCS ([`agent::forward`]), the preflight
//!   ([`agent::check`]).
//! - [`allowlist`]: canonical paths and per-vendor rules, failing closed; [`blocklist`]: the
//!   operator's rules that deny what the allowlist would allow.
//! - [`config`] and [`token`]: the agent's environment and the pool token; [`clock`]: wall-clock
//!   time as both programs record and show it; [`duration`]: durations as operators write
//!   them, for both programs.
//! - [`net`]: one stream type for plain and TLS sockets, dialing through proxies, trust
//!   stores, the accept loop; [`http1`]: the small HTTP/1.1 server side.
//! - [`observe`]: logs (text or JSON), access lines, redaction, metrics and health.
//! - [`shutdown`]: SIGTERM/SIGINT/SIGHUP for both programs: drain, or exit at a second signal.
//!
//! Choices worth knowing, each explained where it lives: the caller's thread borrows
//! an idle agent stream and writes answers straight to the caller's socket, no thread per
//! stream and no per-job channel ([`gateway::state::hub`], [`protocol`]); idle streams wait in a
//! mutex + condvar queue rather than a channel, because a channel's spinning receivers cost
//! CPU on two cores ([`gateway::state::idle`]); the gateway reads the first piece (64 KiB, so all of
//! a small body) of a request body before it takes a stream, so a slow caller holds none
//! ([`gateway::front`]);
//! a pool that is only reconnecting queues requests instead of answering `no_agent`
//! ([`gateway::state::pool::RECONNECT_GRACE`]); agents' slots wake each other when the gateway is
//! back ([`agent`]).
//!
//! # What the design costs
//!
//! A thread that serves one request at a time with blocking I/O sleeps at least twice per
//! request on the agent (for the request frame, for the VCS's answer) and three times on the
//! gateway (for the caller's next request, for a free stream, for the agent's answer), and
//! wakes another thread each time it sends. On a 2-core VM each such sleep and wake-up costs
//! about 5 µs, and `perf record` puts three quarters of each side's CPU per small request in
//! the kernel, about 45 % of it in the scheduler (`finish_task_switch`, `try_to_wake_up`);
//! an nginx worker serving many connections per `epoll_wait` switches 0.3 times per request
//! where the agent switches about 2 and the gateway 3. What user space does (the answer
//! head's JSON, `ureq-proto`'s header map, tungstenite zeroing its read buffer, the access
//! line) is about a fifth. So the CPU per request is bounded below by the scheduler, which
//! only an event loop would avoid, and is the price of the synchronous design. A large
//! download crosses three sockets and five copies between kernel and user space, plus the
//! WebSocket masking the protocol requires of the agent as a client (12 % of the agent's CPU
//! in a 1 GiB download, the kernel's loopback TCP about 60 %): through the tunnel it runs at
//! about half the speed of nginx serving the file directly with `sendfile`.

#![forbid(unsafe_code)]

/// Every build allocates with mimalloc: musl's own allocator costs the static agent about 1.6
/// times the CPU per request under load (`scripts/bench.sh` with `BENCH_TARGET`), and glibc's
/// malloc and free were a sixth of the instructions per small request on each side
/// (callgrind) where mimalloc's are a sixteenth.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What was built: the crate version and, when it was built from a git checkout, the commit
/// (`0.1.0+1a2b3c4d5e6f`, `-dirty` when its sources had changes; src/build.rs). Both programs'
/// `--version` print it and the agent sends it in its connect headers, so the gateway's panel
/// tells builds apart.
pub const BUILD: &str = env!("VCS_AGENT_BUILD");

pub mod agent;
pub mod allowlist;
pub mod blocklist;
pub mod clock;
pub mod config;
pub mod duration;
pub mod gateway;
pub mod http1;
pub mod net;
pub mod observe;
pub mod protocol;
pub mod shutdown;
pub mod token;
pub mod webhook;
