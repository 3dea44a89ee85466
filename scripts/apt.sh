# shellcheck shell=bash
# Sourced, not run: `source scripts/apt.sh`, then `apt_get update -qq`, `apt_get install -y
# -qq --no-install-recommends PKG...`. apt-get that waits for the package manager's locks
# instead of failing at once: on a fresh cloud machine unattended upgrades hold them for the
# first minutes ("Could not get lock /var/lib/dpkg/lock-frontend"). Install and remove wait
# with apt's own DPkg::Lock::Timeout; `apt-get update` has no such option for its lists lock,
# so a run that could not get a lock is tried again every 5 s until the time is up.
#
# Env: APT_LOCK_WAIT  seconds to wait for the locks [300]
# Runs apt-get with sudo when not root. What apt-get printed goes to stdout when it succeeded
# and to stderr when it failed, so `>/dev/null` keeps a failure's reason on the screen.

apt_get() {
    local wait=${APT_LOCK_WAIT:-300} log status told="" sudo=()
    local deadline=$((SECONDS + wait))
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    log=$(mktemp)
    while :; do
        status=0
        "${sudo[@]}" env LC_ALL=C DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout="$wait" "$@" >"$log" 2>&1 || status=$?
        if ((status != 0)) && grep -q 'Could not get lock' "$log" && ((SECONDS < deadline)); then
            [[ -n $told ]] || printf 'apt-get: the package manager is busy (another apt-get, or unattended upgrades on a new machine); waiting up to %ss for its lock\n' "$wait" >&2
            told=1
            sleep 5
            continue
        fi
        if ((status == 0)); then cat "$log"; else cat "$log" >&2; fi
        rm -f "$log"
        return "$status"
    done
}

# apt_install PKG...: installs the packages quietly, without recommends; a fresh image may have
# no package lists yet, so when the install fails the lists are updated once and it is tried
# again. Fails when the packages cannot be installed.
apt_install() {
    apt_get install -y -q --no-install-recommends "$@" >/dev/null ||
        { apt_get update -q >/dev/null && apt_get install -y -q --no-install-recommends "$@" >/dev/null; }
}
