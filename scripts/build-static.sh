#!/usr/bin/env bash
# Builds static (musl) release binaries of vcs-agent and vcs-gateway for one target, proves
# they are static and small enough, then runs them end to end on loopback: --version, --help,
# gateway, pool, fake GitLab, `vcs-agent check`, the agent, one allowlisted request through
# the tunnel, a graceful stop. A target of another architecture than this machine's runs
# under Debian's qemu-user-static, the whole smoke test included.
#
# Why static: the agent runs on bastion hosts and minimal images we do not control; a binary
# with no program interpreter and no shared libraries runs on any Linux kernel of its
# architecture.
#
# Usage: bash scripts/build-static.sh [TARGET]   (from anywhere; needs cargo/rustup, python3, git)
#        TARGET  x86_64-unknown-linux-musl (default) or aarch64-unknown-linux-musl
# Env:   MAX_AGENT_BYTES   size limit for vcs-agent [4718592 = 4.5 MiB]
#        KEEP_TMP=1        keep the smoke test's temporary directory (logs)
#        CARGO_TARGET_DIR  honoured, as cargo does
#        APT_LOCK_WAIT     seconds to wait for the package manager's lock [300] (scripts/apt.sh)
# Installs what is missing: the rustup target; for this machine's architecture Debian's
# musl-tools (musl-gcc, which ring's and mimalloc's C code need); for another, zig and
# cargo-zigbuild from PyPI into <target dir>/zig-toolchain (zig brings a C compiler and musl
# for every architecture), Debian's python3-venv for that, and Debian's qemu-user-static to
# run the result. Debian packages are installed with apt-get when run as root (or with sudo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/apt.sh

TARGET="${1:-x86_64-unknown-linux-musl}"
MAX_AGENT_BYTES="${MAX_AGENT_BYTES:-4718592}"
WAIT_SECONDS=20
# Pinned: the cross toolchain of every release build.
ZIG_PACKAGES=(ziglang==0.17.0 cargo-zigbuild==0.24.0)

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf '\nbuild-static: FAILED: %s\n' "$*" >&2
    exit 1
}

ARCH="${TARGET%%-*}"
case "$TARGET" in
x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) ;;
*) die "unsupported target $TARGET: x86_64-unknown-linux-musl or aarch64-unknown-linux-musl" ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"

# apt_package COMMAND PACKAGE: installs the Debian package that brings COMMAND when missing.
apt_package() {
    command -v "$1" >/dev/null && return 0
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available: install $2"
    info "installing $2 ($1) with apt-get"
    apt_install "$2" || die "apt-get install $2 failed"
    command -v "$1" >/dev/null || die "$2 is installed but $1 is not on PATH"
}

# zig and cargo-zigbuild in a virtual environment of their own, made again when the pins move.
zig_toolchain() {
    local venv="$TARGET_DIR/zig-toolchain" want="${ZIG_PACKAGES[*]}"
    if [[ ! -x "$venv/bin/cargo-zigbuild" || "$(cat "$venv/pins" 2>/dev/null)" != "$want" ]]; then
        python3 -c 'import venv, ensurepip' 2>/dev/null || {
            info "installing python3-venv with apt-get"
            apt_install python3-venv ||
                die "python3 cannot make a virtual environment and apt-get install python3-venv failed"
        }
        info "installing ${ZIG_PACKAGES[*]} from PyPI into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${ZIG_PACKAGES[@]}" ||
            die "pip install ${ZIG_PACKAGES[*]} failed"
        echo "$want" >"$venv/pins"
    fi
    export PATH="$venv/bin:$PATH"
    # The pinned zig, not one that may be on PATH.
    CARGO_ZIGBUILD_ZIG_PATH="$("$venv/bin/python" -c 'import os, ziglang
print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')" || die "the zig of $venv is missing"
    export CARGO_ZIGBUILD_ZIG_PATH
}

