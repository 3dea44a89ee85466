//! What the panel draws for each pool: its requests, denials and failures per minute over the
//! last hour, and its denied requests of the last hour grouped by shape.
//!
//! Both live in memory and both are bounded whatever the traffic: the minutes are a ring of
//! [`MINUTES`] slots, each tagged with the minute it counts, so a slot is reused an hour later
//! and nothing grows or needs pruning; the refused groups are capped at [`MAX_GROUPS`] per
//! pool (the group seen least recently makes room) with their texts cut to a bounded length,
//! because a caller decides how many different paths it sends. A gateway restart starts them
//! empty: they are a view of the last hour, `/metrics` keeps the lasting counters.
//!
//! A path's *shape* is the path with what varies between requests of the same kind (ids,
//! commit shas, project, repository and branch names) replaced by placeholders, so that
//! `/api/v4/projects/12/hooks` and `/api/v4/projects/group%2Frepo/hooks` are one row,
//! `/api/v4/projects/{project}/hooks`. The gateway does not know the vendor, so [`shape`]
//! knows the places where the four vendors' APIs put names.
//!
//! Groups pushed out are counted in `dropped`. A pool's state word covers the last
//! `STATE_MINUTES` (5) minutes: Refusing when a tenth or more of its requests were denied,
//! Failing when a tenth or more failed (no agent, queue timeout, VCS unreachable or timing out,
//! agent lost, a VCS `5xx`): a tenth going wrong is what an operator should look at.

use crate::gateway::state::record::RequestRecord;
use crate::protocol::ErrorKind;
use serde::Serialize;
use std::collections::HashMap;

/// Minutes of history per pool.
pub const MINUTES: usize = 60;

/// Refused-request groups kept per pool.
pub const MAX_GROUPS: usize = 100;

/// Longest shape, example path, reason and caller name kept in a group, in bytes.
const MAX_TEXT: usize = 512;

/// Distinct caller names kept per group.
const MAX_CALLERS: usize = 4;

/// Callers whose figures a pool keeps (callers are configured, so this is only a guard).
const MAX_TRACKED_CALLERS: usize = 256;

/// How many minutes the pool's state ([`Traffic::state`]) looks back.
pub const STATE_MINUTES: u64 = 5;

/// One minute's figures of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every request that reached the pool, whatever its outcome.
    pub requests: u64,
    /// Refused by the agent's allowlist (`403 denied`).
    pub denied: u64,
    /// Failed on the way: no agent, queue timeout, VCS unreachable or timing out, agent lost,
    /// or a `5xx` answer from the VCS.
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.denied += other.denied;
        self.errors += other.errors;
    }
}

/// How a finished request counts.
pub fn classify(record: &RequestRecord) -> Counts {
    let (denied, errors) = match record.error {
        // Refused: by the agent's allowlist (the gateway's own refusals of a caller never
        // reach a pool, and would count here too).
        Some(ErrorKind::Denied | ErrorKind::Forbidden | ErrorKind::Unauthorized) => (true, false),
        // The caller's own mistake: neither refused nor a failure of the pool.
        Some(ErrorKind::BadRequest | ErrorKind::UnknownPool | ErrorKind::CallerTooSlow) => {
            (false, false)
        }
        Some(
            ErrorKind::NoAgent
            | ErrorKind::QueueTimeout
            | ErrorKind::UpstreamUnreachable
            | ErrorKind::UpstreamTimeout
            | ErrorKind::AgentLost,
        ) => (false, true),
        None => (false, record.status >= 500),
    };
    Counts {
        requests: 1,
        denied: u64::from(denied),
        errors: u64::from(errors),
    }
}

/// A fixed ring of one value per minute: slot `minute % MINUTES`, tagged with its minute.
#[derive(Debug, Clone)]
struct Ring<T> {
    slots: [(u64, T); MINUTES],
}

impl<T: Copy + Default> Ring<T> {
    fn new() -> Ring<T> {
        Ring {
            slots: [(u64::MAX, T::default()); MINUTES],
        }
    }

