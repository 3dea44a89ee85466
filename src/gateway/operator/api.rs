//! The JSON API under `/api/…`: what the panel does, for scripts too.
//!
//! It lives on the api port next to the tunnel, in the caller's own thread: a request is small
//! (bodies are capped at [`MAX_BODY`]) and each answer is built from the [`Hub`]'s live state
//! or one [`Store`](crate::gateway::store::Store) change followed by [`Hub::reload`], so a
//! pool created here takes agents at once and a deleted or re-keyed one drops its streams at
//! once, without a restart. Callers (`/api/callers…`) work the same way over
//! [`Hub::callers`](crate::gateway::state::hub::Hub): a new, rotated or deleted caller takes effect at
//! once.
//!
//! Every answer is JSON, errors included (`{"error": "...", "field": "..."}` where a field is
//! to blame), and carries `Cache-Control: no-store`: a pool token or a caller secret appears in
//! exactly one answer (create or rotate) and must not stay in any cache. Tokens and secrets
//! never reach a log.

use crate::clock::format_time;
use crate::gateway::exchange::job::Connection;
use crate::gateway::operator::admin;
use crate::gateway::state::hub::Hub;
use crate::gateway::state::pool::{LivePool, RECENT_REQUESTS};
use crate::gateway::state::record::RequestRecord;
use crate::gateway::state::stats::{Counts, GroupView};
use crate::gateway::state::stream::AgentInfo;
use crate::gateway::store::{
    validate_caller_name, validate_name, CallerRecord, Scope, StoreError, MAX_DESCRIPTION,
};
use crate::http1::{self, BodyReader, Framing, RequestHead};
use crate::token::{Secret, Token};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

/// Largest request body the API reads.
pub const MAX_BODY: u64 = 64 * 1024;

/// Access-log entries returned when `?limit=` is not given.
const DEFAULT_LOG_LIMIT: usize = 100;

/// One answer: status and JSON body.
struct Reply {
    status: u16,
    body: Value,
    /// Close the connection after answering (a body was left unread or could not be trusted).
    close: bool,
}

impl Reply {
    fn ok(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            close: false,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::ok(status, json!({ "error": message.into() }))
    }

    fn field_error(status: u16, field: &str, message: impl Into<String>) -> Reply {
        Reply::ok(status, json!({ "error": message.into(), "field": field }))
    }

    fn closing(mut self) -> Reply {
        self.close = true;
        self
    }
}

/// Serves one `/api/…` request; returns the connection when it can take another.
pub fn serve(head: RequestHead, mut caller: Connection, hub: &Hub) -> Option<Connection> {
    let keep_alive = head.keep_alive();
    let reply = match read_body(&head, &mut caller) {
        Ok(body) => {
            let token = hub.settings.admin_token.as_ref();
            let authorization = head.header("authorization");
            if let Err(e) = admin::check_origin(head.header("host"), head.header("origin")) {
                Reply::error(403, e.to_string())
            } else if admin::authorized(token, authorization) {
                answer(&head, &body, hub)
            } else {
                Reply::error(
                    401,
                    "the admin token is missing or wrong: send Authorization: Bearer <token>",
                )
            }
        }
        Err(Some(reply)) => reply,
        Err(None) => return None,
    };
    let keep_alive = keep_alive && !reply.close;
    let written = write_reply(caller.conn.get_mut(), &reply, keep_alive);
    (written.is_ok() && keep_alive).then_some(caller)
}

/// Reads the whole body, at most [`MAX_BODY`]. `Err(None)`: the connection broke.
fn read_body(head: &RequestHead, caller: &mut Connection) -> Result<Vec<u8>, Option<Reply>> {
    let framing = head
        .framing()
        .map_err(|e| Some(Reply::error(400, format!("bad request: {e}")).closing()))?;
    let too_large =
        || Some(Reply::error(413, format!("request body over {MAX_BODY} bytes")).closing());
    if let Framing::Length(n) = framing {
        if n > MAX_BODY {
            return Err(too_large());
        }
    }
    let mut body = Vec::new();
    BodyReader::new(&mut caller.conn, framing)
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|_| None)?;
    if body.len() as u64 > MAX_BODY {
        return Err(too_large());
    }
    Ok(body)
}

