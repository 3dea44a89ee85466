//! The one canonicaliser and the one matcher shared by every vendor table.
//!
//! # Pattern syntax
//!
//! A pattern is a `/`-separated list of segments, matched against the segments of the
//! canonical path, whole segment against whole segment (there is no prefix matching: a
//! target with one segment more than the pattern does not match).
//!
//! | segment        | matches |
//! |----------------|---------|
//! | `branches`     | exactly that raw segment (no decoding: `%62ranches` is not `branches`) |
//! | `a\|b\|c`      | exactly one of the listed raw segments |
//! | `[api/v3]`     | the literal segments `api/v3`, or nothing (an optional prefix group) |
//! | `{n}`          | 1 to 20 ASCII digits |
//! | `{sha}`        | 7 to 64 hex digits (a commit id) |
//! | `{project}`    | one non-empty segment, a part of the project (decoded) |
//! | `{*project}`   | one or more segments, together the project (decoded, `/`-joined) |
//! | `{encoded_project}` | one segment holding the whole project, `/` encoded as `%2F` (GitLab `:id`); a numeric id is the project as a number string (resolved by the agent, see `Allowlist::decide`) |
//! | `{encoded_path}` | one segment holding a file path, `/` encoded as `%2F` (GitLab files API) |
//! | `{ref}`, `{branch}`, `{tag}` | one segment holding a ref; an encoded slash in it separates the ref's pieces (`feature%2Fx`) |
//! | `{*ref}`, `{*branch}`, `{*basehead}` | one or more segments, together a ref (GitHub's `branches/feature/x`, `compare/main...feature/x`); each segment may also hold encoded slashes; a segment [`REF_STOP`] is refused |
//! | `{*path}`, … | any other `*name`: one or more segments, anything but an encoded slash |
//! | `{project_key}` | two segments: `projects/{KEY}` (project part `KEY`) or `users/{user}` (project part `~user`), Bitbucket's two spellings of a repository's owner |
//! | `{user}`, `{commit}`, … | any other name: one non-empty segment, anything but an encoded slash |
//! | `{…}suffix`    | the parameter followed by the literal `suffix` in the same segment (`{*project}.git`: the suffix is on the last segment) |
//! | (empty, last)  | a pattern ending in `/` matches only a target with a trailing `/` |
//!
//! A segment with an encoded slash (`%2F`) is matched only by the two `encoded_`
//! parameters and the ref parameters; every other parameter and literal refuses it. The
//! pieces between encoded slashes, like every segment, were already held to the
//! dot-segment and encoding rules by [`canonicalize`], so a ref is never `..` or empty
//! in any of its pieces. All parameters refuse the
//! empty trailing segment. The project of a match is the decoded values of its project
//! parameters, in order, joined by `/`; a rule without project parameters has none.

use super::denied::Denied;

/// Longest path (bytes, before the `?`) accepted.
pub(crate) const MAX_PATH_LEN: usize = 8192;
/// Longest query (bytes, after the `?`) accepted.
pub(crate) const MAX_QUERY_LEN: usize = 8192;
/// Percent-decoding levels looked through (`%25252e` is three levels).
const MAX_DECODE_DEPTH: usize = 4;
/// Segments a raw-rest ref (`{*branch}`) never contains: GitHub routes
/// `branches/{branch}/protection…` to the branch protection settings, so a ref spelled
/// across segments must not reach them.
pub(crate) const REF_STOP: &[&str] = &["protection"];

/// HTTP methods a rule may allow. `HEAD` is implied by `Get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    /// Only for Azure DevOps' resource-location discovery; denied wherever no rule lists it.
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// Exact, case-sensitive comparison; `HEAD` counts as `GET`.
    pub(crate) fn allows(self, method: &str) -> bool {
        method == self.as_str() || (self == Method::Get && method == "HEAD")
    }
}

/// What a rule requires of the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The query is not looked at (it still passed the canonical checks).
    Any,
    /// The query must be present and equal to this, byte for byte.
    Exactly(&'static str),
    /// No query (or an empty one): GitHub's GraphQL endpoint would read `query`,
    /// `variables` and `operationName` from it as well as from the inspected body.
    Absent,
}

/// What happens to a request body before it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCheck {
    /// Streamed as it arrives (form bodies are still read for `_method`, see
    /// [`super::body`]).
    Stream,
    /// A GitHub GraphQL document: read whole (bounded), inspected, then forwarded.
    Graphql,
}

