//! The fields a GitHub GraphQL query may ask for while `SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS`
//! is set: one table per type of GitHub's public schema, reached from the query root.
//!
//! A field inside an allowed repository can return an object of another repository: a
//! timeline's `CrossReferencedEvent.source`, `Issue.trackedIssues`,
//! `PullRequest.closingIssuesReferences`, `Commit.associatedPullRequests` (pull requests of
//! forks), `Repository.forks`, `parent`, `templateRepository`, a user's `repositories`… A
//! list of such fields is never complete (the schema grows), so the check fails closed: a
//! field passes only when the table of the type it is asked of lists it. What the tables
//! hold is what a CI/CD platform reads of ONE repository: its metadata, refs, commits, trees
//! and blobs, its pull requests and issues with their comments, reviews, labels and authors'
//! identity, and the check runs, check suites and statuses of its commits. Every object a
//! listed field returns belongs to the same repository (or is a user's or an app's
//! identity), which is why these fields are listed and these are not:
//!
//! * `repository` below anything but the root or an owner named by `login`, and `Commit`,
//!   `Ref`, `Tree`, `CheckSuite`… `.repository` (a commit or a ref reached from a fork's
//!   pull request belongs to the fork);
//! * `timelineItems`, `trackedIssues`, `trackedInIssues`, `closingIssuesReferences`,
//!   `closedByPullRequestsReferences`, `subIssues`, `parent` (of an issue),
//!   `linkedBranches`: they cross to issues, pull requests and branches of other
//!   repositories;
//! * `associatedPullRequests` (of a commit or a ref), `matchingPullRequests` (of a check
//!   suite): pull requests of forks or of the fork's parent;
//! * `forks`, `parent`, `templateRepository` and every field of a user or an organization
//!   beyond its identity (`repositories`, `issues`, `pullRequests`, `projectsV2`…);
//! * `projectItems`, `projectsV2`, `projectCards`: projects span repositories.
//!
//! `PullRequest.headRepository` is the fork a pull request comes from: only its identity
//! (`nameWithOwner`, `owner { login }`, `isFork`…) may be asked, as before.

/// What a listed field gives.
#[derive(Clone, Copy)]
pub(crate) enum Gives {
    /// A scalar or enum: no selection below it.
    Leaf,
    /// An object (or a list of them) of this type.
    Object(&'static Type),
    /// A connection (`nodes`, `edges { node cursor }`, `pageInfo`, `totalCount`) of this type.
    Connection(&'static Type),
    /// A connection's edges of this type.
    Edge(&'static Type),
    /// A user or organization whose `login` argument names the owner of the
    /// `repository(name:)` below it.
    Owner(&'static Type),
    /// A repository named by its arguments (and the owner's login), checked against the
    /// project regex.
    Repository,
    /// A repository of which only the identity ([`IDENTITY`]) may be asked.
    Identity,
    /// Introspection (`__schema`, `__type`): the schema, not data.
    Introspection,
}

/// The fields of one type, and the types a fragment may narrow it to.
pub(crate) struct Type {
    /// The type's name in GitHub's schema, as a fragment's `on` spells it.
    pub(crate) name: &'static str,
    pub(crate) leaves: &'static [&'static str],
    pub(crate) objects: &'static [(&'static str, Gives)],
    /// Tables for `... on X` below this type (besides itself and `Node`).
    pub(crate) narrows: &'static [&'static Type],
}

impl Type {
    /// What the field `name` gives here, `None` when it is not listed.
    pub(crate) fn field(&self, name: &str) -> Option<Gives> {
        if name == "__typename" || self.leaves.contains(&name) {
            return Some(Gives::Leaf);
        }
        self.objects
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, g)| *g)
    }

    /// The table for a fragment `on condition` here.
    pub(crate) fn narrow(&'static self, condition: &str) -> Option<&'static Type> {
        if condition == self.name {
            return Some(self);
        }
        if condition == NODE.name {
            return Some(&NODE);
        }
        self.narrows.iter().copied().find(|t| t.name == condition)
    }
}

/// What may be asked of a repository followed to by [`Gives::Identity`].
pub(crate) const IDENTITY: &[&str] = &[
    "__typename",
    "id",
    "databaseId",
    "name",
    "nameWithOwner",
    "url",
    "isFork",
    "isPrivate",
    "owner",
    "login",
];