fn write_reply<W: Write>(out: &mut W, reply: &Reply, keep_alive: bool) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(&reply.body).unwrap_or_default();
    let mut headers: Vec<(String, String)> = vec![
        ("Cache-Control".into(), "no-store".into()),
        ("X-Content-Type-Options".into(), "nosniff".into()),
    ];
    if reply.status == 401 {
        headers.push((
            "WWW-Authenticate".into(),
            "Bearer realm=\"vcs-gateway\"".into(),
        ));
    }
    http1::write_simple_with(
        out,
        reply.status,
        "application/json",
        &body,
        keep_alive,
        &headers,
    )
}

/// Routes an authorized request.
fn answer(head: &RequestHead, body: &[u8], hub: &Hub) -> Reply {
    let (path, query) = head
        .target
        .split_once('?')
        .unwrap_or((head.target.as_str(), ""));
    let segments: Vec<&str> = path
        .trim_start_matches("/api")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = head.method.as_str();
    match (method, segments.as_slice()) {
        ("GET", ["pools"]) => list(hub),
        ("POST", ["pools"]) => create(hub, body),
        ("GET", ["pools", name]) => with_pool(hub, name, |pool| {
            Reply::ok(200, json!({ "pool": pool_json(pool) }))
        }),
        ("DELETE", ["pools", name]) => delete(hub, name),
        ("PATCH", ["pools", name]) => update_webhook(hub, name, body),
        ("POST", ["pools", name, "rotate"]) => rotate(hub, name),
        ("GET", ["pools", name, "agents"]) => with_pool(hub, name, |pool| {
            Reply::ok(
                200,
                json!({ "pool": pool.name(), "agents": agents_json(pool) }),
            )
        }),
        ("GET", ["pools", name, "log"]) => match (log_limit(query), LogFilter::parse(query)) {
            (Ok(limit), Ok(filter)) => with_pool(hub, name, |pool| log(pool, limit, &filter)),
            (Err(reply), _) | (_, Err(reply)) => reply,
        },
        ("GET", ["callers"]) => list_callers(hub),
        ("POST", ["callers"]) => create_caller(hub, body),
        ("GET", ["callers", name]) => with_caller(hub, name, |c| {
            Reply::ok(200, json!({ "caller": caller_json(c) }))
        }),
        ("DELETE", ["callers", name]) => delete_caller(hub, name),
        ("POST", ["callers", name, "rotate"]) => rotate_caller(hub, name),
        ("GET", ["pools", name, "refused"]) => with_pool(hub, name, |pool| {
            Reply::ok(200, refused_json(std::slice::from_ref(pool)))
        }),
        ("GET", ["refused"]) => Reply::ok(200, refused_json(&hub.pools())),
        ("GET", ["traffic"]) => Reply::ok(200, traffic_json(&hub.pools())),
        (_, ["refused" | "traffic"]) => {
            Reply::error(405, format!("{method} is not allowed on {path}"))
        }
        (_, ["pools"] | ["pools", _] | ["pools", _, "rotate" | "agents" | "log" | "refused"]) => {
            Reply::error(405, format!("{method} is not allowed on {path}"))
        }
        (_, ["callers"] | ["callers", _] | ["callers", _, "rotate"]) => {
            Reply::error(405, format!("{method} is not allowed on {path}"))
        }
        _ => Reply::error(404, format!("no API endpoint {path}")),
    }
}

fn with_pool(hub: &Hub, name: &str, f: impl FnOnce(&Arc<LivePool>) -> Reply) -> Reply {
    match hub.pool(name) {
        Some(pool) => f(&pool),
        None => Reply::error(404, format!("no pool named \"{name}\"")),
    }
}

fn log_limit(query: &str) -> Result<usize, Reply> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "limit")
        .map(|(_, v)| v);
    match value {
        None => Ok(DEFAULT_LOG_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=RECENT_REQUESTS).contains(&n) => Ok(n),
            _ => Err(Reply::field_error(
                400,
                "limit",
                format!("limit must be a number from 1 to {RECENT_REQUESTS}"),
            )),
        },
    }
}