# -- 1. toolchain -----------------------------------------------------------------------------
step "Toolchain for $TARGET"
command -v cargo >/dev/null || die "cargo is required but not on PATH"
command -v python3 >/dev/null || die "python3 is required but not on PATH"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    info "adding the rustup target $TARGET"
    rustup target add "$TARGET" || die "rustup target add $TARGET failed"
fi
apt_package readelf binutils
apt_package file file
BUILD=(cargo build)
RUN=()
if [[ "$ARCH" == "$(uname -m)" ]]; then
    apt_package musl-gcc musl-tools
    # ring's and mimalloc's build scripts compile C (and assembly): point them at the musl wrapper.
    export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
    export CC_aarch64_unknown_linux_musl="${CC_aarch64_unknown_linux_musl:-musl-gcc}"
    info "rustc $(rustc --version | cut -d' ' -f2), C compiler musl-gcc"
else
    zig_toolchain
    apt_package "qemu-$ARCH-static" qemu-user-static
    BUILD=(cargo zigbuild)
    RUN=("qemu-$ARCH-static")
    info "rustc $(rustc --version | cut -d' ' -f2), $(cargo-zigbuild --version), zig $("$CARGO_ZIGBUILD_ZIG_PATH" version)"
    info "the binaries run under $("qemu-$ARCH-static" --version | head -n 1)"
fi

# -- 2. build ---------------------------------------------------------------------------------
step "${BUILD[*]} --release --locked --target $TARGET --bins"
"${BUILD[@]}" --release --locked --target "$TARGET" --bins || die "${BUILD[*]} failed"
OUT="$TARGET_DIR/$TARGET/release"
AGENT_BIN="$OUT/vcs-agent"
GATEWAY_BIN="$OUT/vcs-gateway"

# -- 3. static and small ----------------------------------------------------------------------
step "Checking that the binaries are static"
for bin in "$AGENT_BIN" "$GATEWAY_BIN"; do
    [[ -x "$bin" ]] || die "$bin was not built"
    if readelf -lW "$bin" | grep -q 'INTERP'; then
        die "$(basename "$bin") has a program interpreter: $(readelf -lW "$bin" | grep -A1 INTERP | tail -n 1)"
    fi
    if readelf -dW "$bin" | grep -q '(NEEDED)'; then
        die "$(basename "$bin") needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ')"
    fi
    file_says="$(file -b "$bin")"
    grep -Eq 'statically linked|static-pie linked' <<<"$file_says" ||
        die "$(basename "$bin") is not static; file says: $file_says"
    info "$(basename "$bin"): no INTERP, no NEEDED; file: $file_says"
done

step "Sizes"
size_of() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
AGENT_BYTES="$(size_of "$AGENT_BIN")"
GATEWAY_BYTES="$(size_of "$GATEWAY_BIN")"
info "vcs-agent    $AGENT_BYTES bytes ($(mib "$AGENT_BYTES"))   $AGENT_BIN"
info "vcs-gateway  $GATEWAY_BYTES bytes ($(mib "$GATEWAY_BYTES"))   $GATEWAY_BIN"
((AGENT_BYTES <= MAX_AGENT_BYTES)) ||
    die "vcs-agent is $AGENT_BYTES bytes, over the limit of $MAX_AGENT_BYTES ($(mib "$MAX_AGENT_BYTES"))"

step "--version, --help and the allocator's setting"
for bin in "$AGENT_BIN" "$GATEWAY_BIN"; do
    name="$(basename "$bin")"
    version="$("${RUN[@]}" "$bin" --version)" || die "$name --version failed"
    [[ "$version" =~ ^$name\ [0-9]+\.[0-9]+\.[0-9]+ ]] || die "$name --version printed: $version"
    help="$("${RUN[@]}" "$bin" --help)" || die "$name --help failed"
    grep -q "USAGE:" <<<"$help" || die "$name --help printed no usage: $help"
    # .cargo/config.toml's CFLAGS define must reach mimalloc in every build, cross ones too.
    options="$(MIMALLOC_VERBOSE=1 "${RUN[@]}" "$bin" --version 2>&1)" || die "$name --version failed"
    grep -q "option 'arena_eager_commit': 0" <<<"$options" ||
        die "$name: mimalloc commits its arena eagerly (the CFLAGS define of .cargo/config.toml did not reach it)"
    info "$version; --help ok; mimalloc arena_eager_commit 0"