/// Fields of a connection besides `nodes` and `edges`.
pub(crate) const CONNECTION_LEAVES: &[&str] = &["totalCount"];
/// Fields of a connection's edge besides `node`.
pub(crate) const EDGE_LEAVES: &[&str] = &["cursor"];

pub(crate) static QUERY: Type = Type {
    name: "Query",
    leaves: &[],
    objects: &[
        ("repository", Gives::Repository),
        ("organization", Gives::Owner(&OWNER_ORGANIZATION)),
        ("user", Gives::Owner(&OWNER_USER)),
        ("repositoryOwner", Gives::Owner(&OWNER_REPOSITORY_OWNER)),
        ("viewer", Gives::Object(&USER)),
        ("rateLimit", Gives::Object(&RATE_LIMIT)),
        ("meta", Gives::Object(&META)),
        ("__schema", Gives::Introspection),
        ("__type", Gives::Introspection),
    ],
    narrows: &[],
};

pub(crate) static PAGE_INFO: Type = Type {
    name: "PageInfo",
    leaves: &["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"],
    objects: &[],
    narrows: &[],
};

static NODE: Type = Type {
    name: "Node",
    leaves: &["id"],
    objects: &[],
    narrows: &[],
};

static RATE_LIMIT: Type = Type {
    name: "RateLimit",
    leaves: &["limit", "cost", "remaining", "resetAt", "used", "nodeCount"],
    objects: &[],
    narrows: &[],
};

static META: Type = Type {
    name: "GitHubMetadata",
    leaves: &[
        "gitHubServicesSha",
        "gitIpAddresses",
        "githubEnterpriseImporterIpAddresses",
        "hookIpAddresses",
        "importerIpAddresses",
        "isPasswordAuthenticationVerifiable",
        "pagesIpAddresses",
    ],
    objects: &[],
    narrows: &[],
};

/// A user's, organization's, bot's or mannequin's identity: what may be asked of anyone a
/// field reaches (authors, assignees, reviewers, the owner).
const ACTOR_LEAVES: &[&str] = &[
    "id",
    "databaseId",
    "login",
    "name",
    "email",
    "url",
    "avatarUrl",
    "resourcePath",
    "isViewer",
];