fn pool_json(pool: &LivePool) -> Value {
    let record = pool.record();
    let streams = pool.streams();
    let busy = pool.busy();
    let (requests, denials) = pool.last_hour();
    let agents = pool.agents();
    let (minutes, errors, (state, state_reason)) = pool.traffic(|t, now| {
        let minutes = t.minutes(now);
        let errors: u64 = minutes.iter().map(|m| m.counts.errors).sum();
        (minutes, errors, t.state(now, agents.len()))
    });
    json!({
        "name": record.name,
        "description": record.description,
        "id": record.ulid,
        "webhook_url": record.webhook_url,
        "webhooks": pool.webhooks.failures_first(),
        "created": record.created,
        "created_at": format_time(record.created),
        "agents": pool.agents().len(),
        "streams": streams,
        "busy": busy,
        "idle": streams.saturating_sub(busy),
        "requests_last_hour": requests,
        "denials_last_hour": denials,
        "requests_total": pool.requests(),
        "errors_last_hour": errors,
        "state": state,
        "state_reason": state_reason,
        "warnings": agent_warnings(&agents),
        "minutes": minutes,
    })
}

fn agents_json(pool: &LivePool) -> Vec<Value> {
    let mut agents = pool.agents();
    agents.sort_by_key(|a| a.connected_since);
    agents
        .into_iter()
        .map(|agent| {
            let idle = agent.streams.saturating_sub(agent.busy);
            let since = format_time(agent.connected_since);
            let mut value = serde_json::to_value(agent).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("idle".into(), idle.into());
                object.insert("connected_since_at".into(), since.into());
            }
            value
        })
        .collect()
}

/// What an operator should know about a pool's agents: no redundancy, mixed versions.
fn agent_warnings(agents: &[AgentInfo]) -> Vec<String> {
    let mut warnings = Vec::new();
    match agents.len() {
        0 => warnings.push("no agent is connected: requests fail with no_agent".to_string()),
        1 => {
            warnings.push("only one agent is connected: nothing takes over if it stops".to_string())
        }
        _ => {}
    }
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    for agent in agents {
        *versions.entry(agent.version.as_str()).or_default() += 1;
    }
    if versions.len() > 1 {
        let list: Vec<String> = versions
            .iter()
            .map(|(version, n)| format!("{version} ({n})"))
            .collect();
        warnings.push(format!(
            "agents run different versions: {}",
            list.join(", ")
        ));
    }
    warnings
}

/// Which requests of the access log to show: `outcome` (`all`, `denied`, `errors`), a
/// `path` substring and a `caller` name, all from the query.
#[derive(Debug, Default, PartialEq)]
struct LogFilter {
    outcome: Outcome,
    path: String,
    caller: String,
}

#[derive(Debug, Default, PartialEq, Clone, Copy)]
enum Outcome {
    #[default]
    All,
    Denied,
    Errors,
}

impl LogFilter {
    fn parse(query: &str) -> Result<LogFilter, Reply> {
        let mut filter = LogFilter::default();
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            let value = percent_decode(value);
            match key {
                "outcome" => {
                    filter.outcome = match value.as_str() {
                        "all" | "" => Outcome::All,
                        "denied" => Outcome::Denied,
                        "errors" => Outcome::Errors,
                        _ => {
                            return Err(Reply::field_error(
                                400,
                                "outcome",
                                "outcome must be all, denied or errors",
                            ))
                        }
                    }
                }
                "path" => filter.path = value.to_ascii_lowercase(),
                "caller" => filter.caller = value,
                _ => {}
            }
        }
        Ok(filter)
    }

    fn matches(&self, record: &RequestRecord) -> bool {
        let counts = crate::gateway::state::stats::classify(record);
        let outcome = match self.outcome {
            Outcome::All => true,
            Outcome::Denied => counts.denied == 1,
            Outcome::Errors => counts.errors == 1,
        };
        let caller = self.caller.is_empty() || record.caller.as_deref() == Some(&self.caller);
        outcome && caller && record.path.to_ascii_lowercase().contains(&self.path)
    }
}

