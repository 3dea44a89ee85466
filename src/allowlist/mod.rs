//! Per-vendor allowlists that fail closed.
//!
//! Every request the SaaS sends through the agent names a method and a *request target*
//! (path plus optional `?query`, relative to the VCS base endpoint). The agent forwards it
//! only when [`Allowlist::check`] says so, and then forwards the target **byte for byte as
//! it was checked**: nothing here rewrites, normalises or re-encodes a target, so what is
//! matched is exactly what the VCS server receives. Anything this module cannot classify
//! with certainty is denied; an unknown request is a denial, never a pass.
//!
//! # Why a canonical form that is not a rewrite
//!
//! Path-traversal bugs in proxies (Snyk Broker's `normalize` on the raw URL, Semgrep's
//! broker without dot-segment checks) come from the proxy and the server disagreeing on
//! what a path means. Rather than normalise (and then forward something the server may
//! read differently), we *refuse* every target whose meaning could differ between a
//! reasonable server and our matcher. The canonical target is the target itself, or
//! nothing. [`canonicalize`] is therefore idempotent by construction.
//!
//! # Canonicalisation rules
//!
//! Applied in this order by [`canonicalize`]; the first failing rule gives the reason.
//!
//! 1. The target must start with `/` (origin-form). `http://…`, `https://…` and any
//!    other `scheme:` prefix are denied as `absolute-form target`; anything else not
//!    starting with `/` (`*`, `api/v4`) as `target does not start with /`.
//! 2. A `#` anywhere is denied (`fragment in target`): clients never send fragments.
//! 3. The target is split at the first `?` into path and query.
//! 4. Lengths: path over 8192 bytes, query over 8192 bytes are denied.
//! 5. Raw bytes of the path: non-ASCII bytes, control characters (0x00–0x1F, 0x7F),
//!    backslashes, `;` (Tomcat-style path parameters turn `..;` into `..`) and bytes
//!    outside RFC 3986 `pchar` (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`,
//!    `}`) are denied. A `%` must be followed by two hex digits.
//! 6. Raw bytes of the query: non-ASCII bytes, control characters, space, `"`, `<`, `>`,
//!    `\`, `^`, `` ` ``, `{`, `|`, `}` are denied; `%` must be followed by two hex
//!    digits and `%00` (NUL) is denied. Other encoded bytes are left alone (a commit
//!    status description may carry an encoded newline), but the decoded query must be
//!    valid UTF-8 (`percent-encoding in query is not UTF-8`).
//! 7. The path is split on `/` into segments. An empty segment (`//` anywhere, including
//!    a leading `//`) is denied; a single trailing `/` is kept as a final empty segment,
//!    which only a pattern that itself ends in `/` matches.
//! 8. Every segment is percent-decoded **explicitly**, and the decoding is repeated (up
//!    to 4 levels) while it still contains valid escapes, to see through double encoding
//!    (`%252e`). At every level: a segment (or, after an encoded slash, a piece) made
//!    only of dots (`.`, `..`, `...`) is denied (`dot segment in path`); a decoded
//!    backslash, control character or `;` is denied like its raw form. Every level must
//!    be valid UTF-8 (`percent-encoding in path is not UTF-8`): overlong forms (`%C0%AE`
//!    for `.`, `%C0%AF` for `/`), encoded surrogates (`%ED%A0%80`) and stray continuation
//!    bytes (`%80`) are refused, since a lenient server may read them as dots or slashes.
//!    Encoding nested deeper than 4 levels is denied. So is, at every level, a character
//!    that compatibility normalisation or URL processing turns into a dot or slash (one dot
//!    leader `%E2%80%A4`, fullwidth full stop `%EF%BC%8E`, fullwidth solidus, division
//!    slash, …: `a look-alike of a dot or slash in path`).
//! 9. An encoded slash (`%2F`/`%2f`) at the first decoding level is recorded on the
//!    segment, and the pieces between the slashes must themselves be non-empty and not
//!    dot segments. Only pattern parameters spelled `{encoded_project}`,
//!    `{encoded_path}` and the ref parameters (`{ref}`, `{branch}`, `{tag}`, `{*ref}`,
//!    `{*branch}`, `{*basehead}`) accept such a segment: GitLab's project ids
//!    (`group%2Fsub%2Frepo`), its files API, which takes the file path as one
//!    `%2F`-separated segment, and ref names with a slash (`feature%2Fx`) in GitLab and
//!    GitHub. Everywhere else an encoded slash is denied (`encoded slash outside a project
//!    or ref segment`). A slash encoded twice (`%252F`) is always denied.
//!
//! # Ref segments
//!
//! Most branches have a `/` in their name (`feature/x`, `release/1.2`). A rule declares
//! where a ref goes: `{ref}`, `{branch}` or `{tag}` take one segment in which an encoded
//! slash separates the ref's pieces (GitLab `…/repository/branches/feature%2Fx`, GitHub
//! `…/commits/feature%2Fx`); `{*ref}`, `{*branch}` and `{*basehead}` take the raw rest of
//! the path (GitHub `…/branches/feature/x`, `…/compare/main...feature/x`,
//! `…/git/ref/heads/feature/x`). Each piece of a ref passed the same dot-segment and
//! encoding checks as any segment, so `feature%2F..%2F..` or `branches/a/../b` are still
//! denied.
//!
//! # Matching
//!
//! Rule tables are data, one file per vendor; [`matcher`] holds the one matcher. A rule
//! has methods, a path pattern (syntax documented in [`matcher`]), an optional exact
//! query, a description and an example. Rules are tried in table order and the first
//! one whose method, path and query match decides: if it has a project and a project
//! regex is configured, the project must match the whole regex, otherwise the request
//! is denied (later rules are not consulted).
//!
//! * Methods are compared exactly (uppercase). `HEAD` is allowed wherever `GET` is.
//!   `CONNECT` and `TRACE` are denied before anything else, and so is `OPTIONS` for every
//!   vendor whose table does not list it (only Azure DevOps' resource-location discovery
//!   `OPTIONS /{org}/_apis` does).
//! * Literal segments are compared with the raw (undecoded) segment, so `%62ranches`
//!   is not `branches`. Parameters see decoded values; the project is built from the
//!   decoded project parameters joined by `/`.
//! * The query is ignored for matching unless the rule names one, in which case it
//!   must be equal byte for byte (`service=git-upload-pack` for the smart-HTTP ref
//!   advertisement; `service=git-receive-pack` therefore never matches). Queries are
//!   never echoed in denial reasons: they may carry `private_token=`.
//!
//! # Beyond the path
//!
//! A path can be harmless while the request is not. Also denied:
//!
//! * **Method overrides**: the headers [`METHOD_OVERRIDE_HEADERS`] and a `_method`
//!   parameter (query here, form bodies in [`body`]), which Rails and ASP.NET honour, so an
//!   allowed `POST` would run as a `DELETE`.
//! * **Path overrides**: the headers [`PATH_OVERRIDE_HEADERS`], which URL-rewriting front
//!   ends honour, so the VCS would serve another path than the one checked.
//! * **A body on `GET` or `HEAD`**, whose parameters GitLab would read unchecked.
//! * **Projects named by parameters** ([`Rule::project_params`], GitLab's
//!   `from_project_id`), held to the regex like the path's project; a numeric one is left
//!   for the agent to resolve ([`Allowed::param_ids`]).
//! * While projects are restricted: a ref in another repository (`owner:branch`), and
//!   rules marked [`Rule::unscoped`] (they reach a repository their path does not name).
//!
//! Bodies that must be seen before they are forwarded (GraphQL, forms) are read whole by
//! the agent and judged by [`Allowlist::check_body`] ([`body`], [`graphql`]).

mod azure_devops;
mod bitbucket_datacenter;
pub(crate) mod body;
mod denied;
mod github_enterprise;
mod gitlab;
pub mod graphql;
mod list;
pub(crate) mod matcher;
pub mod print;
mod query;
mod vendor;
mod verdict;

pub use body::{BodyVerdict, Inspection};
pub use denied::{DenialClass, Denied};
pub use list::{Allowlist, METHOD_OVERRIDE_HEADERS, PATH_OVERRIDE_HEADERS};
pub use matcher::{canonicalize, BodyCheck, Canonical, Method, Query, Rule};
pub use vendor::{project_pattern, Vendor};
pub use verdict::{Allowed, Decision, IdKind, ProjectId};

#[cfg(test)]
mod field_tests;
#[cfg(test)]
mod tests;
