"""What the client scripts share: the gateway's caller credential on every request, and the
steps they print.

Importing this module sets `Vcs-Gateway-Authorization: <value>` on every requests.Session
the libraries create, when the environment variable VCS_TEST_GATEWAY_AUTHORIZATION is set
(the gateway's caller authentication); import it before the client libraries.

Each step prints one JSON object, {"step", "ok", "detail"}; `exit_status()` is 0 when every
step went as expected, 1 otherwise.
"""

import json
import os

import requests

AUTH = os.environ.get("VCS_TEST_GATEWAY_AUTHORIZATION")
_session_init = requests.Session.__init__


def _session_with_gateway_auth(self, *args, **kwargs):
    _session_init(self, *args, **kwargs)
    if AUTH:
        self.headers["Vcs-Gateway-Authorization"] = AUTH


requests.Session.__init__ = _session_with_gateway_auth

failures = 0


def report(step, ok, detail=""):
    global failures
    if not ok:
        failures += 1
    print(json.dumps({"step": step, "ok": bool(ok), "detail": str(detail)[:400]}), flush=True)


def passes(step, call, check=lambda result: True):
    """The call must return, and `check` hold for what it returned; returns that, or None."""
    try:
        result = call()
    except Exception as e:  # the library's own error, reported as the step's failure
        report(step, False, f"{type(e).__name__}: {e}")
        return None
    ok = check(result)
    report(step, bool(ok), "" if ok else f"unexpected result: {result!r}")
    return result


def exit_status():
    return 1 if failures else 0