/// A query value with `+` and `%XX` decoded, as a browser's `URLSearchParams` encodes it.
fn percent_decode(value: &str) -> String {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The latest requests of `pool` that pass `filter`, newest first.
fn log(pool: &LivePool, limit: usize, filter: &LogFilter) -> Reply {
    let requests: Vec<RequestRecord> = pool
        .recent(RECENT_REQUESTS)
        .into_iter()
        .filter(|r| filter.matches(r))
        .take(limit)
        .collect();
    Reply::ok(200, json!({ "pool": pool.name(), "requests": requests }))
}

/// The refused shapes of the last hour over `pools`, the most frequent first.
fn refused_json(pools: &[Arc<LivePool>]) -> Value {
    let mut groups: Vec<(String, GroupView)> = Vec::new();
    let mut dropped = 0;
    for pool in pools {
        let name = pool.name();
        let (rows, lost) = pool.traffic(|t, now| (t.refused(now), t.dropped()));
        dropped += lost;
        groups.extend(rows.into_iter().map(|row| (name.clone(), row)));
    }
    groups.sort_by(|(_, a), (_, b)| {
        b.count
            .cmp(&a.count)
            .then(b.last_seen_ms.cmp(&a.last_seen_ms))
    });
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(pool, row)| {
            let mut value = serde_json::to_value(row).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("pool".into(), pool.into());
            }
            value
        })
        .collect();
    json!({ "groups": groups, "dropped": dropped })
}

/// Each caller's requests, denials and failures in the last hour, in all and per pool.
fn traffic_json(pools: &[Arc<LivePool>]) -> Value {
    let mut callers: BTreeMap<String, (Counts, BTreeMap<String, Counts>)> = BTreeMap::new();
    for pool in pools {
        let name = pool.name();
        for (caller, counts) in pool.traffic(|t, now| t.by_caller(now)) {
            let entry = callers.entry(caller).or_default();
            entry.0.requests += counts.requests;
            entry.0.denied += counts.denied;
            entry.0.errors += counts.errors;
            entry.1.insert(name.clone(), counts);
        }
    }
    let callers: serde_json::Map<String, Value> = callers
        .into_iter()
        .map(|(caller, (total, pools))| {
            let mut value = serde_json::to_value(total).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("pools".into(), json!(pools));
            }
            (caller, value)
        })
        .collect();
    json!({ "callers": callers })
}

fn list(hub: &Hub) -> Reply {
    let pools: Vec<Value> = hub.pools().iter().map(|p| pool_json(p)).collect();
    Reply::ok(200, json!({ "pools": pools }))
}

/// The fields of a create request, or the reply naming the bad one.
fn parse_create(body: &[u8]) -> Result<(String, String), Reply> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Reply::error(
            400,
            format!("the body must be a JSON object {{\"name\", \"description\"}}: {e}"),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(Reply::error(
            400,
            "the body must be a JSON object {\"name\", \"description\"}",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "description"))
    {
        return Err(Reply::field_error(
            400,
            unknown,
            format!("unknown field \"{unknown}\": expected \"name\" and \"description\""),
        ));
    }
    let name = required_name(object)?;
    validate_name(&name).map_err(|e| Reply::field_error(400, "name", e.to_string()))?;
    let description = match object.get("description") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(Reply::field_error(
                400,
                "description",
                "description must be a string",
            ))
        }
    };
    if description.len() > MAX_DESCRIPTION {
        return Err(Reply::field_error(
            400,
            "description",
            format!("description must be at most {MAX_DESCRIPTION} bytes"),
        ));
    }
    if description.chars().any(char::is_control) {
        return Err(Reply::field_error(
            400,
            "description",
            "description must be one line without control characters",
        ));
    }
    Ok((name, description))
}

fn duplicate(name: &str) -> Reply {
    Reply::field_error(
        409,
        "name",
        format!("a pool named \"{name}\" already exists"),
    )
}