    /// The value of `minute`, started afresh when its slot last counted an older minute.
    fn at(&mut self, minute: u64) -> &mut T {
        let slot = &mut self.slots[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, T::default());
        }
        &mut slot.1
    }

    /// The last `n` minutes up to `now`, oldest first (a minute nobody counted is zero).
    fn last(&self, now: u64, n: u64) -> impl Iterator<Item = (u64, T)> + '_ {
        let n = n.min(MINUTES as u64).min(now + 1);
        (now + 1 - n..=now).map(move |minute| {
            let slot = self.slots[(minute % MINUTES as u64) as usize];
            (
                minute,
                if slot.0 == minute {
                    slot.1
                } else {
                    T::default()
                },
            )
        })
    }
}

/// One minute of the JSON API's `minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MinuteView {
    /// Unix time of the minute's start, in milliseconds.
    pub time_ms: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Denied requests of one method and path shape.
#[derive(Debug, Clone)]
struct Group {
    method: String,
    shape: String,
    counts: Ring<u32>,
    reason: String,
    callers: Vec<String>,
    last_seen_ms: u64,
    example: String,
}

/// One row of the refused view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    pub method: String,
    pub shape: String,
    /// Denials of this shape in the last hour.
    pub count: u64,
    /// The latest denial's reason.
    pub reason: String,
    /// Callers that sent it, the latest first (empty before callers authenticate).
    pub callers: Vec<String>,
    pub last_seen_ms: u64,
    /// The latest path of this shape, without its query.
    pub example: String,
}

/// What a pool did in the last hour.
#[derive(Debug, Clone)]
pub struct Traffic {
    minutes: Ring<Counts>,
    /// The same per caller that sent requests to this pool.
    callers: HashMap<String, Ring<Counts>>,
    groups: HashMap<String, Group>,
    /// Denials whose group had to make room for another one.
    dropped: u64,
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            minutes: Ring::new(),
            callers: HashMap::new(),
            groups: HashMap::new(),
            dropped: 0,
        }
    }
}

