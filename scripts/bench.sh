#!/usr/bin/env bash
# What does the tunnel cost? Measures the same requests direct to nginx and through
# vcs-gateway + vcs-agent (parallelism 4, default log level: one access line per request on
# each side) on loopback, then prints one table with the tunnel/direct ratio of each figure;
# then the same with TLS on the gateway leg. A reference path adds the same two loopback hops
# with two nginx reverse proxies in a chain (keep-alive upstreams), so the table also shows
# what two extra hops cost on this machine whatever program makes them. CPU per request and
# context switches per request are taken from /proc for agent, gateway and each nginx proxy
# worker, so one nginx hop stands beside each side of the tunnel. The 1 GiB download is a real
# file (not sparse) read once into the page cache before timing; direct and tunnel take turns,
# three transfers each, and the table shows medians.
#
#   bash scripts/bench.sh                   # about two minutes
#   BENCH_SECONDS=3 bash scripts/bench.sh   # shorter load phases
#   BENCH_VARIANTS=0 bash scripts/bench.sh  # plain gateway leg only (1 = TLS only)
#   BENCH_TARGET=x86_64-unknown-linux-musl bash scripts/bench.sh   # the static binaries
#   BENCH_BIN=/tmp/old bash scripts/bench.sh  # vcs-agent and vcs-gateway from that directory
#
# Needs Debian's nginx and wrk (installed when missing, waiting for the package manager's
# lock: scripts/apt.sh), openssl, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/apt.sh
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
BIG_BYTES=$((1024 * 1024 * 1024))

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

need() {
    local missing=()
    for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt_get update -qq >/dev/null
        apt_get install -y -qq --no-install-recommends nginx-light wrk openssl curl >/dev/null
    fi
}
need nginx wrk openssl curl python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# BENCH_TARGET=x86_64-unknown-linux-musl measures the static binaries operators install
# (scripts/build-static.sh); the default is the host's release build.
if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN   # binaries built elsewhere, e.g. an earlier commit for an A/B comparison
elif [[ -n ${BENCH_TARGET:-} ]]; then
    say "building release binaries for $BENCH_TARGET"
    cargo build --release --locked --quiet --target "$BENCH_TARGET"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$BENCH_TARGET/release
else
    say "building release binaries"
    cargo build --release --locked --quiet
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

