#!/usr/bin/env bash
# End-to-end demo of VCS Agent Pools on one machine, no network access needed:
#
#   git / curl ──HTTP──▶ vcs-gateway (api port) ══WebSocket tunnel══ vcs-agent ──HTTP──▶ "GitLab"
#                        /private/demo/<path>      (the agent dialled out)          git-http-server.py
#
# It builds the binaries, creates a sample repository, starts a fake GitLab
# (scripts/git-http-server.py), a gateway with a pool "demo" and an agent of that pool, then
# clones the repository and calls a GitLab API endpoint through the tunnel, and shows the
# logs. Everything it starts is stopped and its temporary directory removed on exit.
#
# Usage: bash scripts/demo.sh        (from anywhere; needs cargo, git, python3 and curl)
# Env:   KEEP_TMP=1                  keep the temporary directory (logs, repositories)
#        CARGO_TARGET_DIR            honoured, as cargo does
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PARALLELISM=2
WAIT_SECONDS=20

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf '\ndemo: FAILED: %s\n' "$*" >&2
    exit 1
}
indent() { sed 's/^/    /'; }

# -- cleanup ----------------------------------------------------------------------------------
TMP=""
PIDS=()      # every process we started, stopped in reverse order on exit
NAMES=()

stop_process() { # pid name: SIGTERM, up to 10 s, then SIGKILL
    local pid=$1 name=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: $name (pid $pid) ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_process "${PIDS[$i]}" "${NAMES[$i]}"
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ $status -ne 0 ]]; then
            for log in git-server.log gateway.log agent.log; do
                if [[ -s "$TMP/$log" ]]; then
                    printf '\n--- last lines of %s ---\n' "$log" >&2
                    tail -n 20 "$TMP/$log" >&2
                fi
            done
        fi
        if [[ "${KEEP_TMP:-}" == 1 ]]; then
            echo "demo: kept $TMP"
        else
            rm -rf "$TMP"
            [[ $status -eq 0 ]] || echo "demo: (run with KEEP_TMP=1 to keep the logs and repositories)" >&2
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started() { # pid name
    PIDS+=("$1")
    NAMES+=("$2")
}

forget() { # pid: it was stopped by hand
    local i
    for i in "${!PIDS[@]}"; do
        if [[ "${PIDS[$i]}" == "$1" ]]; then
            unset 'PIDS[i]' 'NAMES[i]'
        fi
    done
    PIDS=("${PIDS[@]+"${PIDS[@]}"}")
    NAMES=("${NAMES[@]+"${NAMES[@]}"}")
}

alive_or_die() { # pid name log
    kill -0 "$1" 2>/dev/null || die "$2 exited early; its log ($3):
$(tail -n 20 "$3" 2>/dev/null)"
}

# -- prerequisites ----------------------------------------------------------------------------
for tool in cargo git python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is required but not on PATH"
done
[[ -x "$(git --exec-path)/git-http-backend" ]] ||
    die "git http-backend is missing ($(git --exec-path)/git-http-backend)"

# Git and curl must not pick up the user's configuration or proxies: the demo talks to
# 127.0.0.1 only.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
export GIT_AUTHOR_NAME="Demo Developer" GIT_AUTHOR_EMAIL="dev@example.com"
export GIT_COMMITTER_NAME="Demo Developer" GIT_COMMITTER_EMAIL="dev@example.com"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
CURL=(curl -sS --noproxy '*' --max-time 30)

# -- 1. build ---------------------------------------------------------------------------------
step "Building vcs-agent and vcs-gateway (cargo build --release)"
cargo build --release --bins || die "cargo build failed"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
AGENT_BIN="$TARGET_DIR/release/vcs-agent"
GATEWAY_BIN="$TARGET_DIR/release/vcs-gateway"
[[ -x "$AGENT_BIN" && -x "$GATEWAY_BIN" ]] || die "binaries not found in $TARGET_DIR/release"
info "$AGENT_BIN"
info "$GATEWAY_BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/vcs-agent-demo.XXXXXX")"

# -- 2. sample repository ---------------------------------------------------------------------
step "Creating a sample repository group/sample.git (2 branches)"
seed="$TMP/seed"
git init -q "$seed"
git -C "$seed" symbolic-ref HEAD refs/heads/main
commit() { # date message: commit everything with a fixed date, so hashes are reproducible
    git -C "$seed" add -A
    GIT_AUTHOR_DATE="$1" GIT_COMMITTER_DATE="$1" git -C "$seed" commit -q -m "$2"
}
printf '# sample\n\nInfrastructure managed by Spacelift.\n' >"$seed/README.md"
commit "2024-01-01T10:00:00Z" "Initial commit"
cat >"$seed/main.tf" <<'EOF'
terraform {
  required_version = ">= 1.5"
}

resource "random_pet" "name" {}
EOF
commit "2024-01-02T10:00:00Z" "Add Terraform configuration"
git -C "$seed" checkout -q -b feature/add-output
cat >>"$seed/main.tf" <<'EOF'