/// `text` cut to at most [`MAX_TEXT`] bytes on a character boundary.
fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl Traffic {
    /// Counts a finished request (and groups it when it was denied).
    pub fn record(&mut self, record: &RequestRecord) {
        let caller = record.caller.as_deref();
        let minute = record.time_ms / 60_000;
        let counts = classify(record);
        self.minutes.at(minute).add(counts);
        if let Some(caller) = caller {
            self.count_caller(caller, minute, counts);
        }
        if counts.denied == 1 {
            self.group(record, caller, minute);
        }
    }

    fn count_caller(&mut self, caller: &str, minute: u64, counts: Counts) {
        if !self.callers.contains_key(caller) && self.callers.len() >= MAX_TRACKED_CALLERS {
            // Callers deleted or silent for an hour make room; else this one goes uncounted.
            self.callers.retain(|_, ring| {
                ring.last(minute, MINUTES as u64)
                    .any(|(_, c)| c.requests > 0)
            });
            if self.callers.len() >= MAX_TRACKED_CALLERS {
                return;
            }
        }
        self.callers
            .entry(caller.to_string())
            .or_insert_with(Ring::new)
            .at(minute)
            .add(counts);
    }

    /// Each caller's sums over the last hour, for callers that sent anything.
    pub fn by_caller(&self, now_ms: u64) -> Vec<(String, Counts)> {
        self.callers
            .iter()
            .map(|(name, ring)| {
                let mut total = Counts::default();
                for (_, counts) in ring.last(now_ms / 60_000, MINUTES as u64) {
                    total.add(counts);
                }
                (name.clone(), total)
            })
            .filter(|(_, total)| total.requests > 0)
            .collect()
    }

    fn group(&mut self, record: &RequestRecord, caller: Option<&str>, minute: u64) {
        let path = record.path.split('?').next().unwrap_or("");
        let shape = bounded(&shape(path));
        let key = format!("{} {shape}", record.method);
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            self.make_room(minute);
        }
        let group = self.groups.entry(key).or_insert_with(|| Group {
            method: bounded(&record.method),
            shape,
            counts: Ring::new(),
            reason: String::new(),
            callers: Vec::new(),
            last_seen_ms: 0,
            example: String::new(),
        });
        *group.counts.at(minute) += 1;
        group.reason = bounded(record.reason.as_deref().unwrap_or(""));
        group.last_seen_ms = record.time_ms;
        group.example = bounded(path);
        if let Some(caller) = caller {
            group.callers.retain(|c| c != caller);
            group.callers.insert(0, bounded(caller));
            group.callers.truncate(MAX_CALLERS);
        }
    }

    /// Drops the groups older than an hour, or else the one seen least recently.
    fn make_room(&mut self, minute: u64) {
        let hour_ago_ms = (minute + 1).saturating_sub(MINUTES as u64) * 60_000;
        self.groups.retain(|_, g| g.last_seen_ms >= hour_ago_ms);
        if self.groups.len() < MAX_GROUPS {
            return;
        }
        let oldest = self
            .groups
            .iter()
            .min_by_key(|(_, g)| g.last_seen_ms)
            .map(|(k, g)| {
                let count: u64 = g
                    .counts
                    .last(minute, MINUTES as u64)
                    .map(|(_, n)| u64::from(n))
                    .sum();
                (k.clone(), count)
            });
        if let Some((key, count)) = oldest {
            self.dropped += count;
            self.groups.remove(&key);
        }
    }

    /// The last hour minute by minute, oldest first, ending with the minute of `now_ms`.
    pub fn minutes(&self, now_ms: u64) -> Vec<MinuteView> {
        self.minutes
            .last(now_ms / 60_000, MINUTES as u64)
            .map(|(minute, counts)| MinuteView {
                time_ms: minute * 60_000,
                counts,
            })
            .collect()
    }

    /// The sums of the last `n` minutes up to `now_ms`.
    pub fn sum(&self, now_ms: u64, n: u64) -> Counts {
        let mut total = Counts::default();
        for (_, counts) in self.minutes.last(now_ms / 60_000, n) {
            total.add(counts);
        }
        total
    }

    /// The denied shapes of the last hour, the most frequent first.
    pub fn refused(&self, now_ms: u64) -> Vec<GroupView> {
        let now = now_ms / 60_000;
        let mut rows: Vec<GroupView> = self
            .groups
            .values()
            .map(|g| GroupView {
                method: g.method.clone(),
                shape: g.shape.clone(),
                count: g
                    .counts
                    .last(now, MINUTES as u64)
                    .map(|(_, n)| u64::from(n))
                    .sum(),
                reason: g.reason.clone(),
                callers: g.callers.clone(),
                last_seen_ms: g.last_seen_ms,
                example: g.example.clone(),
            })
            .filter(|row| row.count > 0)
            .collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.last_seen_ms.cmp(&a.last_seen_ms))
                .then(a.shape.cmp(&b.shape))
        });
        rows
    }

    /// Denials of the last hour whose group was dropped to bound memory.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the pool is serving, refusing or failing right now (the last
    /// [`STATE_MINUTES`]), with a sentence saying why.
    pub fn state(&self, now_ms: u64, agents: usize) -> (&'static str, String) {
        let Counts {
            requests,
            denied,
            errors,
        } = self.sum(now_ms, STATE_MINUTES);
        let window = format!("in the last {STATE_MINUTES} minutes");
        if agents == 0 {
            return ("offline", "no agent is connected".into());
        }
        if requests == 0 {
            return ("idle", format!("no request {window}"));
        }
        // A tenth of the traffic going wrong is what an operator should look at.
        if errors * 10 >= requests && errors > 0 {
            return (
                "failing",
                format!("{errors} of {requests} requests failed {window}"),
            );
        }
        if denied * 10 >= requests && denied > 0 {
            return (
                "refusing",
                format!("{denied} of {requests} requests denied {window}"),
            );
        }
        (
            "serving",
            format!("{requests} requests {window}, {denied} denied, {errors} failed"),
        )
    }
}

/// What the segment after a keyword is, and how many segments it spans.
fn after_keyword(keyword: &str, so_far: &[String]) -> Option<(&'static str, usize)> {
    Some(match keyword {
        "projects" => ("{project}", 1),
        // Bitbucket: projects/KEY/repos/slug; GitHub Enterprise: repos/owner/repo.
        "repos" if so_far.iter().any(|s| s == "{project}") => ("{repo}", 1),
        "repos" => ("{owner}/{repo}", 2),
        "repositories" | "_git" => ("{repo}", 1),
        "groups" => ("{group}", 1),
        "users" => ("{user}", 1),
        "namespaces" => ("{namespace}", 1),
        "branches" => ("{branch}", 1),
        "tags" => ("{tag}", 1),
        "commits" | "statuses" => ("{sha}", 1),
        "files" => ("{file}", 1),
        "contents" | "raw" | "blob" | "tree" => ("{path}", usize::MAX),
        _ => return None,
    })
}

