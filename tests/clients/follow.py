"""Follows the URLs a GitHub Enterprise answers with, through gateway + agent, with PyGithub.

    python follow.py FRONT

FRONT is the pool's front URL, http://<api>/private/<pool>. The stand-in GHE behind the agent
(tests/e2e/point_back.rs) answers with its own absolute URLs, as a real one does; PyGithub
follows them (completed objects, `Link` pagination), which works only when the agent points
them back at FRONT. Every request carries `Vcs-Gateway-Authorization` when
VCS_TEST_GATEWAY_AUTHORIZATION is set.

Prints one JSON object per step, {"step", "ok", "detail"}; exit status 0 when every step
passed, 1 otherwise.
"""

import json
import os
import sys

import requests

AUTH = os.environ.get("VCS_TEST_GATEWAY_AUTHORIZATION")
_session_init = requests.Session.__init__


def _session_with_gateway_auth(self, *args, **kwargs):
    _session_init(self, *args, **kwargs)
    if AUTH:
        self.headers["Vcs-Gateway-Authorization"] = AUTH


requests.Session.__init__ = _session_with_gateway_auth

import github  # noqa: E402 (after the session is patched)

failures = 0


def report(step, ok, detail=""):
    global failures
    if not ok:
        failures += 1
    print(json.dumps({"step": step, "ok": bool(ok), "detail": str(detail)[:400]}), flush=True)


def step(name, call, check):
    try:
        result = call()
    except Exception as e:  # the library's own error is the step's failure
        report(name, False, f"{type(e).__name__}: {e}")
        return None
    ok = check(result)
    report(name, ok, repr(result))
    return result


def main(front):
    gh = github.Github(base_url=front + "/api/v3", auth=github.Auth.Token("ghp_test"), retry=None)
    repo = step("get_repo", lambda: gh.get_repo("acme/infra"), lambda r: r.full_name == "acme/infra")
    if repo is None:
        return
    step("the repository's url is on the front", lambda: repo.url, lambda u: u.startswith(front + "/"))
    step("its web page is the VCS's", lambda: repo.html_url, lambda u: not u.startswith(front))
    step(
        "get_branches follows Link over three pages",
        lambda: [b.name for b in repo.get_branches()],
        lambda names: names == ["b1", "b2", "b3", "b4", "b5", "b6"],
    )
    pull = step("get_pull", lambda: repo.get_pull(1), lambda p: p.title == "Add a check")
    if pull is None:
        return
    step("the pull request's issue_url is on the front", lambda: pull.issue_url, lambda u: u.startswith(front + "/"))
    step(
        "create_issue_comment posts to the issue_url it was given",
        lambda: pull.create_issue_comment("planned: 1 to add"),
        lambda c: c.id == 42 and c.url.startswith(front + "/"),
    )
    step(
        "get_files follows the pull request's url",
        lambda: [f.filename for f in pull.get_files()],
        lambda names: names == ["main.tf"],
    )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
    sys.exit(1 if failures else 0)