output "name" {
  value = random_pet.name.id
}
EOF
commit "2024-01-03T10:00:00Z" "Add an output"
git -C "$seed" checkout -q main
mkdir -p "$TMP/repos/group"
git clone -q --bare "$seed" "$TMP/repos/group/sample.git"
git -C "$TMP/repos/group/sample.git" for-each-ref --format='%(refname:short) %(objectname:short) %(contents:subject)' refs/heads | indent

# -- 3. the internal VCS ----------------------------------------------------------------------
step "Starting the internal VCS (scripts/git-http-server.py, a GitLab stand-in)"
python3 "$ROOT/scripts/git-http-server.py" --root "$TMP/repos" --listen 127.0.0.1:0 \
    --port-file "$TMP/git-server.port" --log "$TMP/git-server.requests" \
    >"$TMP/git-server.log" 2>&1 &
GIT_SERVER_PID=$!
started "$GIT_SERVER_PID" git-http-server
for _ in $(seq $((WAIT_SECONDS * 10))); do
    [[ -s "$TMP/git-server.port" ]] && break
    alive_or_die "$GIT_SERVER_PID" git-http-server "$TMP/git-server.log"
    sleep 0.1
done
[[ -s "$TMP/git-server.port" ]] || die "git-http-server did not start within ${WAIT_SECONDS}s"
VCS="127.0.0.1:$(cat "$TMP/git-server.port")"
info "listening on http://$VCS (not reachable by the SaaS: only the agent talks to it)"

# -- 4. the gateway ---------------------------------------------------------------------------
step "Starting the gateway (agent port and api port picked by the OS)"
"$GATEWAY_BIN" serve --data-dir "$TMP/gateway-data" \
    --agent-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >"$TMP/gateway.log" 2>&1 &
GATEWAY_PID=$!
started "$GATEWAY_PID" vcs-gateway
AGENT_PORT_ADDR="" API=""
for _ in $(seq $((WAIT_SECONDS * 10))); do
    AGENT_PORT_ADDR="$(sed -n 's/.*agent port listening on \([^ ]*\).*/\1/p' "$TMP/gateway.log" | head -n 1)"
    API="$(sed -n 's/.*api port listening on \([^ ]*\).*/\1/p' "$TMP/gateway.log" | head -n 1)"
    [[ -n "$AGENT_PORT_ADDR" && -n "$API" ]] && break
    alive_or_die "$GATEWAY_PID" vcs-gateway "$TMP/gateway.log"
    sleep 0.1
done
[[ -n "$AGENT_PORT_ADDR" && -n "$API" ]] || die "the gateway did not log its ports within ${WAIT_SECONDS}s"
info "agent port: ws://$AGENT_PORT_ADDR   (agents dial out to it)"
info "api port:   http://$API   (the SaaS sends private requests here)"

step "Creating the pool \"demo\" (the running gateway picks it up)"
TOKEN="$("$GATEWAY_BIN" pool create --data-dir "$TMP/gateway-data" --name demo \
    --description "vcs-agent demo" --public-url "ws://$AGENT_PORT_ADDR")" ||
    die "vcs-gateway pool create failed"
[[ -n "$TOKEN" ]] || die "vcs-gateway pool create printed no token"
info "pool token: ${TOKEN:0:16}... (${#TOKEN} characters; it holds the gateway URL and the pool key)"

step "Creating the caller \"demo-saas\" for pool demo (the SaaS side's credential)"
SECRET="$("$GATEWAY_BIN" caller create --data-dir "$TMP/gateway-data" --name demo-saas \
    --pools demo | tail -n 1)" || die "vcs-gateway caller create failed"
[[ "$SECRET" == vgc_* ]] || die "vcs-gateway caller create printed no secret"
info "caller secret: ${#SECRET} characters, printed once (sent as Vcs-Gateway-Authorization: Bearer <secret>)"
CALLER=(-H "Vcs-Gateway-Authorization: Bearer $SECRET")
ADMIN="$(cat "$TMP/gateway-data/admin-token")" || die "the gateway wrote no admin token"
info "admin token: made by the gateway in gateway-data/admin-token (mode 0600)"
OPERATOR=(-H "Authorization: Bearer $ADMIN")

# -- 5. the agent -----------------------------------------------------------------------------
step "Starting the agent (vendor gitlab, parallelism $PARALLELISM, metadata site=demo)"
unset_spacelift=()
while IFS= read -r name; do
    unset_spacelift+=(-u "$name")
done < <(compgen -e | grep '^SPACELIFT_' || true)
env "${unset_spacelift[@]+"${unset_spacelift[@]}"}" \
    SPACELIFT_VCS_AGENT_POOL_TOKEN="$TOKEN" \
    SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT="http://$VCS" \
    SPACELIFT_VCS_AGENT_VENDOR=gitlab \
    SPACELIFT_VCS_AGENT_PARALLELISM="$PARALLELISM" \
    SPACELIFT_METADATA_site=demo \
    "$AGENT_BIN" >"$TMP/agent.log" 2>&1 &
