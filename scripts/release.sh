#!/usr/bin/env bash
# Makes a release: static vcs-agent and vcs-gateway for x86_64 and aarch64 Linux, each built,
# checked and smoke-tested by scripts/build-static.sh (the aarch64 ones under qemu), in one
# folder named by the build (`vcs-agent --version`), with a SHA256SUMS file and, with a key,
# its detached GPG signature SHA256SUMS.asc and the public key that checks it.
#
#   bash scripts/release.sh                      # target/dist/vcs-agent-<build>/, unsigned
#   bash scripts/release.sh --sign KEY-ID        # signed with that key of your gpg keyring
#   bash scripts/release.sh --throwaway-key      # signed with a key made for this run (CI)
#
# Every run verifies what it wrote the way an operator does: `sha256sum -c SHA256SUMS`, and
# `gpg --verify` in a keyring that holds only the exported public key; then it changes one
# byte of a copy and checks that both refuse it. --throwaway-key makes an ed25519 key in a
# temporary GNUPGHOME, removed at the end: a test of the signing, not a release to publish.
#
# Env: CARGO_TARGET_DIR honoured; MAX_AGENT_BYTES, KEEP_TMP, APT_LOCK_WAIT as in
# scripts/build-static.sh, which installs the toolchains. gpg (Debian's gnupg) is installed
# when signing and missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/apt.sh

TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

die() {
    printf '\nrelease: FAILED: %s\n' "$*" >&2
    exit 1
}
step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }

KEY="" THROWAWAY=""
while (($#)); do
    case "$1" in
    --sign)
        [[ $# -ge 2 && -n "$2" ]] || die "--sign needs a key id (gpg --list-secret-keys shows yours)"
        KEY="$2"
        shift 2
        ;;
    --throwaway-key)
        THROWAWAY=1
        shift
        ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ -z "$KEY" || -z "$THROWAWAY" ]] || die "--sign and --throwaway-key exclude each other"

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/vcs-release.XXXXXX")"
cleanup() {
    # The gpg-agent that gpg started for a temporary keyring goes with it.
    local home
    for home in "$TMP/signer" "$TMP/operator"; do
        if [[ -d "$home" ]]; then GNUPGHOME="$home" gpgconf --kill gpg-agent 2>/dev/null || true; fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -n "$KEY$THROWAWAY" ]] && ! command -v gpg >/dev/null; then
    command -v apt-get >/dev/null || die "gpg is missing and apt-get is not available: install gnupg"
    info "installing gnupg (gpg) with apt-get"
    apt_install gnupg || die "apt-get install gnupg failed"
fi
if [[ -n "$THROWAWAY" ]]; then
    export GNUPGHOME="$TMP/signer"
    install -d -m 0700 "$GNUPGHOME"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-generate-key \
        'vcs-agent release test <release-test@example.invalid>' ed25519 sign 1d ||
        die "gpg could not make a throwaway key"
    KEY="$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')"
    info "throwaway signing key $KEY in $GNUPGHOME"
elif [[ -n "$KEY" ]]; then
    gpg --batch --list-secret-keys "$KEY" >/dev/null 2>&1 || die "gpg has no secret key $KEY"
fi

# -- build, check and smoke-test each target --------------------------------------------------
for target in "${TARGETS[@]}"; do
    step "scripts/build-static.sh $target"
    bash scripts/build-static.sh "$target" || die "scripts/build-static.sh $target failed"
done

