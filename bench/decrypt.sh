#!/bin/bash
# Benchmark: `embargo decrypt` throughput on one large attachment, against
# `gpg --decrypt` of the very same sealed part with the same key. The key is
# made by stock gpg (Curve25519, no passphrase, so no pinentry is timed);
# the report is sealed with `embargo seal`. Not a test; prints the figures.
#
#   bench/decrypt.sh [MiB]     (default 256; PROFILE=release for a release build)
set -eu
MIB=${1:-256}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
embargo_bin

W=$(mktemp -d /tmp/embench.XXXXXX)
cleanup() {
    GNUPGHOME="$W/gnupg" gpgconf --kill all 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/site/keys" "$W/gnupg"
chmod 700 "$W/gnupg"
export GNUPGHOME="$W/gnupg"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Bench <bench@example.org>' ed25519 cert,sign 1y
FPR=$(gpg --with-colons --list-keys bench@example.org | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --quiet --passphrase '' --quick-add-key "$FPR" cv25519 encr 1y
gpg --armor --export "$FPR" > "$W/site/keys/bench.asc"
gpg --batch --armor --export-secret-keys "$FPR" > "$W/secret.asc"
printf 'keys_dir = "keys"\nstate_dir = "state"\nstore = "data"\n[limits]\nmax_attachment_bytes = %s\n' $((MIB * 1048576 + 1)) > "$W/site/embargo.toml"
printf '{"report": {"title": "bench", "description": "bench"}}' > "$W/report.json"
head -c $((MIB * 1048576)) /dev/urandom > "$W/payload.bin"

ID=$("$BIN" seal -c "$W/site/embargo.toml" --report "$W/report.json" "$W/payload.bin")
PART="$W/site/data/reports/$ID/001.pgp"
sync

# Wall-clock time and CPU time (user+sys, children included): on a shared
# machine the CPU figure is the steadier one.
TIMEFORMAT="%R %U %S"
measure() { { time "$@" >/dev/null 2>&1; } 2>&1 | awk -v m="$MIB" '{ printf "%6.1f MiB/s wall (%.2f s), %6.1f MiB/s of CPU (%.2f s)", m / $1, $1, m / ($2 + $3), $2 + $3 }'; }

KEY=$(measure "$BIN" decrypt "$ID" --store "$W/site/data" --key "$W/secret.asc" --out "$W/out-key")
AGENT=$(measure "$BIN" decrypt "$ID" --store "$W/site/data" --gpg --out "$W/out-gpg")
GPG=$(measure gpg --batch --quiet --decrypt --output "$W/gpg.out" "$PART")

cmp -s "$W/payload.bin" "$W/out-key/$ID/payload.bin" || { echo "decrypt --key gave different bytes" >&2; exit 1; }
cmp -s "$W/payload.bin" "$W/out-gpg/$ID/payload.bin" || { echo "decrypt --gpg gave different bytes" >&2; exit 1; }
cmp -s "$W/payload.bin" "$W/gpg.out" || { echo "gpg gave different bytes" >&2; exit 1; }

echo "decrypt of one $MIB MiB attachment ($PROFILE build, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)):"
echo "  embargo decrypt --key: $KEY  (+ SHA-256 check, fsync)"
echo "  embargo decrypt --gpg: $AGENT"
echo "  gpg --decrypt:         $GPG"