AGENT_PID=$!
started "$AGENT_PID" vcs-agent

streams() { # the number of connected streams of pool demo, per /healthz
    "${CURL[@]}" "${OPERATOR[@]}" --max-time 2 "http://$API/healthz" 2>/dev/null | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin)["pools"]["demo"]["streams"])
except Exception:
    print(0)'
}
connected=0
for _ in $(seq $((WAIT_SECONDS * 5))); do
    connected="$(streams)"
    ((connected >= PARALLELISM)) && break
    alive_or_die "$AGENT_PID" vcs-agent "$TMP/agent.log"
    sleep 0.2
done
((connected >= 1)) || die "no agent stream reached the gateway within ${WAIT_SECONDS}s"
info "the agent is connected: $connected streams ready"
info "GET /healthz -> $("${CURL[@]}" "http://$API/healthz")   (liveness only, for anyone)"
info "GET /healthz with the admin token -> $("${CURL[@]}" "${OPERATOR[@]}" "http://$API/healthz")"

# -- 6. through the tunnel --------------------------------------------------------------------
step "Without the caller secret the front refuses, before any pool is looked at"
refused="$("${CURL[@]}" -w ' %{http_code}' "http://$API/private/demo/group/sample.git/info/refs?service=git-upload-pack")"
info "GET /private/demo/... without Vcs-Gateway-Authorization -> $refused"
[[ "$refused" == *' 401' ]] || die "an unauthenticated tunnel request was not refused: $refused"

step "Cloning through the tunnel: git -c http.extraHeader=\"Vcs-Gateway-Authorization: Bearer …\" clone http://$API/private/demo/group/sample.git"
git -c http.extraHeader="Vcs-Gateway-Authorization: Bearer $SECRET" \
    clone -q "http://$API/private/demo/group/sample.git" "$TMP/clone" ||
    die "git clone through the tunnel failed"
info "git log --oneline --all --graph:"
git -C "$TMP/clone" log --oneline --all --graph --decorate | indent
[[ "$(git -C "$TMP/clone" rev-parse origin/feature/add-output)" == \
    "$(git -C "$TMP/repos/group/sample.git" rev-parse feature/add-output)" ]] ||
    die "the clone does not match the repository"

step "Calling the GitLab API through the tunnel"
api_path="/api/v4/projects/group%2Fsample/repository/branches"
info "GET http://$API/private/demo$api_path"
code="$("${CURL[@]}" "${CALLER[@]}" -o "$TMP/branches.json" -w '%{http_code}' "http://$API/private/demo$api_path")" ||
    die "curl through the tunnel failed"
[[ "$code" == 200 ]] || die "the API call answered $code: $(head -c 500 "$TMP/branches.json")"
python3 - "$TMP/branches.json" <<'EOF' | indent
import json, sys
for branch in json.load(open(sys.argv[1])):
    commit = branch["commit"]
    mark = " (default)" if branch.get("default") else ""
    print(f'{branch["name"]:<22} {commit["short_id"]}  {commit["title"]}{mark}')
EOF
info "raw JSON:"
python3 -m json.tool "$TMP/branches.json" | head -n 40 | indent

# -- 7. logs ----------------------------------------------------------------------------------
step "Agent access log (one line per request it forwarded to the VCS)"
grep ' access: ' "$TMP/agent.log" | indent || info "(no access lines)"

step "Gateway front log (one line per request the SaaS sent)"
grep ' front: ' "$TMP/gateway.log" | indent || info "(no front lines)"

step "Requests the internal VCS received"
indent <"$TMP/git-server.requests"

# -- 8. shutdown ------------------------------------------------------------------------------
step "Stopping the agent with SIGTERM (it drains, then exits 0)"
kill -TERM "$AGENT_PID"
for _ in $(seq $((WAIT_SECONDS * 10))); do
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$AGENT_PID" 2>/dev/null && die "the agent did not exit within ${WAIT_SECONDS}s of SIGTERM"
agent_status=0
wait "$AGENT_PID" || agent_status=$?
forget "$AGENT_PID"
[[ $agent_status -eq 0 ]] || die "the agent exited with status $agent_status"
grep -E 'signal|drain' "$TMP/agent.log" | indent || true
info "agent exited with status 0"
info "GET /healthz -> $("${CURL[@]}" "${OPERATOR[@]}" "http://$API/healthz")"

step "Stopping the gateway and the internal VCS"
for pid_name in "$GATEWAY_PID vcs-gateway" "$GIT_SERVER_PID git-http-server"; do
    read -r pid name <<<"$pid_name"
    stop_process "$pid" "$name"
    forget "$pid"
    info "$name stopped"
done

step "Demo finished: the clone and the API call went SaaS -> gateway -> agent -> VCS"