/// One row of a vendor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub methods: &'static [Method],
    pub pattern: &'static str,
    pub(crate) query: Query,
    pub description: &'static str,
    /// GitHub Enterprise codeload archive (see [`super::Allowed::codeload`]).
    pub codeload: bool,
    /// The answer lists projects across the VCS (see [`super::Allowed::listing`]).
    pub(crate) listing: bool,
    /// A target this rule allows (with the first of `methods`); the tests check it.
    pub example: &'static str,
    /// Why the rule is there: the vendor's API reference for the endpoint.
    pub source: &'static str,
    /// Query parameters that name another project; each is checked like the path's
    /// project (see [`super::Allowlist::check`]).
    pub(crate) project_params: &'static [&'static str],
    /// How the body is checked.
    pub(crate) body: BodyCheck,
    /// The endpoint reaches repositories its path does not name (a project-wide pull
    /// request id): denied while `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS` is set.
    pub(crate) unscoped: bool,
}

impl Rule {
    pub(crate) const fn new(
        methods: &'static [Method],
        pattern: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Rule {
        Rule {
            methods,
            pattern,
            query: Query::Any,
            description,
            codeload: false,
            listing: false,
            example,
            source: "",
            project_params: &[],
            body: BodyCheck::Stream,
            unscoped: false,
        }
    }

    pub(crate) const fn get(
        pattern: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Rule {
        Rule::new(&[Method::Get], pattern, description, example)
    }

    pub(crate) const fn post(
        pattern: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Rule {
        Rule::new(&[Method::Post], pattern, description, example)
    }

    pub(crate) const fn put(
        pattern: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Rule {
        Rule::new(&[Method::Put], pattern, description, example)
    }

    pub(crate) const fn patch(
        pattern: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Rule {
        Rule::new(&[Method::Patch], pattern, description, example)
    }

    pub(crate) const fn delete(
        pattern: &'static str,
        description: &'static str,
        example: &'static str,
    ) -> Rule {
        Rule::new(&[Method::Delete], pattern, description, example)
    }

    /// Require the query to be exactly `query`.
    pub(crate) const fn with_query(mut self, query: &'static str) -> Rule {
        self.query = Query::Exactly(query);
        self
    }

    /// Mark as a codeload archive.
    pub(crate) const fn codeload(mut self) -> Rule {
        self.codeload = true;
        self
    }

    /// Mark as a listing of projects across the VCS.
    pub(crate) const fn listing(mut self) -> Rule {
        self.listing = true;
        self
    }

    /// The vendor documentation the rule comes from.
    pub(crate) const fn source(mut self, source: &'static str) -> Rule {
        self.source = source;
        self
    }

    /// Query parameters naming another project.
    pub(crate) const fn project_params(mut self, params: &'static [&'static str]) -> Rule {
        self.project_params = params;
        self
    }

    /// The body is a GraphQL document to inspect, and the target has no query (Rails would
    /// merge its parameters with the body's).
    pub(crate) const fn graphql(mut self) -> Rule {
        self.body = BodyCheck::Graphql;
        self.query = Query::Absent;
        self
    }

    /// Denied while projects are restricted.
    pub(crate) const fn unscoped(mut self) -> Rule {
        self.unscoped = true;
        self
    }
}

// ---------------------------------------------------------------------------------------
// Canonical target
// ---------------------------------------------------------------------------------------

/// One path segment of a canonical target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// As sent (still percent-encoded).
    pub(crate) raw: String,
    /// Percent-decoded once, the way the server will read it.
    pub(crate) decoded: Vec<u8>,
    /// The segment contains an encoded slash (`%2F`).
    pub(crate) encoded_slash: bool,
}

/// A target that passed every canonicalisation rule. It is the input, unchanged, plus
/// its parsed segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    target: String,
    path_len: usize,
    segments: Vec<Segment>,
}

impl Canonical {
    /// The whole target, identical to what was canonicalised.
    pub fn as_str(&self) -> &str {
        &self.target
    }

    /// The path (before `?`).
    pub(crate) fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// The query (after `?`), if there is a `?`.
    pub(crate) fn query(&self) -> Option<&str> {
        self.target.get(self.path_len + 1..)
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The same target as a rule table reads it behind a prefix: the first `skip` segments
    /// left out (Azure DevOps Server's `tfs` virtual directory), and `org` put in front (the
    /// collection or organisation the base endpoint already names). What is forwarded and
    /// quoted in reasons stays the target itself.
    pub(crate) fn reframed(&self, skip: usize, org: Option<&str>) -> Canonical {
        let mut segments: Vec<Segment> = org
            .map(|org| Segment {
                raw: org.to_owned(),
                decoded: decode(org.as_bytes()),
                encoded_slash: false,
            })
            .into_iter()
            .collect();
        segments.extend(self.segments.iter().skip(skip).cloned());
        Canonical {
            target: self.target.clone(),
            path_len: self.path_len,
            segments,
        }
    }
}

/// Check a request target against the canonicalisation rules listed in the module
/// documentation of [`super`]. On success the target is returned unchanged together
/// with its segments; it is never rewritten.
pub fn canonicalize(target: &str) -> Result<Canonical, Denied> {
    if !target.starts_with('/') {
        return Err(Denied::path(if has_scheme(target) {
            "absolute-form target"
        } else {
            "target does not start with /"
        }));
    }
    if target.contains('#') {
        return Err(Denied::path("fragment in target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if path.len() > MAX_PATH_LEN {
        return Err(Denied::path(format!(
            "path longer than {MAX_PATH_LEN} bytes"
        )));
    }
    if let Some(q) = query {
        if q.len() > MAX_QUERY_LEN {
            return Err(Denied::path(format!(
                "query longer than {MAX_QUERY_LEN} bytes"
            )));
        }
    }
    check_path_bytes(path.as_bytes())?;
    if let Some(q) = query {
        check_query_bytes(q.as_bytes())?;
    }

    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut segments = Vec::with_capacity(parts.len());
    for (i, raw) in parts.into_iter().enumerate() {
        if raw.is_empty() {
            if i != last {
                return Err(Denied::path("empty segment in path"));
            }
            segments.push(Segment {
                raw: String::new(),
                decoded: Vec::new(),
                encoded_slash: false,
            });
            continue;
        }
        segments.push(check_segment(raw)?);
    }
    Ok(Canonical {
        target: target.to_owned(),
        path_len: path.len(),
        segments,
    })
}

/// `scheme:` as in RFC 3986: a letter, then letters, digits, `+`, `-`, `.`, then `:`.
fn has_scheme(target: &str) -> bool {
    match target.split_once(':') {
        Some((scheme, _)) => {
            let mut bytes = scheme.bytes();
            bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
                && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        }
        None => false,
    }
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn is_hex_escape(bytes: &[u8], i: usize) -> bool {
    bytes.get(i) == Some(&b'%')
        && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

fn has_escape(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|i| is_hex_escape(bytes, i))
}

fn decode(bytes: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(bytes).collect()
}

fn check_path_bytes(path: &[u8]) -> Result<(), Denied> {
    for (i, &b) in path.iter().enumerate() {
        let reason = match b {
            0x80..=0xff => "non-ASCII byte in path",
            b if is_control(b) => "control character in path",
            b'\\' => "backslash in path",
            b';' => "semicolon in path",
            b'%' if !is_hex_escape(path, i) => "malformed percent-encoding in path",
            b'%' | b'/' | b':' | b'@' | b'-' | b'.' | b'_' | b'~' => continue,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' => continue,
            b if b.is_ascii_alphanumeric() => continue,
            _ => "invalid character in path",
        };
        return Err(Denied::path(reason));
    }
    Ok(())
}

fn check_query_bytes(query: &[u8]) -> Result<(), Denied> {
    for (i, &b) in query.iter().enumerate() {
        let reason = match b {
            0x80..=0xff => "non-ASCII byte in query",
            b if is_control(b) => "control character in query",
            b'%' if !is_hex_escape(query, i) => "malformed percent-encoding in query",
            b'%' if query[i + 1] == b'0' && query[i + 2] == b'0' => "control character in query",
            b' ' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' => {
                "invalid character in query"
            }
            _ => continue,
        };
        return Err(Denied::path(reason));
    }
    if std::str::from_utf8(&decode(query)).is_err() {
        return Err(Denied::path("percent-encoding in query is not UTF-8"));
    }
    Ok(())
}

/// Rules 8 and 9 for one non-empty raw segment.
fn check_segment(raw: &str) -> Result<Segment, Denied> {
    let decoded = decode(raw.as_bytes());
    let slashes = count_slashes(&decoded);
    check_level(raw.as_bytes())?;
    check_level(&decoded)?;
    let mut level = decoded.clone();
    let mut depth = 1;
    while has_escape(&level) {
        depth += 1;
        if depth > MAX_DECODE_DEPTH {
            return Err(Denied::path("percent-encoding nested too deep in path"));
        }
        level = decode(&level);
        if count_slashes(&level) > slashes {
            return Err(Denied::path("double-encoded slash in path"));
        }
        check_level(&level)?;
    }
    Ok(Segment {
        raw: raw.to_owned(),
        decoded,
        encoded_slash: slashes > 0,
    })
}

fn count_slashes(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'/').count()
}

/// Checks on one decoding level of a segment; `/` here can only come from an encoded
/// slash, so the pieces between them are held to the rules of segments.
fn check_level(bytes: &[u8]) -> Result<(), Denied> {
    // Overlong forms, surrogates and stray continuation bytes are all invalid UTF-8, and a
    // server may read them as `/` or `.`.
    if std::str::from_utf8(bytes).is_err() {
        return Err(Denied::path("percent-encoding in path is not UTF-8"));
    }
    for piece in bytes.split(|&b| b == b'/') {
        if piece.is_empty() {
            return Err(Denied::path("empty segment in path"));
        }
        if piece.iter().all(|&b| b == b'.') {
            return Err(Denied::path("dot segment in path"));
        }
    }
    for &b in bytes {
        let reason = match b {
            b if is_control(b) => "control character in path",
            b'\\' => "backslash in path",
            b';' => "semicolon in path",
            _ => continue,
        };
        return Err(Denied::path(reason));
    }
    if String::from_utf8_lossy(bytes)
        .chars()
        .any(looks_like_dot_or_slash)
    {
        return Err(Denied::path(
            "a look-alike of a dot or slash in path (Unicode that normalises to . / or \\)",
        ));
    }
    Ok(())
}

/// Characters whose compatibility normalisation (NFKC, Unicode 14) holds a `.`, `/` or `\`
/// (one dot leader, fullwidth full stop and solidus, `℀`, `⒈`, …), and those URL and IDNA
/// processing maps to a dot or that pass for a slash (ideographic full stops, division and
/// fraction slashes, big solidi, set minus). A lenient server may read any of them as the
/// ASCII character, so a segment holding one is denied.
const LOOK_ALIKES: &[(char, char)] = &[
    ('\u{2024}', '\u{2026}'),
    ('\u{2044}', '\u{2044}'),
    ('\u{2100}', '\u{2101}'),
    ('\u{2105}', '\u{2106}'),
    ('\u{2215}', '\u{2216}'),
    ('\u{2488}', '\u{249b}'),
    ('\u{29f8}', '\u{29f9}'),
    ('\u{3002}', '\u{3002}'),
    ('\u{33c2}', '\u{33c2}'),
    ('\u{33c7}', '\u{33c7}'),
    ('\u{33d8}', '\u{33d8}'),
    ('\u{fe19}', '\u{fe19}'),
    ('\u{fe30}', '\u{fe30}'),
    ('\u{fe52}', '\u{fe52}'),
    ('\u{fe68}', '\u{fe68}'),
    ('\u{ff0e}', '\u{ff0f}'),
    ('\u{ff3c}', '\u{ff3c}'),
    ('\u{ff61}', '\u{ff61}'),
    ('\u{1f100}', '\u{1f100}'),
];

fn looks_like_dot_or_slash(c: char) -> bool {
    LOOK_ALIKES
        .iter()
        .any(|&(low, high)| (low..=high).contains(&c))
}

// ---------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Number,
    Sha,
    Project,
    MultiProject,
    EncodedProject,
    EncodedPath,
    Ref,
    RestRef,
    Rest,
    ProjectKey,
}

impl Kind {
    fn from_name(name: &str) -> Kind {
        match name {
            "n" => Kind::Number,
            "sha" => Kind::Sha,
            "project" => Kind::Project,
            "*project" => Kind::MultiProject,
            "encoded_project" => Kind::EncodedProject,
            "encoded_path" => Kind::EncodedPath,
            "project_key" => Kind::ProjectKey,
            "ref" | "branch" | "tag" => Kind::Ref,
            "*ref" | "*branch" | "*basehead" => Kind::RestRef,
            _ if name.starts_with('*') => Kind::Rest,
            _ => Kind::Any,
        }
    }

    fn is_multi(self) -> bool {
        matches!(self, Kind::MultiProject | Kind::RestRef | Kind::Rest)
    }

    /// A git ref, one segment or several.
    fn is_ref(self) -> bool {
        matches!(self, Kind::Ref | Kind::RestRef)
    }

    /// Accepts a segment holding an encoded slash.
    fn takes_encoded_slash(self) -> bool {
        matches!(
            self,
            Kind::EncodedProject | Kind::EncodedPath | Kind::Ref | Kind::RestRef
        )
    }

    fn is_project(self) -> bool {
        matches!(
            self,
            Kind::Project | Kind::MultiProject | Kind::EncodedProject
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(&'static str),
    OneOf(Vec<&'static str>),
    Optional(Vec<&'static str>),
    Param { kind: Kind, suffix: &'static str },
}

/// A rule with its pattern parsed.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) index: usize,
    pub(crate) rule: &'static Rule,
    segs: Vec<Seg>,
    /// Literals compared without regard to ASCII case (Azure DevOps, whose servers route
    /// `_apis/Git/Repositories` like `_apis/git/repositories`).
    fold_case: bool,
}

/// The outcome of a rule matching (project regex not yet applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) project: Option<String>,
    /// A ref parameter holds a `:`, which git forbids in ref names: it is GitHub's
    /// `owner:branch` (or `owner:repo:branch`), a ref in another repository.
    pub(crate) foreign_ref: bool,
}

/// Marks, among the captured project parts, a ref with a `:` (see [`Match::foreign_ref`]).
/// A NUL never survives canonicalisation, so no project part can equal it; keeping the mark
/// in the same list lets backtracking drop it with the parts.
const FOREIGN_REF: &str = "\0foreign-ref";

fn valid_literal(lit: &str) -> bool {
    !lit.is_empty()
        && lit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b))
}

/// Why a rule does not compile: a bug in a rule table, caught by the unit tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RuleError {
    #[error("rule has no method")]
    NoMethod,
    #[error("pattern {0:?} does not start with /")]
    NoSlash(&'static str),
    #[error("unclosed {{ in {0:?}")]
    UnclosedBrace(&'static str),
    #[error("unclosed [ in {0:?}")]
    UnclosedBracket(&'static str),
    #[error("bad parameter {token:?} in {pattern:?}")]
    Parameter {
        token: &'static str,
        pattern: &'static str,
    },
    #[error("bad literal {literal:?} in {pattern:?}")]
    Literal {
        literal: &'static str,
        pattern: &'static str,
    },
}

fn parse_pattern(pattern: &'static str) -> Result<Vec<Seg>, RuleError> {
    let body = pattern
        .strip_prefix('/')
        .ok_or(RuleError::NoSlash(pattern))?;
    let mut segs = Vec::new();
    // The pieces read so far of an optional group (`[a/b]`), while inside one.
    let mut group: Option<Vec<&'static str>> = None;
    for tok in body.split('/') {
        let piece = match (&group, tok.strip_prefix('[')) {
            (Some(_), _) => tok,
            (None, Some(open)) => open,
            (None, None) => {
                segs.push(segment(tok, pattern)?);
                continue;
            }
        };
        let mut pieces = group.take().unwrap_or_default();
        match piece.strip_suffix(']') {
            Some(last) => {
                pieces.push(last);
                segs.push(Seg::Optional(pieces));
            }
            None => {
                pieces.push(piece);
                group = Some(pieces);
            }
        }
    }
    if group.is_some() {
        return Err(RuleError::UnclosedBracket(pattern));
    }
    check_literals(&segs, pattern)?;
    Ok(segs)
}

/// One segment outside an optional group: a parameter, alternatives or a literal (an empty
/// last one: the pattern ends in `/`).
fn segment(tok: &'static str, pattern: &'static str) -> Result<Seg, RuleError> {
    let Some(param) = tok.strip_prefix('{') else {
        return Ok(match tok.contains('|') {
            true => Seg::OneOf(tok.split('|').collect()),
            false => Seg::Literal(tok),
        });
    };
    let (name, suffix) = param
        .split_once('}')
        .ok_or(RuleError::UnclosedBrace(pattern))?;
    if name.is_empty() || !(suffix.is_empty() || valid_literal(suffix)) {
        return Err(RuleError::Parameter {
            token: tok,
            pattern,
        });
    }
    Ok(Seg::Param {
        kind: Kind::from_name(name),
        suffix,
    })
}

/// Every literal, alternative and optional piece uses only the characters a canonical path
/// segment may hold.
fn check_literals(segs: &[Seg], pattern: &'static str) -> Result<(), RuleError> {
    for seg in segs {
        let lits: &[&str] = match seg {
            Seg::Literal("") | Seg::Param { .. } => continue,
            Seg::Literal(l) => std::slice::from_ref(l),
            Seg::OneOf(ls) | Seg::Optional(ls) => ls,
        };
        if let Some(literal) = lits.iter().find(|l| !valid_literal(l)) {
            return Err(RuleError::Literal { literal, pattern });
        }
    }
    Ok(())
}

impl CompiledRule {
    pub(crate) fn compile(index: usize, rule: &'static Rule) -> Result<CompiledRule, RuleError> {
        if rule.methods.is_empty() {
            return Err(RuleError::NoMethod);
        }
        Ok(CompiledRule {
            index,
            rule,
            segs: parse_pattern(rule.pattern)?,
            fold_case: false,
        })
    }

    /// Literals of this rule match whatever their ASCII case.
    pub(crate) fn folding_case(mut self) -> CompiledRule {
        self.fold_case = true;
        self
    }

    /// Method, query and path; `None` when the rule does not apply.
    pub(crate) fn matches(&self, method: &str, target: &Canonical) -> Option<Match> {
        if !self.rule.methods.iter().any(|m| m.allows(method)) {
            return None;
        }
        match self.rule.query {
            Query::Exactly(q) if target.query() != Some(q) => return None,
            Query::Absent if !target.query().unwrap_or_default().is_empty() => return None,
            _ => {}
        }
        let mut caps = Vec::new();
        if !match_segs(&self.segs, target.segments(), self.fold_case, &mut caps) {
            return None;
        }
        let foreign_ref = caps.iter().any(|c| c == FOREIGN_REF);
        caps.retain(|c| c != FOREIGN_REF);
        Some(Match {
            project: if caps.is_empty() {
                None
            } else {
                Some(caps.join("/"))
            },
            foreign_ref,
        })
    }
}

fn match_segs(segs: &[Seg], targets: &[Segment], fold: bool, caps: &mut Vec<String>) -> bool {
    let same = |t: &Segment, lit: &str| match fold {
        true => t.raw.eq_ignore_ascii_case(lit),
        false => t.raw == lit,
    };
    let Some((seg, rest)) = segs.split_first() else {
        return targets.is_empty();
    };
    match seg {
        Seg::Literal(lit) => {
            matches!(targets.first(), Some(t) if same(t, lit))
                && match_segs(rest, &targets[1..], fold, caps)
        }
        Seg::OneOf(lits) => {
            matches!(targets.first(), Some(t) if lits.iter().any(|l| same(t, l)))
                && match_segs(rest, &targets[1..], fold, caps)
        }
        Seg::Optional(lits) => {
            let n = lits.len();
            let present = targets.len() >= n && lits.iter().zip(targets).all(|(l, t)| same(t, l));
            (present && match_segs(rest, &targets[n..], fold, caps))
                || match_segs(rest, targets, fold, caps)
        }
        Seg::Param {
            kind: Kind::ProjectKey,
            ..
        } => {
            let mark = caps.len();
            if targets.len() >= 2
                && take_owner(&targets[0], &targets[1], caps)
                && match_segs(rest, &targets[2..], fold, caps)
            {
                return true;
            }
            caps.truncate(mark);
            false
        }
        Seg::Param { kind, suffix } if kind.is_multi() => {
            for k in 1..=targets.len() {
                let mark = caps.len();
                if take_multi(*kind, suffix, &targets[..k], caps)
                    && match_segs(rest, &targets[k..], fold, caps)
                {
                    return true;
                }
                caps.truncate(mark);
            }
            false
        }
        Seg::Param { kind, suffix } => {
            let Some(t) = targets.first() else {
                return false;
            };
            let mark = caps.len();
            if take_single(*kind, suffix, t, caps) && match_segs(rest, &targets[1..], fold, caps) {
                return true;
            }
            caps.truncate(mark);
            false
        }
    }
}

/// The raw value of a parameter segment with its literal suffix removed.
fn strip<'a>(t: &'a Segment, suffix: &str) -> Option<&'a str> {
    t.raw.strip_suffix(suffix).filter(|v| !v.is_empty())
}

fn decoded_value(t: &Segment, value: &str) -> Option<String> {
    let bytes = if value.len() == t.raw.len() {
        t.decoded.clone()
    } else {
        decode(value.as_bytes())
    };
    String::from_utf8(bytes).ok()
}

fn take_single(kind: Kind, suffix: &str, t: &Segment, caps: &mut Vec<String>) -> bool {
    let Some(value) = strip(t, suffix) else {
        return false;
    };
    if t.encoded_slash && !kind.takes_encoded_slash() {
        return false;
    }
    let ok = match kind {
        Kind::Number => value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()),
        Kind::Sha => {
            (7..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => true,
    };
    ok && capture(kind, t, value, caps)
}

/// Records what a matched parameter segment adds to the captures: the foreign-ref mark for
/// a ref with a `:`, the decoded value of a project part. False when that value is not UTF-8.
fn capture(kind: Kind, t: &Segment, value: &str, caps: &mut Vec<String>) -> bool {
    if kind.is_ref() && t.decoded.contains(&b':') {
        caps.push(FOREIGN_REF.to_owned());
    }
    if kind.is_project() {
        match decoded_value(t, value) {
            Some(v) => caps.push(v),
            None => return false,
        }
    }
    true
}

/// Bitbucket's owner of a repository: `projects/KEY` → `KEY`, `users/jdoe` → `~jdoe`.
fn take_owner(kind: &Segment, name: &Segment, caps: &mut Vec<String>) -> bool {
    if name.raw.is_empty() || name.encoded_slash {
        return false;
    }
    let Ok(value) = String::from_utf8(name.decoded.clone()) else {
        return false;
    };
    match kind.raw.as_str() {
        "projects" => caps.push(value),
        // atlassian-python-api spells a personal repository `users/~jdoe/repos/…`, the same
        // owner as `users/jdoe`.
        "users" if value.starts_with('~') => caps.push(value),
        "users" => caps.push(format!("~{value}")),
        _ => return false,
    }
    true
}

fn take_multi(kind: Kind, suffix: &str, ts: &[Segment], caps: &mut Vec<String>) -> bool {
    let last = ts.len() - 1;
    for (i, t) in ts.iter().enumerate() {
        let value = if i == last {
            strip(t, suffix)
        } else {
            Some(t.raw.as_str()).filter(|v| !v.is_empty())
        };
        let Some(value) = value else {
            return false;
        };
        if t.encoded_slash && !kind.takes_encoded_slash() {
            return false;
        }
        if kind == Kind::RestRef && i > 0 && REF_STOP.contains(&value) {
            return false;
        }
        if !capture(kind, t, value, caps) {
            return false;
        }
    }
    true
}

/// Whether segment `index` of `target` sits where some rule has a parameter that takes
/// an encoded slash (walking each pattern's leading items up to the first multi-segment
/// one). Only used to pick the denial reason once no rule matched.
pub(crate) fn encoded_position(rules: &[CompiledRule], target: &Canonical, index: usize) -> bool {
    let ts = target.segments();
    rules.iter().any(|rule| {
        let mut t = 0;
        for seg in &rule.segs {
            if t > index || t >= ts.len() {
                return false;
            }
            match seg {
                Seg::Literal(l) if t != index && ts[t].raw == *l => t += 1,
                Seg::OneOf(ls) if t != index && ls.contains(&ts[t].raw.as_str()) => t += 1,
                Seg::Optional(ls) => {
                    if ts.len() >= t + ls.len() && ls.iter().zip(&ts[t..]).all(|(l, s)| s.raw == *l)
                    {
                        t += ls.len();
                    }
                }
                Seg::Param {
                    kind: Kind::ProjectKey,
                    ..
                } => {
                    if t + 1 >= index {
                        return false;
                    }
                    t += 2;
                }
                Seg::Param { kind, .. } if !kind.is_multi() => {
                    if t == index {
                        return kind.takes_encoded_slash();
                    }
                    t += 1;
                }
                Seg::Param { kind, .. } => return *kind == Kind::RestRef,
                _ => return false,
            }
        }
        false
    })
}
