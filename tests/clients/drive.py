"""Drives the real client libraries a CI/CD SaaS uses through gateway + agent.

    python drive.py VENDOR FRONT MODE

VENDOR is gitlab, github_enterprise, bitbucket_datacenter or azure_devops; FRONT is the
pool's front URL, http://<api>/private/<pool>; MODE is `restricted` (the agent runs with
SPACELIFT_VCS_AGENT_ALLOWED_PROJECTS, and the steps reaching other projects must be denied)
or `open` (without it: those steps are not run). tests/e2e/real_clients.rs runs this against
a vendor stub behind the agent and checks, on the stub's side, what arrived.

For Azure DevOps, VCS_TEST_AZURE_ORG is the path from FRONT to the organisation or
collection the SDK is given (`acme`, `tfs/DefaultCollection`, or empty when the agent's base
endpoint ends in the collection), VCS_TEST_AZURE_COLLECTION its name.

Every request of every library carries the caller credential, and each step prints one JSON
line (see steps.py): a step expected to pass must
return what the stub answers; a step expected to be denied must fail with the agent's 403,
and the library must show the agent's reason. Exit status 0 when every step went as
expected, 1 otherwise.
"""

import os
import sys
import urllib.parse

import requests

from steps import exit_status, passes, report  # before the client libraries: it patches requests

SHA = "0123456789abcdef0123456789abcdef01234567"
AZURE_REPO = "3411ebc1-d5aa-464f-9615-0b527bc66719"
AZURE_OTHER = "9c4f29fb-0d6e-4b3e-a1b3-6f1f2d4b8a77"
AZURE_PROJECT = "5e0c5b2a-9a53-4a8e-9e0d-0d7b2c1e6f00"
AZURE_HR_PROJECT = "7a7a7a7a-2222-4a8e-9e0d-0d7b2c1e6f00"
DISCUSSION = "6a9c1750b37d513a43987b574953fceb50b03ce7"
RESTRICTED = len(sys.argv) > 3 and sys.argv[3] == "restricted"

def listed(allowed, others):
    """What a listing shows: the allowed entries, and the others too when unrestricted."""
    return allowed if RESTRICTED else allowed + others


def status_of(error):
    for attribute in ("response_code", "status", "status_code"):
        value = getattr(error, attribute, None)
        if isinstance(value, int):
            return value
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def denied(step, call, reason):
    """The call must fail with the agent's 403, and the library must show `reason`. Only
    while projects are restricted: a step that reaches another project passes otherwise."""
    if not RESTRICTED:
        return
    return refused(step, call, reason)


def refused(step, call, reason):
    """The call must fail with the agent's 403 in either mode, the library showing `reason`."""
    try:
        result = call()
    except Exception as e:
        status, text = status_of(e), str(e)
        shown = reason in text
        ok = status in (403, None) and shown
        report(step, ok, "" if ok else f"status {status}, reason shown: {shown}: {text}")
        return
    report(step, False, f"passed: {result!r}")


