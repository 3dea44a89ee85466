"""Follows the URLs a GitHub Enterprise answers with, through gateway + agent, with PyGithub.

    python follow.py FRONT

FRONT is the pool's front URL, http://<api>/private/<pool>. The stand-in GHE behind the agent
(tests/e2e/point_back.rs) answers with its own absolute URLs, as a real one does; PyGithub
follows them (completed objects, `Link` pagination), which works only when the agent points
them back at FRONT. Every request carries the caller credential, and each step prints one JSON
line (see steps.py).
"""

import sys

from steps import exit_status, passes

import github  # noqa: E402 (after steps patched requests)


def main(front):
    gh = github.Github(base_url=front + "/api/v3", auth=github.Auth.Token("ghp_test"), retry=None)
    repo = passes("get_repo", lambda: gh.get_repo("acme/infra"), lambda r: r.full_name == "acme/infra")
    if repo is None:
        return
    passes("the repository's url is on the front", lambda: repo.url, lambda u: u.startswith(front + "/"))
    passes("its web page is the VCS's", lambda: repo.html_url, lambda u: not u.startswith(front))
    passes(
        "get_branches follows Link over three pages",
        lambda: [b.name for b in repo.get_branches()],
        lambda names: names == ["b1", "b2", "b3", "b4", "b5", "b6"],
    )
    pull = passes("get_pull", lambda: repo.get_pull(1), lambda p: p.title == "Add a check")
    if pull is None:
        return
    passes("the pull request's issue_url is on the front", lambda: pull.issue_url, lambda u: u.startswith(front + "/"))
    passes(
        "create_issue_comment posts to the issue_url it was given",
        lambda: pull.create_issue_comment("planned: 1 to add"),
        lambda c: c.id == 42 and c.url.startswith(front + "/"),
    )
    passes(
        "get_files follows the pull request's url",
        lambda: [f.filename for f in pull.get_files()],
        lambda names: names == ["main.tf"],
    )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
    sys.exit(exit_status())