fn create(hub: &Hub, body: &[u8]) -> Reply {
    let (name, description) = match parse_create(body) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    match hub.store.load() {
        Ok(pools) if pools.iter().any(|p| p.name == name) => return duplicate(&name),
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    let (record, key) = match hub.store.create(&name, &description) {
        Ok(created) => created,
        // Another writer took the name between our look and the store's.
        Err(StoreError::Exists { .. }) => return duplicate(&name),
        Err(e) => return failed(hub, e),
    };
    log::info!(target: "api", "pool {name} created ({})", record.ulid);
    issue(
        hub,
        &name,
        Token {
            host: public_url(hub),
            key,
            pool_ulid: record.ulid,
        },
        201,
    )
}

fn delete(hub: &Hub, name: &str) -> Reply {
    match hub.store.delete(name) {
        Ok(true) => {
            // The pool also left every caller's scope.
            if let Err(e) = hub.reload().and_then(|()| hub.callers.reload()) {
                return internal(e);
            }
            log::info!(target: "api", "pool {name} deleted: its agents are disconnected");
            Reply::ok(200, json!({ "deleted": name }))
        }
        Ok(false) => Reply::error(404, format!("no pool named \"{name}\"")),
        Err(e) => failed(hub, e),
    }
}

fn rotate(hub: &Hub, name: &str) -> Reply {
    match hub.store.rotate(name) {
        Ok(Some((record, key))) => {
            log::info!(target: "api", "pool {name} has a new key: streams with the old one are closed");
            issue(
                hub,
                name,
                Token {
                    host: public_url(hub),
                    key,
                    pool_ulid: record.ulid,
                },
                200,
            )
        }
        Ok(None) => Reply::error(404, format!("no pool named \"{name}\"")),
        Err(e) => failed(hub, e),
    }
}

/// `PATCH /api/pools/NAME` with `{"webhook_url": URL | null}`: sets or clears the pool's
/// webhook URL; a pool's first URL comes back with its `webhook_secret`, shown this once.
fn update_webhook(hub: &Hub, name: &str, body: &[u8]) -> Reply {
    const SHAPE: &str = "the body must be a JSON object {\"webhook_url\": URL or null}";
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return Reply::error(400, format!("{SHAPE}: {e}")),
    };
    let url = match value.as_object().map(|o| (o.len(), o.get("webhook_url"))) {
        Some((1, Some(Value::String(url)))) => Some(url.as_str()),
        Some((1, Some(Value::Null))) => None,
        _ => return Reply::field_error(400, "webhook_url", SHAPE),
    };
    let secret = match hub.store.set_webhook(name, url) {
        Ok(Some((_, secret))) => secret,
        Ok(None) => return Reply::error(404, format!("no pool named \"{name}\"")),
        Err(e @ StoreError::WebhookUrl(_)) => {
            return Reply::field_error(400, "webhook_url", e.to_string())
        }
        Err(e) => return failed(hub, e),
    };
    if let Err(e) = hub.reload() {
        return internal(e);
    }
    log::info!(target: "api", "pool {name}: webhook URL {}", if url.is_some() { "set" } else { "cleared" });
    with_pool(hub, name, |pool| {
        let mut answer = json!({ "pool": pool_json(pool) });
        if let Some(secret) = secret {
            answer["webhook_secret"] = Value::from(secret.expose());
        }
        Reply::ok(200, answer)
    })
}

/// Applies a store change to the live pools and answers with the pool and its new token.
fn issue(hub: &Hub, name: &str, token: Token, status: u16) -> Reply {
    if let Err(e) = hub.reload() {
        return internal(e);
    }
    let Some(pool) = hub.pool(name) else {
        return internal(format!("pool {name} vanished right after it was written"));
    };
    Reply::ok(
        status,
        json!({ "pool": pool_json(&pool), "token": token.encode() }),
    )
}

fn caller_json(caller: &CallerRecord) -> Value {
    json!({
        "name": caller.name,
        "id": caller.id,
        "created": caller.created,
        "created_at": format_time(caller.created),
        "all_pools": caller.all_pools,
        "pools": caller.pools,
    })
}

fn list_callers(hub: &Hub) -> Reply {
    match hub.store.load_callers() {
        Ok(callers) => {
            let callers: Vec<Value> = callers.iter().map(caller_json).collect();
            Reply::ok(200, json!({ "callers": callers }))
        }
        Err(e) => internal(e),
    }
}

fn with_caller(hub: &Hub, name: &str, f: impl FnOnce(&CallerRecord) -> Reply) -> Reply {
    match hub.store.load_callers() {
        Ok(callers) => match callers.iter().find(|c| c.name == name) {
            Some(caller) => f(caller),
            None => Reply::error(404, format!("no caller named \"{name}\"")),
        },
        Err(e) => internal(e),
    }
}

/// The fields of a caller create request, or the reply naming the bad one.
fn parse_create_caller(body: &[u8]) -> Result<(String, Scope), Reply> {
    const SHAPE: &str = "the body must be a JSON object {\"name\", \"pools\": [..]} or {\"name\", \"all_pools\": true}";
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Reply::error(400, format!("{SHAPE}: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Reply::error(400, SHAPE));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "pools" | "all_pools"))
    {
        return Err(Reply::field_error(
            400,
            unknown,
            format!("unknown field \"{unknown}\": {SHAPE}"),
        ));
    }
    let name = required_name(object)?;
    validate_caller_name(&name).map_err(|e| Reply::field_error(400, "name", e.to_string()))?;
    Ok((name, parse_scope(object)?))
}

/// The `name` of a create request's body, which must be a string.
fn required_name(object: &serde_json::Map<String, Value>) -> Result<String, Reply> {
    match object.get("name") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Reply::field_error(400, "name", "name must be a string")),
        None => Err(Reply::field_error(400, "name", "name is required")),
    }
}