def gitlab(front):
    import gitlab as gl_lib

    gl = gl_lib.Gitlab(front, private_token="glpat-ci-secret", retry_transient_errors=False)
    passes("user", gl.auth)
    project = passes("project by path", lambda: gl.projects.get("group/repo"), lambda p: p.id == 5)
    if project is None:
        return
    # From here python-gitlab addresses the project by its numeric id.
    passes("branches (by id)", lambda: project.branches.list(get_all=False), lambda b: b[0].name == "main")
    passes("branch with a slash", lambda: project.branches.get("feature/x"), lambda b: b.name == "feature/x")
    commit = passes("commit", lambda: project.commits.get(SHA), lambda c: c.id == SHA)
    passes(
        "raw file below the root",
        lambda: project.files.raw(file_path="stacks/main.tf", ref="main"),
        lambda raw: raw == b'terraform {}\n',
    )
    if commit is not None:
        passes(
            "commit status",
            lambda: project.commits.get(SHA, lazy=True).statuses.create({"state": "success", "name": "ci"}),
            lambda s: s.status == "success",
        )
    mr = passes("merge request", lambda: project.mergerequests.get(1), lambda m: m.iid == 1)
    if mr is not None:
        passes("merge request comment", lambda: mr.notes.create({"body": "plan: 1 to add"}), lambda n: n.id == 3)
        passes(
            "merge request line comment (discussion)",
            lambda: mr.discussions.create({"body": "typo", "position": {"new_line": 3}}),
            lambda d: d.id == DISCUSSION,
        )
        passes("merge request approval state", lambda: mr.approval_state.get(), lambda a: a.approval_rules_overwritten is False)
    env = passes("environment", lambda: project.environments.get(8), lambda e: e.id == 8)
    if env is not None:
        env.external_url = "https://ci.example/8"
        passes("environment update", env.save)
    passes(
        "refs of a commit",
        lambda: project.commits.get(SHA, lazy=True).refs(),
        lambda refs: refs[0]["name"] == "main",
    )
    passes("blob", lambda: project.repository_blob(SHA), lambda b: b["sha"] == SHA)
    passes(
        "archive",
        lambda: project.repository_archive(sha=SHA, format="tar.gz"),
        lambda data: data == b"tarball-bytes",
    )
    passes(
        "project listing (filtered while restricted)",
        lambda: gl.projects.list(search="e", get_all=False),
        lambda ps: [p.path_with_namespace for p in ps] == listed(["group/repo"], ["other/secret"]),
    )
    denied("other project by path", lambda: gl.projects.get("other/secret"), "project other/secret is not allowed")
    denied(
        "other project by id",
        lambda: gl.projects.get(6, lazy=True).branches.list(get_all=False),
        "project other/secret (id 6) is not allowed",
    )
    refused(
        "method override header",
        lambda: gl.http_request(
            "post",
            f"/projects/5/statuses/{SHA}",
            post_data={"state": "success"},
            extra_headers={"X-HTTP-Method-Override": "DELETE"},
        ),
        "method override header",
    )
    denied(
        "compare against another project",
        lambda: project.repository_compare("main", "feature", from_project_id=6),
        "from_project_id",
    )