# -- one folder named by the build ------------------------------------------------------------
X86="$TARGET_DIR/x86_64-unknown-linux-musl/release"
ARM="$TARGET_DIR/aarch64-unknown-linux-musl/release"
# build_of BINARY ARCH: the build its --version names (under qemu on another architecture).
build_of() {
    local run=()
    [[ "$2" == "$(uname -m)" ]] || run=("qemu-$2-static")
    "${run[@]}" "$1" --version | cut -d' ' -f2
}
BUILD="$(build_of "$X86/vcs-agent" x86_64)"
[[ -n "$BUILD" ]] || die "vcs-agent --version printed no version"
[[ "$BUILD" != *-dirty ]] || info "warning: the sources differ from commit ${BUILD#*+}: this build is named -dirty"
for bin in "$X86/vcs-gateway" "$ARM/vcs-agent" "$ARM/vcs-gateway"; do
    arch=x86_64
    [[ "$bin" == "$ARM"/* ]] && arch=aarch64
    said="$(build_of "$bin" "$arch")"
    [[ "$said" == "$BUILD" ]] || die "$bin is build $said, $X86/vcs-agent is $BUILD"
done
DIST="$TARGET_DIR/dist/vcs-agent-$BUILD"
step "Writing $DIST"
rm -rf "$DIST"
mkdir -p "$DIST"
for program in vcs-agent vcs-gateway; do
    install -m 0755 "$X86/$program" "$DIST/$program-linux-x86_64"
    install -m 0755 "$ARM/$program" "$DIST/$program-linux-aarch64"
done
(cd "$DIST" && sha256sum vcs-agent-linux-* vcs-gateway-linux-* >SHA256SUMS)
if [[ -n "$KEY" ]]; then
    gpg --batch --yes --quiet --local-user "$KEY" --armor --detach-sign \
        --output "$DIST/SHA256SUMS.asc" "$DIST/SHA256SUMS" || die "gpg could not sign with $KEY"
    gpg --batch --armor --export "$KEY" >"$DIST/release-key.asc"
    [[ -s "$DIST/release-key.asc" ]] || die "gpg exported no public key for $KEY"
fi
sed 's/^/    /' "$DIST/SHA256SUMS"

# -- verify as an operator does ---------------------------------------------------------------
step "Verifying $DIST as an operator does"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || die "sha256sum -c SHA256SUMS failed"
info "sha256sum -c SHA256SUMS: every file OK"
TAMPERED="$TMP/tampered"
cp -r "$DIST" "$TAMPERED"
# One bit of one byte changed.
python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096); b = f.read(1)[0]; f.seek(4096); f.write(bytes([b ^ 1]))' "$TAMPERED/vcs-agent-linux-aarch64"
if (cd "$TAMPERED" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
    die "sha256sum -c accepted a changed vcs-agent-linux-aarch64"
fi
info "sha256sum -c refuses a changed binary"
if [[ -n "$KEY" ]]; then
    # The operator's keyring: the exported public key alone, not the signer's.
    OPERATOR="$TMP/operator"
    install -d -m 0700 "$OPERATOR"
    GNUPGHOME="$OPERATOR" gpg --batch --quiet --import "$DIST/release-key.asc" 2>/dev/null ||
        die "the exported public key does not import"
    GNUPGHOME="$OPERATOR" gpg --batch --verify "$DIST/SHA256SUMS.asc" "$DIST/SHA256SUMS" \
        >"$TMP/verify.out" 2>&1 || die "gpg --verify failed: $(cat "$TMP/verify.out")"
    info "gpg --verify: $(grep -m1 'Good signature' "$TMP/verify.out" | sed 's/^gpg: //')"
    sed -i '1s/^\(.\)/\1\1/' "$TAMPERED/SHA256SUMS"   # one character more
    if GNUPGHOME="$OPERATOR" gpg --batch --verify "$TAMPERED/SHA256SUMS.asc" \
        "$TAMPERED/SHA256SUMS" >/dev/null 2>&1; then
        die "gpg --verify accepted a changed SHA256SUMS"
    fi
    info "gpg --verify refuses a changed SHA256SUMS"
fi
if [[ -n "$THROWAWAY" ]]; then
    # Signed by a key nobody else has: not for publishing.
    rm -f "$DIST/SHA256SUMS.asc" "$DIST/release-key.asc"
    info "removed the throwaway signature from $DIST"
fi

printf '\nrelease: ok: %s\n' "$DIST"
find "$DIST" -type f -printf '    %f  %s bytes\n' | sort