WORK=$(mktemp -d /tmp/vcs-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pidfile in "$WORK"/*.pid; do
        [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- the upstream: nginx serving an allowlisted GitLab JSON path and a 1 GiB archive ---
say "starting nginx"
NGINX_PORT=$(free_port)
mkdir -p "$WORK/www/api/v4/projects/group/repo/repository" "$WORK/nginx-tmp"
printf '{"id":1,"username":"bench","name":"Bench User","state":"active"}\n' >"$WORK/www/api/v4/user"
# A real file, not a sparse one (nginx would serve a sparse file without reading pages), read
# once so every transfer comes from the page cache.
BIG_FILE="$WORK/www/api/v4/projects/group/repo/repository/archive.tar.gz"
dd if=/dev/zero of="$BIG_FILE" bs=1M count=$((BIG_BYTES / 1048576)) status=none
cat "$BIG_FILE" >/dev/null
# A listing of realistic size whose entries name the VCS by its own URLs, as GitLab's do:
# 100 projects, each with its `_links` (API URLs, rewritten to the front) and web URLs (left).
python3 - "http://127.0.0.1:$NGINX_PORT" >"$WORK/www/projects.json" <<'PY'
import json, sys
vcs = sys.argv[1]
def project(i):
    api = f"{vcs}/api/v4/projects/{i}"
    return {
        "id": i, "name": f"repo-{i}", "path_with_namespace": f"group/repo-{i}",
        "description": "A project of the benchmark, with a description of a usual length.",
        "default_branch": "main", "visibility": "private",
        "created_at": "2026-01-01T00:00:00.000Z", "last_activity_at": "2026-11-01T00:00:00.000Z",
        "web_url": f"{vcs}/group/repo-{i}", "avatar_url": None,
        "http_url_to_repo": f"{vcs}/group/repo-{i}.git", "ssh_url_to_repo": f"git@git:group/repo-{i}.git",
        "readme_url": f"{vcs}/group/repo-{i}/-/blob/main/README.md",
        "namespace": {"id": 3, "name": "group", "path": "group", "kind": "group", "full_path": "group",
                      "web_url": f"{vcs}/groups/group"},
        "_links": {"self": api, "issues": f"{api}/issues", "merge_requests": f"{api}/merge_requests",
                   "repo_branches": f"{api}/repository/branches", "labels": f"{api}/labels",
                   "events": f"{api}/events", "members": f"{api}/members", "cluster_agents": f"{api}/cluster_agents"},
        "star_count": 0, "forks_count": 0, "open_issues_count": 3, "topics": [],
    }
json.dump([project(i) for i in range(1, 101)], sys.stdout)
PY
chmod -R a+rX "$WORK"   # nginx workers run as an unprivileged user
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path $WORK/nginx-tmp;
    proxy_temp_path $WORK/nginx-tmp;
    fastcgi_temp_path $WORK/nginx-tmp;
    uwsgi_temp_path $WORK/nginx-tmp;
    scgi_temp_path $WORK/nginx-tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT; root $WORK/www;
        # The listing of the rewrite phase (GitLab's "List projects").
        location = /api/v4/projects { try_files /projects.json =404; }
    }
}
EOF
"$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" 2>/dev/null || "$NGINX" -c "$WORK/nginx.conf"
curl -fsS "http://127.0.0.1:$NGINX_PORT/api/v4/user" >/dev/null || die "nginx does not answer"

# --- the reference: two nginx reverse proxies in a chain in front of the upstream ---
# start_proxy <name> <upstream port>: prints the port it listens on
start_proxy() {
    local port; port=$(free_port)
    cat >"$WORK/$1.conf" <<EOF
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log;
events { worker_connections 1024; }
http {
    # One access line per request, as nginx writes by default and as agent and gateway do.
    access_log $WORK/$1-access.log;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx-tmp;
    proxy_temp_path $WORK/nginx-tmp;
    fastcgi_temp_path $WORK/nginx-tmp;
    uwsgi_temp_path $WORK/nginx-tmp;
    scgi_temp_path $WORK/nginx-tmp;
    upstream next { server 127.0.0.1:$2; keepalive 32; }
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://next; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
    "$NGINX" -c "$WORK/$1.conf" -e "$WORK/$1-error.log" 2>/dev/null || "$NGINX" -c "$WORK/$1.conf"
    echo "$port"
}

# --- gateway + agent ---
# Both write their log to a pipe, as under supervisord (a reader wakes for what they write).
# start_tunnel <tls:0|1>: sets GW_PID, AGENT_PID, API, AGENT_START_MS
start_tunnel() {
    local tls=$1 data="$WORK/gw-$1" agent_port api_port scheme=ws extra=() agent_env=()
    agent_port=$(free_port); api_port=$(free_port)
    mkdir -p "$data"
    if [[ $tls == 1 ]]; then
        # A private CA and a leaf certificate for 127.0.0.1 signed by it.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=vcs-bench CA" -keyout "$data/ca.key" -out "$data/ca.pem" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
            -keyout "$data/key.pem" -out "$data/leaf.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$data/leaf.ext"
        openssl x509 -req -in "$data/leaf.csr" -CA "$data/ca.pem" -CAkey "$data/ca.key" -CAcreateserial \
            -days 2 -extfile "$data/leaf.ext" -out "$data/cert.pem" 2>/dev/null
        extra=(--tls-cert "$data/cert.pem" --tls-key "$data/key.pem")
        scheme=wss
        agent_env=(SPACELIFT_VCS_AGENT_CA_CERT_FILE="$data/ca.pem")
    fi
    "$BIN/vcs-gateway" serve --data-dir "$data" --agent-listen "127.0.0.1:$agent_port" \
        --api-listen "127.0.0.1:$api_port" "${extra[@]}" > >(cat >"$data/gateway.log") 2>&1 &
    GW_PID=$!; PIDS+=("$GW_PID")
    API="127.0.0.1:$api_port"
    for _ in $(seq 200); do curl -fsS "http://$API/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
    local token secret
    token=$("$BIN/vcs-gateway" pool create --data-dir "$data" --name bench --public-url "$scheme://127.0.0.1:$agent_port")
    # Tunnel requests carry a caller's secret; /healthz's figures need the admin token.
    secret=$("$BIN/vcs-gateway" caller create --data-dir "$data" --name bench-saas --pools bench | tail -n 1)
    AUTH=(-H "Vcs-Gateway-Authorization: Bearer $secret")
    ADMIN=(-H "Authorization: Bearer $(cat "$data/admin-token")")
    local start_ns; start_ns=$(date +%s%N)
    env -i PATH="$PATH" "${agent_env[@]}" ${AGENT_EXTRA:+"$AGENT_EXTRA"} \
        SPACELIFT_VCS_AGENT_POOL_TOKEN="$token" \
        SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT="http://127.0.0.1:$NGINX_PORT" \
        SPACELIFT_VCS_AGENT_VENDOR=gitlab SPACELIFT_VCS_AGENT_PARALLELISM=4 \
        "$BIN/vcs-agent" > >(cat >"$data/agent.log") 2>&1 &
    AGENT_PID=$!; PIDS+=("$AGENT_PID")
    for _ in $(seq 2000); do
        curl -fsS "${ADMIN[@]}" "http://$API/healthz" 2>/dev/null | grep -q '"streams":4' && break
        sleep 0.005
    done
    AGENT_START_MS=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    curl -fsS "${ADMIN[@]}" "http://$API/healthz" | grep -q '"streams":4' || die "agent did not connect: $(tail -3 "$data/agent.log")"
}

stop_tunnel() { kill "$AGENT_PID" "$GW_PID" 2>/dev/null || true; wait "$AGENT_PID" "$GW_PID" 2>/dev/null || true; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sample_peak <file> <pid...>: writes "pid peak" lines while running (kill to stop)
sample_peak() {
    local out=$1; shift
    declare -A peak
    while true; do
        for pid in "$@"; do
            local now; now=$(rss_kib "$pid")
            (( now > ${peak[$pid]:-0} )) && peak[$pid]=$now
        done
        : >"$out.tmp"
        for pid in "$@"; do echo "$pid ${peak[$pid]:-0}" >>"$out.tmp"; done
        mv "$out.tmp" "$out"
        sleep 0.05
    done
}

# with_rss <label> <command...>: runs the command while sampling the tunnel's RSS
with_rss() {
    local label=$1; shift
    if [[ -n ${AGENT_PID:-} ]]; then
        sample_peak "$WORK/peak" "$AGENT_PID" "$GW_PID" &
        local sampler=$!
        "$@"
        kill "$sampler"; wait "$sampler" 2>/dev/null || true
        # The largest peak when a phase runs more than once (the turns of the 1 GiB download).
        local agent gw
        agent=$(awk -v p="$AGENT_PID" '$1==p {print $2}' "$WORK/peak")
        gw=$(awk -v p="$GW_PID" '$1==p {print $2}' "$WORK/peak")
        if (( ${agent:-0} > ${RSS_AGENT[$label]:-0} )); then RSS_AGENT[$label]=$agent; fi
        if (( ${gw:-0} > ${RSS_GW[$label]:-0} )); then RSS_GW[$label]=$gw; fi
    else
        "$@"
    fi
}

# cpu_ticks <pid>: user + system clock ticks the process has used so far
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ctx_switches <pid>: voluntary + involuntary context switches of the threads alive now
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n + 0}'
}

# worker_of <master pid file>: the pid of that nginx's one worker process
worker_of() { pgrep -P "$(cat "$1")" | head -n 1; }

# The processes whose CPU and context switches wrk_run measures: "name pid" words, set per
# path (agent and gateway for the tunnel, the two proxy workers for the nginx reference).
WATCH=()

# wrk_run <url> <connections> -> sets P50 P99 (ms) RPS, and for each watched name CPU[name]
# (µs per request, over the whole run) and CS[name] (context switches per request). The
# gateway starts a thread per caller connection, which ends with the connection, so context
# switches are counted between two looks at every thread inside the run (from 0.5 s after the
# start to 0.5 s before the end, wrk's connections all open), per request at the run's rate.
wrk_run() {
    local out threads=$(( $2 < 2 ? 1 : 2 )) requests tick_us wrk_pid entry name pid
    local -A ticks0 cs0 cs1
    for entry in "${WATCH[@]}"; do ticks0[${entry%% *}]=$(cpu_ticks "${entry#* }"); done
    wrk -t"$threads" -c"$2" -d"${SECONDS_PER_RUN}s" --latency "${AUTH[@]}" "$1" >"$WORK/wrk.out" &
    wrk_pid=$!
    local window_start window_end
    sleep 0.5
    window_start=$(date +%s%N)
    for entry in "${WATCH[@]}"; do cs0[${entry%% *}]=$(ctx_switches "${entry#* }"); done
    sleep "$(awk -v s="$SECONDS_PER_RUN" 'BEGIN { print (s > 1.5 ? s - 1 : 0.5) }')"
    for entry in "${WATCH[@]}"; do cs1[${entry%% *}]=$(ctx_switches "${entry#* }"); done
    window_end=$(date +%s%N)
    wait "$wrk_pid"
    out=$(cat "$WORK/wrk.out")
    P50=$(awk '$1=="50%" {print $2}' <<<"$out")
    P99=$(awk '$1=="99%" {print $2}' <<<"$out")
    RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    CPU=(); CS=()
    tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
    for entry in "${WATCH[@]}"; do
        name=${entry%% *}; pid=${entry#* }
        (( ${requests:-0} > 0 )) || continue
        CPU[$name]=$(( ($(cpu_ticks "$pid") - ${ticks0[$name]}) * tick_us / requests ))
        CS[$name]=$(awk -v d="$(( ${cs1[$name]} - ${cs0[$name]} ))" -v r="$RPS" \
            -v ns="$(( window_end - window_start ))" 'BEGIN { printf "%.1f", d / (r * ns / 1e9) }')
    done
    grep -q "Non-2xx" <<<"$out" && die "non-2xx answers from $1: $out"
    return 0
}

to_ms() { # wrk prints 95.00us / 1.20ms / 1.01s
    awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

download_mbps() { curl -fsS "${AUTH[@]}" -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.0f", $1/1048576}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

declare -A R RSS_AGENT RSS_GW CPU CS
AUTH=() ADMIN=() # set by start_tunnel; harmless extra headers for nginx

# Before each tunnel phase: all 4 streams connected (wrk's last cancelled requests make
# streams redial for a moment).
settle() {
    [[ -z ${AGENT_PID:-} ]] && return 0
    for _ in $(seq 500); do
        curl -fsS "${ADMIN[@]}" "http://$API/healthz" 2>/dev/null | grep -Eq '"streams":4[,}]' && return 0
        sleep 0.01
    done
}

BIG_PATH=/api/v4/projects/group%2Frepo/repository/archive.tar.gz

measure() { # measure <prefix> <base-url> [small-only]
    local p=$1 small="$2/api/v4/user" name
    sync # the log files of the phase before go to disk now, not in the middle of this one
    say "$p: latency at 1 connection"
    settle
    with_rss "$p-lat" wrk_run "$small" 1
    R[$p-p50]=$(to_ms "$P50"); R[$p-p99]=$(to_ms "$P99"); R[$p-rps1]=$RPS
    for c in 4 16; do
        say "$p: requests/s at $c connections"
        settle
        with_rss "$p-rps$c" wrk_run "$small" "$c"
        R[$p-rps$c]=$RPS
    done
    for name in "${!CPU[@]}"; do R[$p-cpu-$name]=${CPU[$name]}; R[$p-cs-$name]=${CS[$name]}; done
    [[ ${3:-} == small-only ]] && return 0
    say "$p: 1 GiB download (median of 3)"
    local runs=()
    for _ in 1 2 3; do settle; runs+=("$(download_mbps "$2$BIG_PATH")"); done
    R[$p-big]=$(median "${runs[@]}")
}

say "direct to nginx"
AGENT_PID=
WATCH=()
measure direct "http://127.0.0.1:$NGINX_PORT" small-only

say "reference: two nginx reverse proxies in a chain"
PROXY_PORT=$(start_proxy proxy-near "$(start_proxy proxy-far "$NGINX_PORT")")
curl -fsS "http://127.0.0.1:$PROXY_PORT/api/v4/user" >/dev/null || die "the nginx proxies do not answer"
NGINX_WATCH=("near $(worker_of "$WORK/proxy-near.pid")" "far $(worker_of "$WORK/proxy-far.pid")")
WATCH=("${NGINX_WATCH[@]}")
measure nginx2 "http://127.0.0.1:$PROXY_PORT" small-only
# One nginx hop: the mean of the two proxies' figures.
R[nginx2-cpu-hop]=$(( (${R[nginx2-cpu-near]:-0} + ${R[nginx2-cpu-far]:-0}) / 2 ))
R[nginx2-cs-hop]=$(awk -v a="${R[nginx2-cs-near]:-0}" -v b="${R[nginx2-cs-far]:-0}" 'BEGIN { printf "%.1f", (a + b) / 2 }')

for tls in ${BENCH_VARIANTS:-0 1}; do
    name=$([[ $tls == 1 ]] && echo tls || echo plain)
    say "tunnel ($name gateway leg)"
    start_tunnel "$tls"
    R[$name-start]=$AGENT_START_MS
    sleep 1
    R[$name-idle-agent]=$(rss_kib "$AGENT_PID"); R[$name-idle-gw]=$(rss_kib "$GW_PID")
    WATCH=("agent $AGENT_PID" "gw $GW_PID")
    if [[ $name == tls ]]; then measure tls "http://$API/private/bench"; stop_tunnel; continue; fi
    measure plain "http://$API/private/bench" small-only
    # The headline ratio again, with the three paths taking turns, so that a slower or
    # faster spell of the machine falls on all of them alike; medians of three. The same for
    # the 1 GiB download, direct and through the tunnel in turns.
    say "requests/s at 16 connections and the 1 GiB download, the paths taking turns"
    turns_direct=() turns_tunnel=() turns_nginx2=() big_direct=() big_tunnel=()
    for _ in 1 2 3; do
        AGENT_SAVED=$AGENT_PID; AGENT_PID=; WATCH=()
        wrk_run "http://127.0.0.1:$NGINX_PORT/api/v4/user" 16; turns_direct+=("$RPS")
        wrk_run "http://127.0.0.1:$PROXY_PORT/api/v4/user" 16; turns_nginx2+=("$RPS")
        big_direct+=("$(download_mbps "http://127.0.0.1:$NGINX_PORT$BIG_PATH")")
        AGENT_PID=$AGENT_SAVED; WATCH=("agent $AGENT_PID" "gw $GW_PID")
        settle
        wrk_run "http://$API/private/bench/api/v4/user" 16; turns_tunnel+=("$RPS")
        settle
        with_rss plain-big eval 'big_tunnel+=("$(download_mbps "http://$API/private/bench$BIG_PATH")")'
    done
    R[direct-turns]=$(median "${turns_direct[@]}")
    R[plain-turns]=$(median "${turns_tunnel[@]}")
    R[nginx2-turns]=$(median "${turns_nginx2[@]}")
    R[direct-big]=$(median "${big_direct[@]}")
    R[plain-big]=$(median "${big_tunnel[@]}")
    stop_tunnel
done
for pidfile in "$WORK"/proxy-*.pid; do kill "$(cat "$pidfile")" 2>/dev/null || true; done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "") print ""; else if (b+0 == 0) print "-"; else printf "%.2f", a/b }'; }
row() { printf '| %-44s | %10s | %10s | %6s | %10s | %6s | %12s | %6s |\n' "$@"; }
pair() { [[ -n $1 ]] && echo "$1 / $2"; }

echo
echo "vcs-agent tunnel vs direct, loopback, $(nproc) cores, $(uname -m), ${BENCH_TARGET:-host} build, ${SECONDS_PER_RUN}s per load run"
echo
row "figure" "direct" "tunnel" "ratio" "tunnel+TLS" "ratio" "2 nginx hops" "ratio"
row "----" "---:" "---:" "---:" "---:" "---:" "---:" "---:"
for f in p50:"latency p50 at 1 conn (ms)" p99:"latency p99 at 1 conn (ms)" rps1:"requests/s at 1 conn" rps4:"requests/s at 4 conns" rps16:"requests/s at 16 conns" turns:"requests/s at 16, taking turns (median)" big:"1 GiB download (MiB/s, median of 3)"; do
    k=${f%%:*}; label=${f#*:}
    row "$label" "${R[direct-$k]:-}" "${R[plain-$k]:-}" "$(ratio "${R[plain-$k]:-}" "${R[direct-$k]:-}")" \
        "${R[tls-$k]:-}" "$(ratio "${R[tls-$k]:-}" "${R[direct-$k]:-}")" \
        "${R[nginx2-$k]:-}" "$(ratio "${R[nginx2-$k]:-}" "${R[direct-$k]:-}")"
done
row "requests/s at 16, taking turns, ÷ 2 nginx hops" "" "$(ratio "${R[plain-turns]:-}" "${R[nginx2-turns]:-}")" "" "" "" "" ""
added() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "") print ""; else printf "%.3f", a-b }'; }
row "added p50 latency (ms)" "" "$(added "${R[plain-p50]:-}" "${R[direct-p50]:-}")" "" \
    "$(added "${R[tls-p50]:-}" "${R[direct-p50]:-}")" "" "$(added "${R[nginx2-p50]:-}" "${R[direct-p50]:-}")" ""
row "CPU per request, 16 conns (µs): agent / gateway; one nginx hop" "" \
    "$(pair "${R[plain-cpu-agent]:-}" "${R[plain-cpu-gw]:-}")" "" \
    "$(pair "${R[tls-cpu-agent]:-}" "${R[tls-cpu-gw]:-}")" "" "${R[nginx2-cpu-hop]:-}" ""
row "context switches per request, 16 conns: agent / gateway; one nginx hop" "" \
    "$(pair "${R[plain-cs-agent]:-}" "${R[plain-cs-gw]:-}")" "" \
    "$(pair "${R[tls-cs-agent]:-}" "${R[tls-cs-gw]:-}")" "" "${R[nginx2-cs-hop]:-}" ""
row "agent start to 4 streams (ms)" "" "${R[plain-start]:-}" "" "${R[tls-start]:-}" "" "" ""
row "agent RSS idle (MiB)" "" "$(ratio "${R[plain-idle-agent]:-}" 1024)" "" "$(ratio "${R[tls-idle-agent]:-}" 1024)" "" "" ""
row "gateway RSS idle (MiB)" "" "$(ratio "${R[plain-idle-gw]:-}" 1024)" "" "$(ratio "${R[tls-idle-gw]:-}" 1024)" "" "" ""
for phase in lat:"1 conn" rps4:"4 conns" rps16:"16 conns" big:"1 GiB download"; do
    k=${phase%%:*}; label=${phase#*:}
    row "agent peak RSS, $label (MiB)" "" "$(ratio "${RSS_AGENT[plain-$k]:-}" 1024)" "" "$(ratio "${RSS_AGENT[tls-$k]:-}" 1024)" "" "" ""
    row "gateway peak RSS, $label (MiB)" "" "$(ratio "${RSS_GW[plain-$k]:-}" 1024)" "" "$(ratio "${RSS_GW[tls-$k]:-}" 1024)" "" "" ""
done
echo
echo "Goals: added p50 <= 0.1 ms; rps at 16 conns, taking turns, >= 0.8x the 2 nginx hops;"
echo "agent and gateway CPU per request each <= 25 us or <= 1.5x one nginx hop, whichever is larger;"
echo "1 GiB >= 0.9x direct; agent peak RSS <= 16 MiB during the 1 GiB download and <= 8 MiB idle."
echo "The 2 nginx hops column adds the tunnel's two loopback hops with two nginx reverse proxies"
echo "(16 requests in flight; the tunnel at parallelism 4 has at most 4)."

# --- a listing whose URLs point back through the pool, rewritten (the default) and not ---
# The 100-project listing above (its size printed below) at 4 connections through the plain
# tunnel: the agent rewriting its API URLs to the front, then an agent started with
# SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE=true passing it as the VCS wrote it.
LISTING=/api/v4/projects
for mode in rewritten untouched; do
    AGENT_EXTRA=$([[ $mode == untouched ]] && echo SPACELIFT_VCS_AGENT_DISABLE_URL_REWRITE=true || true)
    say "listing ($mode): requests/s at 4 connections"
    rm -rf "$WORK/gw-0"   # a fresh gateway (the plain phase above used the same directory)
    start_tunnel 0
    WATCH=("agent $AGENT_PID" "gw $GW_PID")
    curl -fsS "${AUTH[@]}" "http://$API/private/bench$LISTING" -o "$WORK/listing-$mode.json"
    settle
    with_rss "list-$mode" wrk_run "http://$API/private/bench$LISTING" 4
    R[list-$mode-rps]=$RPS; R[list-$mode-p50]=$(to_ms "$P50")
    R[list-$mode-cpu]=${CPU[agent]:-}
    stop_tunnel
done
AGENT_EXTRA=
grep -q "$NGINX_PORT" "$WORK/listing-untouched.json" || die "the untouched listing lost the VCS's URLs"
grep -q "127.0.0.1:$NGINX_PORT/api/v4" "$WORK/listing-rewritten.json" && die "the rewritten listing kept an API URL of the VCS"
echo
echo "A listing with the VCS's own URLs: $(stat -c %s "$WORK/www/projects.json") bytes, 100 projects, 900 API and git URLs"
echo
printf '| %-36s | %10s | %10s |\n' "figure" "rewritten" "untouched" "----" "---:" "---:"
printf '| %-36s | %10s | %10s |\n' "requests/s at 4 conns" "${R[list-rewritten-rps]:-}" "${R[list-untouched-rps]:-}" \
    "latency p50 at 4 conns (ms)" "${R[list-rewritten-p50]:-}" "${R[list-untouched-p50]:-}" \
    "agent CPU per request (µs)" "${R[list-rewritten-cpu]:-}" "${R[list-untouched-cpu]:-}" \
    "agent peak RSS (MiB)" "$(ratio "${RSS_AGENT[list-rewritten]:-}" 1024)" "$(ratio "${RSS_AGENT[list-untouched]:-}" 1024)"

# --- replicas: a forwarded request against a local one, three replicas against one ---
# Self-contained: its own Redis (unix socket), replicas, agents and table. A replica holding
# no stream of the pool forwards each request over the peer port to the one that does; the
# added p50 is what that hop costs (goal < 0.1 ms on loopback). Throughput: one replica with
# an agent of 12 streams under 48 connections, against three replicas sharing that agent
# (4 streams each, SPACELIFT_VCS_AGENT_GATEWAY_URLS) under 16 connections each at once.
command -v redis-server >/dev/null 2>&1 || {
    say "installing redis-server"
    apt_get install -y -qq --no-install-recommends redis-server >/dev/null
}
say "replicas: starting Redis"
RB="$WORK/replicas"; mkdir -p "$RB"
redis-server --port 0 --unixsocket "$RB/redis.sock" --save '' --appendonly no --dir "$RB" \
    >"$RB/redis.log" 2>&1 &
echo $! >"$WORK/replicas-redis.pid"
for _ in $(seq 200); do [[ -S $RB/redis.sock ]] && break; sleep 0.05; done
RURL="unix://$RB/redis.sock"
RADMIN="bench-replicas-admin-$(openssl rand -hex 16)"
export VCS_GATEWAY_PEER_SECRET; VCS_GATEWAY_PEER_SECRET=$(openssl rand -hex 32)
RAUTH=(-H "Vcs-Gateway-Authorization: Bearer $("$BIN/vcs-gateway" caller create --redis "$RURL" --name bench --all-pools | tail -n 1)")
# start_replica <id>: prints "agent-addr api-addr"
start_replica() {
    local agent api
    agent=127.0.0.1:$(free_port); api=127.0.0.1:$(free_port)
    "$BIN/vcs-gateway" serve --redis "$RURL" --replica-id "$1" --admin-token "$RADMIN" \
        --agent-listen "$agent" --api-listen "$api" --peer-listen "127.0.0.1:$(free_port)" \
        >"$RB/$1.log" 2>&1 &
    echo $! >"$WORK/replica-$1.pid"
    for _ in $(seq 200); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
    echo "$agent $api"
}
# start_pool_agent <pool> <streams> <first agent addr> [more addrs]: an agent of a new pool
start_pool_agent() {
    local pool=$1 streams=$2 first=$3 token others
    shift 3; others=
    (($#)) && others=$(printf 'ws://%s,' "$@") && others=${others%,}
    token=$("$BIN/vcs-gateway" pool create --redis "$RURL" --name "$pool" --public-url "ws://$first")
    env -i PATH="$PATH" SPACELIFT_VCS_AGENT_POOL_TOKEN="$token" \
        SPACELIFT_VCS_AGENT_TARGET_BASE_ENDPOINT="http://127.0.0.1:$NGINX_PORT" \
        SPACELIFT_VCS_AGENT_VENDOR=gitlab SPACELIFT_VCS_AGENT_PARALLELISM="$streams" \
        ${others:+SPACELIFT_VCS_AGENT_GATEWAY_URLS="$others"} \
        "$BIN/vcs-agent" >"$RB/agent-$pool.log" 2>&1 &
    echo $! >"$WORK/replicas-agent-$pool.pid"
}
# wait_health <api> <pattern>: until the replica's /healthz matches
wait_health() {
    for _ in $(seq 600); do
        curl -fsS -H "Authorization: Bearer $RADMIN" "http://$1/healthz" 2>/dev/null | grep -Eq "$2" && return 0
        sleep 0.02
    done
    die "replica at $1: /healthz never matched $2: $(tail -n 3 "$RB"/*.log)"
}
read -r R1_AGENT R1_API < <(start_replica one)
read -r R2_AGENT R2_API < <(start_replica two)
read -r R3_AGENT R3_API < <(start_replica three)
read -r R0_AGENT R0_API < <(start_replica alone)
start_pool_agent near 4 "$R1_AGENT"
wait_health "$R1_API" '"near":\{[^}]*"streams":4'
wait_health "$R2_API" '"routes":\{[^}]*"near":\["one"\]'
# rwrk <url> <threads> <conns>: prints "p50-ms rps"
rwrk() {
    local out
    out=$(wrk -t"$2" -c"$3" -d"${SECONDS_PER_RUN}s" --latency "${RAUTH[@]}" "$1")
    grep -q "Non-2xx" <<<"$out" && die "non-2xx answers from $1: $out"
    printf '%s %s\n' "$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
}
say "replicas: latency, local then forwarded"
read -r LOCAL_P50 _ < <(rwrk "http://$R1_API/private/near/api/v4/user" 1 1)
read -r FWD_P50 _ < <(rwrk "http://$R2_API/private/near/api/v4/user" 1 1)
say "replicas: throughput, one replica then three"
start_pool_agent one-alone 12 "$R0_AGENT"
wait_health "$R0_API" '"one-alone":\{[^}]*"streams":12'
read -r _ RPS_ONE < <(rwrk "http://$R0_API/private/one-alone/api/v4/user" 2 48)
start_pool_agent spread 12 "$R1_AGENT" "$R2_AGENT" "$R3_AGENT"
for api in "$R1_API" "$R2_API" "$R3_API"; do wait_health "$api" '"spread":\{[^}]*"streams":4'; done
RWRK=()
for api in "$R1_API" "$R2_API" "$R3_API"; do
    rwrk "http://$api/private/spread/api/v4/user" 1 16 >"$RB/rps-$api" &
    RWRK+=($!)
done
wait "${RWRK[@]}"
RPS_THREE=$(cat "$RB"/rps-* | awk '{s += $2} END {printf "%.2f", s}')
for pidfile in "$WORK"/replica*.pid; do kill "$(cat "$pidfile")" 2>/dev/null || true; done
echo
echo "Replicas (Redis on a unix socket, loopback, ${SECONDS_PER_RUN}s per load run)"
echo
printf '| %-48s | %10s |\n' "figure" "value" "----" "---:"
printf '| %-48s | %10s |\n' "p50 at 1 conn, local request (ms)" "$LOCAL_P50"
printf '| %-48s | %10s |\n' "p50 at 1 conn, forwarded to another replica (ms)" "$FWD_P50"
printf '| %-48s | %10s |\n' "added p50 of forwarding (ms)" "$(awk -v a="$FWD_P50" -v b="$LOCAL_P50" 'BEGIN{printf "%.3f", a-b}')"
printf '| %-48s | %10s |\n' "requests/s, one replica, 48 conns" "$RPS_ONE"
printf '| %-48s | %10s |\n' "requests/s, three replicas, 3 x 16 conns" "$RPS_THREE"
printf '| %-48s | %10s |\n' "three replicas / one" "$(ratio "$RPS_THREE" "$RPS_ONE")"
echo
echo "Goal: added p50 of forwarding < 0.1 ms. Three replicas share $(nproc) cores here: the"
echo "ratio shows what spreading costs on one machine, not what three machines give."