const fn actor(name: &'static str, narrows: &'static [&'static Type]) -> Type {
    Type {
        name,
        leaves: ACTOR_LEAVES,
        objects: &[],
        narrows,
    }
}

/// An owner named by `login` at the root: its identity and its repositories by name.
const fn owner(name: &'static str, narrows: &'static [&'static Type]) -> Type {
    Type {
        name,
        leaves: ACTOR_LEAVES,
        objects: &[("repository", Gives::Repository)],
        narrows,
    }
}

static OWNER_USER: Type = owner("User", &[]);
static OWNER_ORGANIZATION: Type = owner("Organization", &[]);
static OWNER_REPOSITORY_OWNER: Type = owner("RepositoryOwner", &[&OWNER_USER, &OWNER_ORGANIZATION]);

static USER: Type = actor("User", &[]);
static ORGANIZATION: Type = actor("Organization", &[]);
static BOT: Type = actor("Bot", &[]);
static MANNEQUIN: Type = actor("Mannequin", &[]);
static ACTOR: Type = actor("Actor", &[&USER, &ORGANIZATION, &BOT, &MANNEQUIN]);
static REPOSITORY_OWNER: Type = actor("RepositoryOwner", &[&USER, &ORGANIZATION]);
static TEAM: Type = Type {
    name: "Team",
    leaves: &["id", "databaseId", "name", "slug", "combinedSlug", "url"],
    objects: &[],
    narrows: &[],
};
static REQUESTED_REVIEWER: Type = Type {
    name: "RequestedReviewer",
    leaves: &[],
    objects: &[],
    narrows: &[&USER, &BOT, &MANNEQUIN, &TEAM],
};

pub(crate) static REPOSITORY: Type = Type {
    name: "Repository",
    leaves: &[
        "id",
        "databaseId",
        "name",
        "nameWithOwner",
        "description",
        "url",
        "homepageUrl",
        "sshUrl",
        "resourcePath",
        "isPrivate",
        "isFork",
        "isArchived",
        "isDisabled",
        "isEmpty",
        "isLocked",
        "isMirror",
        "isTemplate",
        "isInOrganization",
        "visibility",
        "lockReason",
        "createdAt",
        "updatedAt",
        "pushedAt",
        "archivedAt",
        "diskUsage",
        "forkCount",
        "stargazerCount",
        "hasIssuesEnabled",
        "hasWikiEnabled",
        "hasProjectsEnabled",
        "hasDiscussionsEnabled",
        "mergeCommitAllowed",
        "squashMergeAllowed",
        "rebaseMergeAllowed",
        "autoMergeAllowed",
        "deleteBranchOnMerge",
        "allowUpdateBranch",
        "webCommitSignoffRequired",
        "viewerPermission",
        "viewerCanAdminister",
        "viewerDefaultMergeMethod",
    ],
    objects: &[
        ("owner", Gives::Object(&REPOSITORY_OWNER)),
        ("defaultBranchRef", Gives::Object(&REF)),
        ("ref", Gives::Object(&REF)),
        ("refs", Gives::Connection(&REF)),
        ("object", Gives::Object(&GIT_OBJECT)),
        ("pullRequest", Gives::Object(&PULL_REQUEST)),
        ("pullRequests", Gives::Connection(&PULL_REQUEST)),
        ("issue", Gives::Object(&ISSUE)),
        ("issues", Gives::Connection(&ISSUE)),
        ("issueOrPullRequest", Gives::Object(&ISSUE_OR_PULL_REQUEST)),
        ("label", Gives::Object(&LABEL)),
        ("labels", Gives::Connection(&LABEL)),
        ("milestone", Gives::Object(&MILESTONE)),
        ("milestones", Gives::Connection(&MILESTONE)),
        ("primaryLanguage", Gives::Object(&LANGUAGE)),
        ("languages", Gives::Connection(&LANGUAGE)),
        ("assignableUsers", Gives::Connection(&USER)),
        ("mentionableUsers", Gives::Connection(&USER)),
        ("collaborators", Gives::Connection(&USER)),
    ],
    narrows: &[],
};

static ISSUE_OR_PULL_REQUEST: Type = Type {
    name: "IssueOrPullRequest",
    leaves: &[],
    objects: &[],
    narrows: &[&ISSUE, &PULL_REQUEST],
};

static PULL_REQUEST: Type = Type {
    name: "PullRequest",
    leaves: &[
        "id",
        "databaseId",
        "fullDatabaseId",
        "number",
        "title",
        "body",
        "bodyText",
        "bodyHTML",
        "state",
        "url",
        "permalink",
        "resourcePath",
        "createdAt",
        "updatedAt",
        "closedAt",
        "mergedAt",
        "publishedAt",
        "lastEditedAt",
        "closed",
        "merged",
        "mergeable",
        "mergeStateStatus",
        "isDraft",
        "locked",
        "activeLockReason",
        "additions",
        "deletions",
        "changedFiles",
        "baseRefName",
        "baseRefOid",
        "headRefName",
        "headRefOid",
        "isCrossRepository",
        "maintainerCanModify",
        "reviewDecision",
        "authorAssociation",
        "totalCommentsCount",
        "checksUrl",
        "checksResourcePath",
        "viewerDidAuthor",
        "viewerCanUpdate",
    ],
    objects: &[
        ("author", Gives::Object(&ACTOR)),
        ("editor", Gives::Object(&ACTOR)),
        ("mergedBy", Gives::Object(&ACTOR)),
        ("assignees", Gives::Connection(&USER)),
        ("participants", Gives::Connection(&USER)),
        ("repository", Gives::Object(&REPOSITORY)),
        ("baseRepository", Gives::Object(&REPOSITORY)),
        ("headRepository", Gives::Identity),
        ("headRepositoryOwner", Gives::Object(&REPOSITORY_OWNER)),
        ("baseRef", Gives::Object(&REF)),
        ("headRef", Gives::Object(&REF)),
        ("commits", Gives::Connection(&PULL_REQUEST_COMMIT)),
        ("files", Gives::Connection(&CHANGED_FILE)),
        ("comments", Gives::Connection(&ISSUE_COMMENT)),
        ("reviews", Gives::Connection(&REVIEW)),
        ("latestReviews", Gives::Connection(&REVIEW)),
        ("latestOpinionatedReviews", Gives::Connection(&REVIEW)),
        ("reviewThreads", Gives::Connection(&REVIEW_THREAD)),
        ("reviewRequests", Gives::Connection(&REVIEW_REQUEST)),
        ("labels", Gives::Connection(&LABEL)),
        ("milestone", Gives::Object(&MILESTONE)),
        ("mergeCommit", Gives::Object(&COMMIT)),
        ("potentialMergeCommit", Gives::Object(&COMMIT)),
        ("statusCheckRollup", Gives::Object(&STATUS_CHECK_ROLLUP)),
    ],
    narrows: &[],
};

static ISSUE: Type = Type {
    name: "Issue",
    leaves: &[
        "id",
        "databaseId",
        "fullDatabaseId",
        "number",
        "title",
        "body",
        "bodyText",
        "bodyHTML",
        "state",
        "stateReason",
        "url",
        "resourcePath",
        "createdAt",
        "updatedAt",
        "closedAt",
        "publishedAt",
        "lastEditedAt",
        "closed",
        "locked",
        "authorAssociation",
        "viewerDidAuthor",
    ],
    objects: &[
        ("author", Gives::Object(&ACTOR)),
        ("editor", Gives::Object(&ACTOR)),
        ("assignees", Gives::Connection(&USER)),
        ("participants", Gives::Connection(&USER)),
        ("repository", Gives::Object(&REPOSITORY)),
        ("comments", Gives::Connection(&ISSUE_COMMENT)),
        ("labels", Gives::Connection(&LABEL)),
        ("milestone", Gives::Object(&MILESTONE)),
    ],
    narrows: &[],
};

/// Leaves every comment type has.
macro_rules! comment_leaves {
    ($($more:literal),*) => {
        &[
            "id",
            "databaseId",
            "fullDatabaseId",
            "body",
            "bodyText",
            "bodyHTML",
            "url",
            "resourcePath",
            "createdAt",
            "updatedAt",
            "publishedAt",
            "lastEditedAt",
            "isMinimized",
            "minimizedReason",
            "authorAssociation",
            "viewerDidAuthor",
            "viewerCanUpdate",
            "viewerCanMinimize",
            "viewerCanDelete",
            $($more),*
        ]
    };
}

static ISSUE_COMMENT: Type = Type {
    name: "IssueComment",
    leaves: comment_leaves!(),
    objects: &[
        ("author", Gives::Object(&ACTOR)),
        ("editor", Gives::Object(&ACTOR)),
    ],
    narrows: &[],
};

static REVIEW: Type = Type {
    name: "PullRequestReview",
    leaves: comment_leaves!("state", "submittedAt"),
    objects: &[
        ("author", Gives::Object(&ACTOR)),
        ("editor", Gives::Object(&ACTOR)),
        ("commit", Gives::Object(&COMMIT)),
        ("comments", Gives::Connection(&REVIEW_COMMENT)),
    ],
    narrows: &[],
};

static REVIEW_COMMENT: Type = Type {
    name: "PullRequestReviewComment",
    leaves: comment_leaves!(
        "path",
        "line",
        "startLine",
        "originalLine",
        "originalStartLine",
        "diffHunk",
        "outdated",
        "state",
        "subjectType"
    ),
    objects: &[
        ("author", Gives::Object(&ACTOR)),
        ("editor", Gives::Object(&ACTOR)),
        ("commit", Gives::Object(&COMMIT)),
        ("originalCommit", Gives::Object(&COMMIT)),
        ("replyTo", Gives::Object(&REVIEW_COMMENT)),
    ],
    narrows: &[],
};

static REVIEW_THREAD: Type = Type {
    name: "PullRequestReviewThread",
    leaves: &[
        "id",
        "path",
        "line",
        "startLine",
        "originalLine",
        "originalStartLine",
        "diffSide",
        "startDiffSide",
        "isResolved",
        "isOutdated",
        "isCollapsed",
        "subjectType",
        "viewerCanReply",
        "viewerCanResolve",
        "viewerCanUnresolve",
    ],
    objects: &[
        ("comments", Gives::Connection(&REVIEW_COMMENT)),
        ("resolvedBy", Gives::Object(&USER)),
    ],
    narrows: &[],
};

static REVIEW_REQUEST: Type = Type {
    name: "ReviewRequest",
    leaves: &["id", "databaseId", "asCodeOwner"],
    objects: &[("requestedReviewer", Gives::Object(&REQUESTED_REVIEWER))],
    narrows: &[],
};

static PULL_REQUEST_COMMIT: Type = Type {
    name: "PullRequestCommit",
    leaves: &["id", "url", "resourcePath"],
    objects: &[("commit", Gives::Object(&COMMIT))],
    narrows: &[],
};

static CHANGED_FILE: Type = Type {
    name: "PullRequestChangedFile",
    leaves: &[
        "path",
        "additions",
        "deletions",
        "changeType",
        "viewerViewedState",
    ],
    objects: &[],
    narrows: &[],
};

static LABEL: Type = Type {
    name: "Label",
    leaves: &[
        "id",
        "name",
        "color",
        "description",
        "isDefault",
        "url",
        "resourcePath",
        "createdAt",
        "updatedAt",
    ],
    objects: &[],
    narrows: &[],
};

static MILESTONE: Type = Type {
    name: "Milestone",
    leaves: &[
        "id",
        "number",
        "title",
        "description",
        "state",
        "dueOn",
        "closed",
        "closedAt",
        "createdAt",
        "updatedAt",
        "url",
        "resourcePath",
        "progressPercentage",
    ],
    objects: &[],
    narrows: &[],
};

static LANGUAGE: Type = Type {
    name: "Language",
    leaves: &["id", "name", "color"],
    objects: &[],
    narrows: &[],
};

static REF: Type = Type {
    name: "Ref",
    leaves: &["id", "name", "prefix"],
    objects: &[("target", Gives::Object(&GIT_OBJECT))],
    narrows: &[],
};

/// Leaves every Git object has.
macro_rules! git_object_leaves {
    ($($more:literal),*) => {
        &["id", "oid", "abbreviatedOid", "commitUrl", "commitResourcePath", $($more),*]
    };
}

static GIT_OBJECT: Type = Type {
    name: "GitObject",
    leaves: git_object_leaves!(),
    objects: &[],
    narrows: &[&COMMIT, &TREE, &BLOB, &TAG],
};

static COMMIT: Type = Type {
    name: "Commit",
    leaves: git_object_leaves!(
        "message",
        "messageHeadline",
        "messageBody",
        "committedDate",
        "authoredDate",
        "committedViaWeb",
        "authoredByCommitter",
        "additions",
        "deletions",
        "changedFilesIfAvailable",
        "url",
        "resourcePath",
        "tarballUrl",
        "zipballUrl",
        "treeUrl",
        "treeResourcePath"
    ),
    objects: &[
        ("author", Gives::Object(&GIT_ACTOR)),
        ("committer", Gives::Object(&GIT_ACTOR)),
        ("authors", Gives::Connection(&GIT_ACTOR)),
        ("parents", Gives::Connection(&COMMIT)),
        ("history", Gives::Connection(&COMMIT)),
        ("tree", Gives::Object(&TREE)),
        ("file", Gives::Object(&TREE_ENTRY)),
        ("status", Gives::Object(&STATUS)),
        ("statusCheckRollup", Gives::Object(&STATUS_CHECK_ROLLUP)),
        ("checkSuites", Gives::Connection(&CHECK_SUITE)),
    ],
    narrows: &[],
};

static TREE: Type = Type {
    name: "Tree",
    leaves: git_object_leaves!(),
    objects: &[("entries", Gives::Object(&TREE_ENTRY))],
    narrows: &[],
};

static TREE_ENTRY: Type = Type {
    name: "TreeEntry",
    leaves: &[
        "name",
        "nameRaw",
        "path",
        "pathRaw",
        "type",
        "mode",
        "oid",
        "size",
        "extension",
        "isGenerated",
        "lineCount",
    ],
    objects: &[
        ("object", Gives::Object(&GIT_OBJECT)),
        ("language", Gives::Object(&LANGUAGE)),
    ],
    narrows: &[],
};

static BLOB: Type = Type {
    name: "Blob",
    leaves: git_object_leaves!("text", "byteSize", "isBinary", "isTruncated"),
    objects: &[],
    narrows: &[],
};

static TAG: Type = Type {
    name: "Tag",
    leaves: git_object_leaves!("name", "message"),
    objects: &[
        ("tagger", Gives::Object(&GIT_ACTOR)),
        ("target", Gives::Object(&GIT_OBJECT)),
    ],
    narrows: &[],
};

static GIT_ACTOR: Type = Type {
    name: "GitActor",
    leaves: &["name", "email", "date", "avatarUrl"],
    objects: &[("user", Gives::Object(&USER))],
    narrows: &[],
};

static STATUS: Type = Type {
    name: "Status",
    leaves: &["id", "state"],
    objects: &[
        ("contexts", Gives::Object(&STATUS_CONTEXT)),
        ("context", Gives::Object(&STATUS_CONTEXT)),
        ("combinedContexts", Gives::Connection(&ROLLUP_CONTEXT)),
    ],
    narrows: &[],
};

static STATUS_CONTEXT: Type = Type {
    name: "StatusContext",
    leaves: &[
        "id",
        "context",
        "state",
        "description",
        "targetUrl",
        "avatarUrl",
        "createdAt",
        "isRequired",
    ],
    objects: &[("creator", Gives::Object(&ACTOR))],
    narrows: &[],
};

static STATUS_CHECK_ROLLUP: Type = Type {
    name: "StatusCheckRollup",
    leaves: &["id", "state"],
    objects: &[("contexts", Gives::Connection(&ROLLUP_CONTEXT))],
    narrows: &[],
};

static ROLLUP_CONTEXT: Type = Type {
    name: "StatusCheckRollupContext",
    leaves: &[],
    objects: &[],
    narrows: &[&CHECK_RUN, &STATUS_CONTEXT],
};

static CHECK_SUITE: Type = Type {
    name: "CheckSuite",
    leaves: &[
        "id",
        "databaseId",
        "status",
        "conclusion",
        "createdAt",
        "updatedAt",
        "url",
        "resourcePath",
    ],
    objects: &[
        ("app", Gives::Object(&APP)),
        ("checkRuns", Gives::Connection(&CHECK_RUN)),
        ("branch", Gives::Object(&REF)),
        ("commit", Gives::Object(&COMMIT)),
        ("creator", Gives::Object(&USER)),
    ],
    narrows: &[],
};

static CHECK_RUN: Type = Type {
    name: "CheckRun",
    leaves: &[
        "id",
        "databaseId",
        "name",
        "status",
        "conclusion",
        "startedAt",
        "completedAt",
        "detailsUrl",
        "externalId",
        "title",
        "summary",
        "text",
        "url",
        "permalink",
        "resourcePath",
        "isRequired",
    ],
    objects: &[
        ("checkSuite", Gives::Object(&CHECK_SUITE)),
        ("annotations", Gives::Connection(&ANNOTATION)),
    ],
    narrows: &[],
};

static ANNOTATION: Type = Type {
    name: "CheckAnnotation",
    leaves: &[
        "path",
        "message",
        "title",
        "annotationLevel",
        "rawDetails",
        "blobUrl",
        "databaseId",
    ],
    objects: &[("location", Gives::Object(&ANNOTATION_SPAN))],
    narrows: &[],
};

static ANNOTATION_SPAN: Type = Type {
    name: "CheckAnnotationSpan",
    leaves: &[],
    objects: &[
        ("start", Gives::Object(&ANNOTATION_POSITION)),
        ("end", Gives::Object(&ANNOTATION_POSITION)),
    ],
    narrows: &[],
};

static ANNOTATION_POSITION: Type = Type {
    name: "CheckAnnotationPosition",
    leaves: &["line", "column"],
    objects: &[],
    narrows: &[],
};

static APP: Type = Type {
    name: "App",
    leaves: &["id", "databaseId", "name", "slug", "url", "logoUrl"],
    objects: &[],
    narrows: &[],
};