def github(front):
    from github import Auth, Github, GithubException  # noqa: F401

    g = Github(
        base_url=f"{front}/api/v3",
        auth=Auth.Token("ghp-ci-secret"),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    passes("user", lambda: g.get_user().login, lambda login: login == "ci")
    repo = passes("repository", lambda: g.get_repo("acme/infra"), lambda r: r.id == 7)
    if repo is None:
        return
    passes("branch with a slash", lambda: repo.get_branch("feature/x"), lambda b: b.name == "feature/x")
    commit = passes("commit", lambda: repo.get_commit(SHA), lambda c: c.sha == SHA)
    passes(
        "file contents",
        lambda: repo.get_contents("stacks/main.tf", ref="main").decoded_content,
        lambda content: content == b"terraform {}\n",
    )
    if commit is not None:
        passes("commit status", lambda: commit.create_status("success", context="ci"), lambda s: s.state == "success")
        passes("commit statuses", lambda: list(commit.get_statuses()), lambda s: s[0].state == "success")
        passes("check suites of a commit", lambda: list(commit.get_check_suites()), lambda s: s[0].id == 5)
    passes(
        "commit by a ref with raw slashes (go-github's spelling)",
        lambda: g.requester.requestJsonAndCheck("GET", f"{front}/api/v3/repos/acme/infra/commits/feature/x")[1],
        lambda c: c["sha"] == SHA,
    )
    passes(
        "status on a ref",
        lambda: g.requester.requestJsonAndCheck(
            "POST", f"{front}/api/v3/repos/acme/infra/statuses/main", input={"state": "pending"}
        )[1],
        lambda s: s["state"] == "pending",
    )
    passes(
        "environment",
        lambda: repo.create_environment("production"),
        lambda e: e.name == "production",
    )
    passes("organisation", lambda: g.get_organization("acme").login, lambda login: login == "acme")
    passes("check run", lambda: repo.create_check_run(name="plan", head_sha=SHA), lambda c: c.id == 4)
    pull = passes("pull request", lambda: repo.get_pull(8), lambda p: p.number == 8)
    if pull is not None:
        passes("pull request comment", lambda: pull.create_issue_comment("plan: 1 to add"), lambda c: c.id == 9)
        passes("review comments", lambda: list(pull.get_review_comments()), lambda c: c[0].id == 77)
        if commit is not None:
            passes(
                "review comment on a line",
                lambda: pull.create_review_comment("typo", commit, "main.tf", line=3),
                lambda c: c.id == 78,
            )
        passes("review comment reply", lambda: pull.create_review_comment_reply(77, "fixed"), lambda c: c.id == 79)
    link = passes("archive link", lambda: repo.get_archive_link("tarball", "main"), lambda l: l.startswith(f"{front}/_codeload/"))
    if link is not None:
        # Following it as any HTTP client does: resolved against the URL asked for.
        asked = f"{front}/api/v3/repos/acme/infra/tarball/main"
        passes(
            "archive download through the redirect",
            lambda: requests.get(urllib.parse.urljoin(asked, link), timeout=30).content,
            lambda data: data == b"tarball-bytes",
        )
    passes("repository by id", lambda: g.get_repo(7).full_name, lambda name: name == "acme/infra")
    passes(
        "repository listing (filtered while restricted)",
        lambda: [r.full_name for r in g.get_user().get_repos()],
        lambda names: names == listed(["acme/infra"], ["other/secret"]),
    )
    passes(
        "GraphQL query",
        lambda: g.requester.graphql_query(
            'query($o: String!) { repository(owner: $o, name: "infra") { id } }', {"o": "acme"}
        )[1],
        lambda data: data["data"]["repository"]["id"] == "R_1",
    )
    denied("other repository", lambda: g.get_repo("other/secret"), "project other/secret is not allowed")
    denied("other repository by id", lambda: g.get_repo(6), "project other/secret (id 6) is not allowed")
    refused(
        "GraphQL mutation writing a ref",
        lambda: g.requester.graphql_query(
            'mutation { deleteRef(input: {refId: "REF_1"}) { clientMutationId } }', {}
        ),
        "deleteRef",
    )
    denied(
        "GraphQL query of another repository",
        lambda: g.requester.graphql_query('query { repository(owner: "other", name: "secret") { id } }', {}),
        "other/secret",
    )
    refused(
        "method override header",
        lambda: g.requester.requestJsonAndCheck(
            "POST",
            f"{front}/api/v3/repos/acme/infra/statuses/{SHA}",
            input={"state": "success"},
            headers={"X-HTTP-Method-Override": "DELETE"},
        ),
        "method override header",
    )


def bitbucket(front):
    from atlassian import Bitbucket

    bb = Bitbucket(url=front, token="bb-ci-secret")
    passes("repository", lambda: bb.get_repo("PLAT", "infra"), lambda r: r["slug"] == "infra")
    passes(
        "branches",
        lambda: list(bb.get_branches("PLAT", "infra", limit=25)),
        lambda bs: bs[0]["displayId"] == "main",
    )
    passes("commit", lambda: bb.get_commit_info("PLAT", "infra", SHA), lambda c: c["id"] == SHA)
    passes(
        "commit by a ref",
        lambda: bb.get_commit_info("PLAT", "infra", "refs%2Fheads%2Fmain"),
        lambda c: c["id"] == SHA,
    )
    passes(
        "changes of a commit",
        lambda: bb.get_commit_changes("PLAT", "infra", commit_id=SHA),
        lambda c: c["values"][0]["path"]["toString"] == "stacks/main.tf",
    )
    passes(
        "diff of a file",
        lambda: bb.get_diff("PLAT", "infra", "stacks/main.tf", "a1b2c3d", SHA),
        lambda d: d == [],
    )
    passes("personal repository (users/~jdoe)", lambda: bb.get_repo("~jdoe", "tools"), lambda r: r["slug"] == "tools")
    passes(
        "raw file",
        lambda: bb.get_content_of_file("PLAT", "infra", "stacks/main.tf", at="main"),
        lambda raw: raw == b"terraform {}\n",
    )
    passes(
        "build status",
        lambda: bb.post(
            f"rest/api/latest/projects/PLAT/repos/infra/commits/{SHA}/builds",
            data={"key": "ci", "state": "SUCCESSFUL", "url": "https://ci.example/1"},
        ),
    )
    passes(
        "pull request comment",
        lambda: bb.add_pull_request_comment("PLAT", "infra", 1, "plan: 1 to add"),
        lambda c: c["id"] == 3,
    )
    passes(
        "repository listing (filtered while restricted)",
        lambda: [r["slug"] for r in bb.repo_list("PLAT")],
        lambda slugs: slugs == listed(["infra"], ["secret"]),
    )
    denied("other repository", lambda: bb.get_repo("HR", "secret"), "project HR/secret is not allowed")
    refused(
        "method override header",
        lambda: bb.post(
            f"rest/api/latest/projects/PLAT/repos/infra/commits/{SHA}/builds",
            data={"key": "ci", "state": "SUCCESSFUL"},
            headers={"X-HTTP-Method-Override": "DELETE", "Content-Type": "application/json"},
        ),
        "method override header",
    )


def azure(front):
    from azure.devops.connection import Connection
    from azure.devops.v7_1.git.models import Comment, GitPullRequestCommentThread, GitStatus
    from msrest.authentication import BasicAuthentication

    org = os.environ.get("VCS_TEST_AZURE_ORG", "acme")
    collection = os.environ.get("VCS_TEST_AZURE_COLLECTION", "acme")
    base_url = f"{front}/{org}" if org else front
    connection = Connection(base_url=base_url, creds=BasicAuthentication("", "ado-ci-secret"))
    git = passes("git client (resource discovery)", connection.clients_v7_1.get_git_client)
    if git is None:
        return
    location = connection.clients_v7_1.get_location_client()
    passes(
        "connection data (the current user)",
        location.get_connection_data,
        lambda c: c.authenticated_user.id == "c0ffee00-0000-4000-8000-000000000001",
    )
    passes(
        "repository listing (filtered while restricted)",
        lambda: [r.name for r in git.get_repositories("platform")],
        lambda names: names == listed(["infra"], ["legacy"]),
    )
    passes("repository", lambda: git.get_repository("infra", project="platform"), lambda r: r.id == AZURE_REPO)
    passes(
        "commit (repository by GUID)",
        lambda: git.get_commit(SHA, AZURE_REPO, project="platform"),
        lambda c: c.commit_id == SHA,
    )
    passes(
        "commit (project by GUID)",
        lambda: git.get_commit(SHA, "infra", project=AZURE_PROJECT),
        lambda c: c.commit_id == SHA,
    )
    passes(
        "commit status",
        lambda: git.create_commit_status(
            GitStatus(state="succeeded", description="ci"), SHA, "infra", project="platform"
        ),
        lambda s: s.state == "succeeded",
    )
    passes("pull request", lambda: git.get_pull_request("infra", 21, project="platform"), lambda p: p.pull_request_id == 21)
    passes(
        "pull request comment",
        lambda: git.create_thread(
            GitPullRequestCommentThread(comments=[Comment(content="plan: 1 to add")]), "infra", 21, project="platform"
        ),
        lambda t: t.id == 3,
    )
    passes(
        "pull request commits",
        lambda: git.get_pull_request_commits("infra", 21, project="platform"),
        lambda cs: cs[0].commit_id == SHA,
    )
    passes(
        "resolve a thread",
        lambda: git.update_thread(GitPullRequestCommentThread(status="fixed"), "infra", 21, 3, project="platform"),
        lambda t: t.id == 3,
    )
    passes(
        "repository by GUID without its project",
        lambda: git.get_repository(AZURE_REPO),
        lambda r: r.name == "infra",
    )
    policy = connection.clients_v7_1.get_policy_client()
    artifact = f"vstfs:///CodeReview/CodeReviewId/{AZURE_PROJECT}/21"
    passes(
        "policy evaluations of a pull request",
        lambda: policy.get_policy_evaluations("platform", artifact),
        lambda e: e[0].status == "approved",
    )
    denied(
        "policy evaluations under another project",
        lambda: policy.get_policy_evaluations("hr", artifact),
        "not in the project hr the path names",
    )
    denied(
        "policy evaluations of another project's pull request",
        lambda: policy.get_policy_evaluations("platform", f"vstfs:///CodeReview/CodeReviewId/{AZURE_HR_PROJECT}/7"),
        f"is in {collection.lower()}/hr/secret, not in the project platform",
    )
    refused(
        "method override header",
        lambda: git._send(
            http_method="POST",
            location_id="428dd4fb-fda5-4722-af02-9313b80305da",
            version="7.1-preview.1",
            route_values={"project": "platform", "repositoryId": "infra", "commitId": SHA},
            content={"state": "succeeded"},
            additional_headers={"X-HTTP-Method-Override": "DELETE"},
        ),
        "method override header",
    )
    denied(
        "other repository",
        lambda: git.get_repository("secret", project="hr"),
        f"project {collection}/hr/secret is not allowed",
    )
    denied(
        "other repository by GUID",
        lambda: git.get_commit(SHA, AZURE_OTHER, project="platform"),
        f"project {collection.lower()}/hr/secret (id {AZURE_OTHER}) is not allowed",
    )


def main():
    vendor, front = sys.argv[1], sys.argv[2].rstrip("/")
    {"gitlab": gitlab, "github_enterprise": github, "bitbucket_datacenter": bitbucket, "azure_devops": azure}[vendor](
        front
    )
    sys.exit(exit_status())


if __name__ == "__main__":
    main()