/// A single segment that varies by itself: numbers, shas, encoded names.
fn placeholder(segment: &str) -> Option<&'static str> {
    let hex = segment.chars().all(|c| c.is_ascii_hexdigit());
    if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
        Some("{id}")
    } else if hex
        && (7..=64).contains(&segment.len())
        && segment.chars().any(|c| c.is_ascii_digit())
    {
        Some("{sha}")
    } else if segment.to_ascii_lowercase().contains("%2f") {
        Some("{path}")
    } else {
        None
    }
}

/// The path with ids, shas and names replaced by placeholders (see the module docs).
pub fn shape(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    let mut i = 0;
    while i < segments.len() {
        let segment = segments[i];
        i += 1;
        if segment.len() > 4 && segment.ends_with(".git") {
            // Git over HTTP: everything before `<repo>.git` names the project.
            let keep = usize::from(out.first().is_some_and(|s| s == "scm"));
            out.truncate(keep);
            out.push("{project}.git".into());
            continue;
        }
        if matches!(segment, "-" | "_apis" | "_git") && !out.is_empty() {
            // GitLab's `/<group>/<repo>/-/…` and Azure DevOps' `/<org>/<project>/_apis/…`.
            let names: &[&str] = if segment == "-" {
                &["{project}"]
            } else {
                &["{org}", "{project}", "{team}"]
            };
            let n = out.len().min(names.len());
            out.clear();
            out.extend(names[..n].iter().map(|s| s.to_string()));
        }
        out.push(segment.to_string());
        if let Some((name, span)) = after_keyword(segment, &out) {
            if i < segments.len() && !segments[i].is_empty() {
                out.push(name.into());
                i = i.saturating_add(span).min(segments.len());
            }
            continue;
        }
        if let (Some(name), Some(last)) = (placeholder(segment), out.last_mut()) {
            *last = name.into();
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(path: &str, minute: u64) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: path.into(),
            time_ms: minute * 60_000 + 5,
            status: 403,
            error: Some(ErrorKind::Denied),
            reason: Some(format!("no rule allows GET {path}")),
            ..RequestRecord::default()
        }
    }

    fn by(record: RequestRecord, caller: &str) -> RequestRecord {
        RequestRecord {
            caller: Some(caller.into()),
            ..record
        }
    }

    fn served(status: u16, minute: u64) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: "/api/v4/user".into(),
            time_ms: minute * 60_000,
            status,
            ..RequestRecord::default()
        }
    }

    #[test]
    fn shapes_collapse_what_varies() {
        let cases = [
            (
                "/api/v4/projects/12/hooks",
                "/api/v4/projects/{project}/hooks",
            ),
            (
                "/api/v4/projects/group%2Frepo/hooks/3",
                "/api/v4/projects/{project}/hooks/{id}",
            ),
            (
                "/api/v4/projects/7/repository/commits/0123abcd4567ef/statuses",
                "/api/v4/projects/{project}/repository/commits/{sha}/statuses",
            ),
            (
                "/api/v4/projects/7/repository/files/dir%2Fa.yml/raw",
                "/api/v4/projects/{project}/repository/files/{file}/raw",
            ),
            ("/group/sub/repo.git/info/refs", "/{project}.git/info/refs"),
            (
                "/scm/KEY/slug.git/git-upload-pack",
                "/scm/{project}.git/git-upload-pack",
            ),
            (
                "/rest/api/1.0/projects/KEY/repos/slug/commits/abc1234",
                "/rest/api/1.0/projects/{project}/repos/{repo}/commits/{sha}",
            ),
            (
                "/api/v3/repos/owner/repo/pulls/7",
                "/api/v3/repos/{owner}/{repo}/pulls/{id}",
            ),
            (
                "/api/v3/repos/o/r/contents/a/b/c.txt",
                "/api/v3/repos/{owner}/{repo}/contents/{path}",
            ),
            (
                "/org/proj/_apis/git/repositories/repo/pullRequests/7",
                "/{org}/{project}/_apis/git/repositories/{repo}/pullRequests/{id}",
            ),
            (
                "/group/repo/-/archive/main/x.zip",
                "/{project}/-/archive/main/x.zip",
            ),
            ("/api/v4/user", "/api/v4/user"),
            ("/", "/"),
            ("/api/v4/projects/", "/api/v4/projects/"),
        ];
        for (path, want) in cases {
            assert_eq!(shape(path), want, "{path}");
        }
    }

    #[test]
    fn minutes_count_each_outcome_and_forget_after_an_hour() {
        let mut t = Traffic::default();
        t.record(&served(200, 100));
        t.record(&served(502, 100));
        t.record(&denied("/x", 100));
        t.record(&served(200, 101));
        let minutes = t.minutes(101 * 60_000 + 30_000);
        assert_eq!(minutes.len(), MINUTES);
        assert_eq!(minutes[59].time_ms, 101 * 60_000);
        assert_eq!(
            minutes[58].counts,
            Counts {
                requests: 3,
                denied: 1,
                errors: 1
            }
        );
        assert_eq!(minutes[59].counts.requests, 1);
        assert_eq!(t.sum(101 * 60_000, 60).requests, 4);
        // An hour later the slot of minute 100 counts minute 160, from zero.
        t.record(&served(200, 160));
        assert_eq!(t.sum(160 * 60_000, 60).requests, 2);
        assert_eq!(t.minutes(160 * 60_000)[59].counts.requests, 1);
    }

    #[test]
    fn denials_group_by_shape_sorted_by_count() {
        let mut t = Traffic::default();
        t.record(&by(
            denied("/api/v4/projects/1/hooks?private_token=***", 10),
            "ci",
        ));
        t.record(&by(denied("/api/v4/projects/2/hooks", 11), "deploy"));
        t.record(&denied("/api/v4/admin", 11));
        let rows = t.refused(11 * 60_000);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].shape, "/api/v4/projects/{project}/hooks");
        assert_eq!(rows[0].count, 2);
        assert_eq!(rows[0].example, "/api/v4/projects/2/hooks");
        assert_eq!(rows[0].callers, ["deploy", "ci"]);
        assert_eq!(rows[1].count, 1);
        // An hour after the last denial nothing is left.
        assert!(t.refused(71 * 60_000).is_empty());
    }

    #[test]
    fn groups_are_capped() {
        let mut t = Traffic::default();
        for n in 0..(MAX_GROUPS + 5) {
            t.record(&denied(&format!("/x/a{n}"), 10 + n as u64 / 50));
        }
        assert_eq!(t.groups.len(), MAX_GROUPS);
        assert_eq!(t.dropped(), 5);
        let long = format!("/{}", "y".repeat(10_000));
        t.record(&denied(&long, 20));
        assert!(t
            .refused(20 * 60_000)
            .iter()
            .all(|r| r.shape.len() <= MAX_TEXT));
    }

    #[test]
    fn callers_are_counted_apart() {
        let mut t = Traffic::default();
        t.record(&by(served(200, 10), "ci"));
        t.record(&by(denied("/a", 10), "ci"));
        t.record(&by(served(200, 10), "deploy"));
        t.record(&served(200, 10));
        let mut rows = t.by_caller(10 * 60_000);
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].1.requests, rows[0].1.denied), (2, 1));
        assert_eq!((rows[1].1.requests, rows[1].1.denied), (1, 0));
        assert!(t.by_caller(80 * 60_000).is_empty());
    }

    #[test]
    fn state_says_serving_refusing_failing() {
        let mut t = Traffic::default();
        assert_eq!(t.state(0, 0).0, "offline");
        assert_eq!(t.state(0, 1).0, "idle");
        t.record(&served(200, 5));
        assert_eq!(t.state(5 * 60_000, 1).0, "serving");
        t.record(&denied("/a", 5));
        assert_eq!(t.state(5 * 60_000, 1).0, "refusing");
        t.record(&served(504, 5));
        assert_eq!(t.state(5 * 60_000, 1).0, "failing");
        assert_eq!(t.state(20 * 60_000, 1).0, "idle");
    }
}