done

# -- 4. smoke test ----------------------------------------------------------------------------
step "Smoke test of the static binaries on loopback"
for tool in python3 git; do
    command -v "$tool" >/dev/null || die "$tool is required for the smoke test"
done
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/vcs-static-smoke.XXXXXX")"
PIDS=()
stop_all() {
    local status=$? i pid
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[$i]}"
        running "$pid" || { wait "$pid" 2>/dev/null || true; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            running "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in git-server.log gateway.log agent.log; do
            [[ -s "$TMP/$log" ]] || continue
            printf '\n--- last lines of %s ---\n' "$log" >&2
            tail -n 20 "$TMP/$log" >&2
        done
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then echo "build-static: kept $TMP"; else rm -rf "$TMP"; fi
    exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A child that exited stays a zombie until `wait`: kill -0 would still succeed on it.
running() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}
alive_or_die() { running "$1" || die "$2 exited early"; }

# http GET URL [HEADER] -> prints "STATUS BODY" (python3, so no curl is needed); HEADER is
# "Name: value".
http_get() {
    python3 - "$1" "${2:-}" <<'EOF'
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    name, value = sys.argv[2].split(": ", 1)
    request.add_header(name, value)
try:
    with opener.open(request, timeout=10) as r:
        print(r.status, r.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode("utf-8", "replace"))
except Exception as e:
    print(0, e)
EOF
}

# A bare repository group/sample.git for the fake GitLab to describe.
git init -q --bare "$TMP/repos/group/sample.git"

python3 "$ROOT/scripts/git-http-server.py" --root "$TMP/repos" --listen 127.0.0.1:0 \
    --port-file "$TMP/git-server.port" >"$TMP/git-server.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")

"${RUN[@]}" "$GATEWAY_BIN" serve --data-dir "$TMP/gateway-data" \
    --agent-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >"$TMP/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")

AGENT_PORT="" API=""
for _ in $(seq $((WAIT_SECONDS * 10))); do
    AGENT_PORT="$(sed -n 's/.*agent port listening on \([^ ]*\).*/\1/p' "$TMP/gateway.log" | head -n 1)"
    API="$(sed -n 's/.*api port listening on \([^ ]*\).*/\1/p' "$TMP/gateway.log" | head -n 1)"
    [[ -n "$AGENT_PORT" && -n "$API" && -s "$TMP/git-server.port" ]] && break
    alive_or_die "$GATEWAY_PID" vcs-gateway
    alive_or_die "$UPSTREAM_PID" git-http-server.py
    sleep 0.1
done
[[ -n "$AGENT_PORT" && -n "$API" ]] || die "the gateway did not log its ports within ${WAIT_SECONDS}s"
[[ -s "$TMP/git-server.port" ]] || die "git-http-server.py did not start within ${WAIT_SECONDS}s"
VCS="127.0.0.1:$(cat "$TMP/git-server.port")"
info "gateway: agent port $AGENT_PORT, api port $API; fake GitLab at $VCS"

TOKEN="$("${RUN[@]}" "$GATEWAY_BIN" pool create --data-dir "$TMP/gateway-data" --name smoke \
    --public-url "ws://$AGENT_PORT")" || die "vcs-gateway pool create failed"
SECRET="$("${RUN[@]}" "$GATEWAY_BIN" caller create --data-dir "$TMP/gateway-data" --name smoke-saas \
    --pools smoke | tail -n 1)" || die "vcs-gateway caller create failed"
CALLER="Vcs-Gateway-Authorization: Bearer $SECRET"
OPERATOR="Authorization: Bearer $(cat "$TMP/gateway-data/admin-token")" ||
    die "the gateway wrote no admin token"