/// A new caller's scope: `pools` (a list of names) or `all_pools: true`, exactly one.
fn parse_scope(object: &serde_json::Map<String, Value>) -> Result<Scope, Reply> {
    let all = match object.get("all_pools") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Reply::field_error(
                400,
                "all_pools",
                "all_pools must be true or false",
            ))
        }
    };
    let pools = match object.get("pools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| p.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Reply::field_error(400, "pools", "pools must be a list of pool names")
            })?,
        Some(_) => {
            return Err(Reply::field_error(
                400,
                "pools",
                "pools must be a list of pool names",
            ))
        }
    };
    match (all, pools.is_empty()) {
        (true, true) => Ok(Scope::All),
        (false, false) => Ok(Scope::Pools(pools)),
        (true, false) => Err(Reply::field_error(
            400,
            "pools",
            "give pools or all_pools, not both",
        )),
        (false, true) => Err(Reply::field_error(
            400,
            "pools",
            "a caller needs at least one pool (or all_pools: true)",
        )),
    }
}

fn create_caller(hub: &Hub, body: &[u8]) -> Reply {
    let (name, scope) = match parse_create_caller(body) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let existing = match (hub.store.load_callers(), hub.store.load()) {
        (Ok(callers), Ok(pools)) => (callers, pools),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    if existing.0.iter().any(|c| c.name == name) {
        return caller_exists(&name);
    }
    if let Scope::Pools(wanted) = &scope {
        if let Some(missing) = wanted
            .iter()
            .find(|w| !existing.1.iter().any(|p| &p.name == *w))
        {
            return Reply::field_error(400, "pools", format!("no pool named \"{missing}\""));
        }
    }
    match hub.store.create_caller(&name, &scope, None) {
        Ok((record, secret)) => {
            log::info!(target: "api", "caller {name} created ({})", record.id);
            issue_caller(hub, &record, &secret, 201)
        }
        // Only a race with another writer gets here (the checks above passed).
        Err(e) => failed(hub, e),
    }
}

fn caller_exists(name: &str) -> Reply {
    Reply::field_error(
        409,
        "name",
        format!("a caller named \"{name}\" already exists"),
    )
}

fn rotate_caller(hub: &Hub, name: &str) -> Reply {
    match hub.store.rotate_caller(name) {
        Ok(Some((record, secret))) => {
            log::info!(target: "api", "caller {name} has a new secret: the old one no longer works");
            issue_caller(hub, &record, &secret, 200)
        }
        Ok(None) => Reply::error(404, format!("no caller named \"{name}\"")),
        Err(e) => failed(hub, e),
    }
}

fn delete_caller(hub: &Hub, name: &str) -> Reply {
    match hub.store.delete_caller(name) {
        Ok(true) => {
            if let Err(e) = hub.callers.reload() {
                return internal(e);
            }
            log::info!(target: "api", "caller {name} deleted");
            Reply::ok(200, json!({ "deleted": name }))
        }
        Ok(false) => Reply::error(404, format!("no caller named \"{name}\"")),
        Err(e) => failed(hub, e),
    }
}

/// Applies a caller change to the live callers and answers with the caller and its secret.
fn issue_caller(hub: &Hub, record: &CallerRecord, secret: &Secret, status: u16) -> Reply {
    if let Err(e) = hub.callers.reload() {
        return internal(e);
    }
    Reply::ok(
        status,
        json!({ "caller": caller_json(record), "secret": secret.expose() }),
    )
}

fn public_url(hub: &Hub) -> String {
    hub.settings
        .public_url
        .clone()
        .unwrap_or_else(|| "ws://127.0.0.1:1984".into())
}

/// A change that failed: `503` when the store (Redis) cannot be reached, so the operator
/// knows to try again, `500` otherwise.
fn failed(hub: &Hub, error: impl std::fmt::Display) -> Reply {
    if !hub.store.reachable() {
        log::warn!(target: "api", "a change was refused: Redis is unreachable");
        return Reply::error(503, crate::gateway::store::redis::UNREACHABLE);
    }
    internal(error)
}

fn internal(error: impl std::fmt::Display) -> Reply {
    log::error!(target: "api", "{error}");
    Reply::error(500, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(reply: Reply) -> (u16, String) {
        (
            reply.status,
            reply.body["field"].as_str().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn create_bodies_are_validated_field_by_field() {
        assert_eq!(
            parse_create(br#"{"name":"infra","description":"EU GitLab"}"#).ok(),
            Some(("infra".into(), "EU GitLab".into()))
        );
        assert_eq!(
            parse_create(br#"{"name":"infra"}"#).ok(),
            Some(("infra".into(), String::new()))
        );
        let bad = |body: &[u8]| field(parse_create(body).err().unwrap());
        assert_eq!(bad(br#"{"name":"Infra"}"#), (400, "name".into()));
        assert_eq!(bad(br#"{"description":"x"}"#), (400, "name".into()));
        assert_eq!(bad(br#"{"name":7}"#), (400, "name".into()));
        assert_eq!(
            bad(br#"{"name":"a","description":"two\nlines"}"#),
            (400, "description".into())
        );
        let long = format!(r#"{{"name":"a","description":"{}"}}"#, "x".repeat(1025));
        assert_eq!(bad(long.as_bytes()), (400, "description".into()));
        assert_eq!(bad(br#"{"name":"a","color":"red"}"#), (400, "color".into()));
        assert_eq!(bad(b"not json"), (400, String::new()));
        assert_eq!(bad(b"[1]"), (400, String::new()));
    }

    #[test]
    fn log_filters_parse_and_match() {
        let filter = LogFilter::parse("limit=5&outcome=denied&path=Projects%2F1+x")
            .ok()
            .unwrap();
        assert_eq!(filter.outcome, Outcome::Denied);
        assert_eq!(filter.path, "projects/1 x");
        assert!(LogFilter::parse("outcome=weird").is_err());
        let record = |status, error| RequestRecord {
            path: "/api/v4/projects/group%2Frepo/hooks".into(),
            status,
            error,
            ..RequestRecord::default()
        };
        let denied = record(403, Some(crate::protocol::ErrorKind::Denied));
        let failed = record(502, Some(crate::protocol::ErrorKind::UpstreamUnreachable));
        let served = record(200, None);
        let by = |q: &str| LogFilter::parse(q).ok().unwrap();
        assert!(by("outcome=denied").matches(&denied));
        assert!(!by("outcome=denied").matches(&failed));
        assert!(by("outcome=errors").matches(&failed));
        assert!(!by("outcome=errors").matches(&served));
        assert!(by("path=GROUP%252F").matches(&served));
        assert!(!by("path=hooks/1").matches(&served));
        let from_ci = RequestRecord {
            caller: Some("ci".into()),
            ..served.clone()
        };
        assert!(by("caller=ci").matches(&from_ci));
        assert!(!by("caller=ci").matches(&served));
        assert!(!by("caller=c").matches(&from_ci));
    }

    #[test]
    fn agent_warnings_name_missing_redundancy_and_mixed_versions() {
        let agent = |version: &str| AgentInfo {
            instance: "i".into(),
            version: version.into(),
            metadata: BTreeMap::new(),
            remote: "127.0.0.1:1".into(),
            connected_since: 0,
            streams: 1,
            busy: 0,
        };
        assert!(agent_warnings(&[])[0].contains("no agent"));
        assert!(agent_warnings(&[agent("1.0")])[0].contains("only one agent"));
        assert!(agent_warnings(&[agent("1.0"), agent("1.0")]).is_empty());
        let mixed = agent_warnings(&[agent("1.0"), agent("1.1"), agent("1.0")]);
        assert_eq!(mixed, ["agents run different versions: 1.0 (2), 1.1 (1)"]);
    }

    #[test]
    fn log_limits_are_bounded() {
        assert_eq!(log_limit("").ok(), Some(DEFAULT_LOG_LIMIT));
        assert_eq!(log_limit("x=1&limit=5").ok(), Some(5));
        assert!(log_limit("limit=0").is_err());
        assert!(log_limit("limit=many").is_err());
        assert!(log_limit(&format!("limit={}", RECENT_REQUESTS + 1)).is_err());
    }
}
