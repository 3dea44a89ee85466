#!/usr/bin/env bash
# Runs the whole test suite: unit tests next to the code and the end-to-end tests in tests/e2e/,
# which start real gateway and agent processes, a recording upstream, git, supervisord and
# headless Chromium on loopback. Ends with one line adding up every test binary's result.
#
#   bash scripts/test.sh                        # everything
#   bash scripts/test.sh --test e2e tunnel::    # arguments go to `cargo test` instead of --all-targets
#
# A fresh Debian machine needs no set-up first: the system packages the tests use are checked
# before anything is built. When some are missing and the script runs as root with apt-get, it
# installs them quietly (waiting for the package manager's lock while unattended upgrades hold
# it: scripts/apt.sh); otherwise it stops with one line naming the packages and the command
# that installs them. Tests never skip a missing tool: they fail saying what is missing.
# (No test needs musl-tools: scripts/build-static.sh installs it for the static build.)
#
# Python contract (tests driving real Python client libraries): when
# tests/clients/requirements.txt exists (pinned versions), this script keeps a virtual
# environment in <target dir>/pyenv, runs `pip install -r` on it only when that file changed
# since the last install, and exports the environment's interpreter to the tests as
# VCS_TEST_PYTHON (an absolute path). Tests that need those libraries use $VCS_TEST_PYTHON and
# fail, naming this script, when it is unset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/apt.sh
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REQUIREMENTS=tests/clients/requirements.txt

on_path() { command -v "$1" >/dev/null 2>&1; }
# Chromium under any of the names tests/e2e/support/browser.rs looks for, or where it is told.
have_chromium() {
    [[ -n ${VCS_TEST_CHROMIUM:-} ]] && return 0
    on_path chromium || on_path chromium-browser || on_path google-chrome || [[ -x /usr/bin/chromium ]]
}
have_chromedriver() { [[ -n ${VCS_TEST_CHROMEDRIVER:-} ]] || on_path chromedriver; }
# Headless Chromium renders the panel's text with a system font; without any, no text.
have_fonts() { [[ -n $(find /usr/share/fonts -name '*.[ot]tf' -print -quit 2>/dev/null) ]]; }
have_venv() { on_path python3 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; }
have_ca_certificates() { [[ -s /etc/ssl/certs/ca-certificates.crt ]]; }

# Debian package names of what is missing, one per line.
missing_packages() {
    on_path git || echo git                                  # tests/e2e/allowlist_tunnel.rs
    on_path python3 || echo python3                          # scripts/git-http-server.py
    { on_path supervisord && on_path supervisorctl; } || echo supervisor   # tests/e2e/supervisord.rs
    have_chromium || echo chromium                           # tests/e2e/panel_browser.rs
    have_chromedriver || echo chromium-driver
    have_fonts || echo fonts-dejavu-core
    { on_path redis-server && on_path redis-cli; } || echo redis-server   # tests/e2e/replicas.rs
    if [[ -f $REQUIREMENTS ]]; then                          # VCS_TEST_PYTHON, see above
        have_venv || echo python3-venv
        have_ca_certificates || echo ca-certificates
    fi
}

ensure_packages() {
    local missing
    missing=$(missing_packages | tr '\n' ' ' | sed 's/ $//')
    [[ -z $missing ]] && return 0
    if [[ $(id -u) -eq 0 ]] && on_path apt-get; then
        printf '==> installing system packages the tests use: %s\n' "$missing" >&2
        local apt_log
        apt_log=$(mktemp)
        # Quiet unless it fails: then apt-get's own words say why.
        # shellcheck disable=SC2086 # one word per package
        if apt_get update -qq >"$apt_log" 2>&1 &&
            apt_get install -y -qq --no-install-recommends $missing >>"$apt_log" 2>&1; then
            missing=$(missing_packages | tr '\n' ' ' | sed 's/ $//')
        else
            cat "$apt_log" >&2
        fi
        rm -f "$apt_log"
        [[ -z $missing ]] && return 0
    fi
    printf 'test.sh: missing system packages: %s; install them with: sudo apt-get install -y --no-install-recommends %s\n' \
        "$missing" "$missing" >&2
    exit 1
}

# The Python environment of the contract above; the hash of the requirements marks it current.
python_environment() {
    [[ -f $REQUIREMENTS ]] || return 0
    local venv=$TARGET_DIR/pyenv stamp want
    stamp=$venv/requirements.sha256
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
        printf '==> installing %s into %s\n' "$REQUIREMENTS" "$venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
        echo "$want" >"$stamp"
    fi
    export VCS_TEST_PYTHON=$venv/bin/python
}

ensure_packages
python_environment

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --no-fail-fast: one failing test binary never hides the results of the others. Arguments
# choose targets themselves (`--test e2e`), so --all-targets is only the default.
(($#)) || set -- --all-targets
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