AGENT_ENV=(
    env -i PATH="$PATH"
    SPACELIFT_VCS_AGENT_POOL_TOKEN="$TOKEN"
    SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT="http://$VCS"
    SPACELIFT_VCS_AGENT_VENDOR=gitlab
    SPACELIFT_VCS_AGENT_PARALLELISM=2
    SPACELIFT_VCS_AGENT_DRAIN_TIMEOUT=5s
    SPACELIFT_VCS_AGENT_METRICS_ADDR=127.0.0.1:0
)

"${AGENT_ENV[@]}" "${RUN[@]}" "$AGENT_BIN" check >"$TMP/check.out" 2>&1 ||
    die "vcs-agent check failed: $(cat "$TMP/check.out")"
[[ "$(grep -c '^ok   ' "$TMP/check.out")" == 4 ]] || die "vcs-agent check: $(cat "$TMP/check.out")"
info "vcs-agent check: 4 checks ok"

"${AGENT_ENV[@]}" "${RUN[@]}" "$AGENT_BIN" >"$TMP/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")

streams=0
for _ in $(seq $((WAIT_SECONDS * 10))); do
    streams="$(http_get "http://$API/healthz" "$OPERATOR" | python3 -c '
import json, sys
try:
    print(json.loads(sys.stdin.read().split(" ", 1)[1])["pools"]["smoke"]["streams"])
except Exception:
    print(0)')"
    ((streams >= 2)) && break
    alive_or_die "$AGENT_PID" vcs-agent
    sleep 0.1
done
((streams >= 2)) || die "the agent's streams did not reach the gateway within ${WAIT_SECONDS}s (saw $streams)"
info "the agent is connected: $streams streams"

unauthenticated="$(http_get "http://$API/private/smoke/api/v4/projects/group%2Fsample")"
[[ "${unauthenticated%% *}" == 401 ]] || die "a request without a caller secret was not refused: $unauthenticated"
info "GET /private/smoke/... without a caller secret -> 401"
answer="$(http_get "http://$API/private/smoke/api/v4/projects/group%2Fsample" "$CALLER")"
status="${answer%% *}"
[[ "$status" == 200 ]] || die "GET /api/v4/projects/group%2Fsample through the tunnel: $answer"
grep -q '"path_with_namespace": *"group/sample"' <<<"$answer" ||
    die "unexpected answer through the tunnel: $answer"
info "GET /private/smoke/api/v4/projects/group%2Fsample -> 200, project group/sample"

denied="$(http_get "http://$API/private/smoke/admin/secrets" "$CALLER")"
[[ "${denied%% *}" == 403 ]] || die "a path outside the allowlist was not refused: $denied"
info "GET /private/smoke/admin/secrets -> 403 (allowlist)"

METRICS="$(sed -n 's/.*health and metrics endpoint listening on \([^ ]*\).*/\1/p' "$TMP/agent.log" | head -n 1)"
[[ -n "$METRICS" ]] || die "the agent did not log its health and metrics endpoint"
health="$(http_get "http://$METRICS/healthz")"
[[ "${health%% *}" == 200 ]] || die "agent /healthz: $health"
scrape="$(http_get "http://$METRICS/metrics")"
grep -q '^vcs_agent_requests_total{rule="-",status="403"} 1$' <<<"$scrape" ||
    die "agent /metrics does not count the denied request: $scrape"
info "agent /healthz -> 200; /metrics counts the denial"

kill -TERM "$AGENT_PID"
agent_status=""
for _ in $(seq $((WAIT_SECONDS * 10))); do
    if ! running "$AGENT_PID"; then
        wait "$AGENT_PID" && agent_status=0 || agent_status=$?
        break
    fi
    sleep 0.1
done
[[ "$agent_status" == 0 ]] || die "the agent did not drain and exit 0 after SIGTERM (status '${agent_status:-still running}')"
info "SIGTERM: the agent drained and exited 0"

printf '\nbuild-static: ok: %s: vcs-agent %s bytes, vcs-gateway %s bytes, static, smoke test passed\n' \
    "$TARGET" "$AGENT_BYTES" "$GATEWAY_BYTES"
