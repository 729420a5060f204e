#!/bin/sh
# Benchmark: peak memory (RSS) of `embargo poll --once` sealing one message
# of N MiB (default 100) with a text/plain body from a Maildir. Not a test;
# prints the figure. Needs GNU time (/usr/bin/time) and gpg.
#
#   bench/mail-rss.sh [MIB]    (PROFILE=release for a release build)
set -eu
MIB=${1:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
embargo_bin
[ -x /usr/bin/time ] || { echo "install GNU time first (apt-get install time)" >&2; exit 1; }

W=$(mktemp -d /tmp/emrss.XXXXXX)
cleanup() {
    GNUPGHOME="$W/gnupg" gpgconf --kill all 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/keys" "$W/gnupg" "$W/Maildir/new" "$W/Maildir/cur" "$W/Maildir/tmp"
chmod 700 "$W/gnupg"
export GNUPGHOME="$W/gnupg"
gpg --batch --passphrase '' --quick-gen-key "Bench <bench@example.org>" ed25519 cert,sign 1d 2>/dev/null
FPR=$(gpg --with-colons --list-keys bench@example.org | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --passphrase '' --quick-add-key "$FPR" cv25519 encr 1d 2>/dev/null
gpg --armor --export "$FPR" > "$W/keys/bench.asc" 2>/dev/null
cat > "$W/embargo.toml" <<CONF
keys_dir = "keys"
state_dir = "state"
store = "data"
[mailbox]
kind = "maildir"
folder = "Maildir"
max_mail_bytes = $(( (MIB + 1) * 1048576 ))
CONF
python3 - "$W/Maildir/new/1.bench" "$MIB" <<'PY'
import sys
line = ("abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:76] + "\r\n"
n = int(sys.argv[2]) * 1048576 // len(line)
with open(sys.argv[1], "wb") as f:
    f.write(b"From: Bench <bench@example.org>\r\nSubject: big text body\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    block = (line * 10000).encode()
    for _ in range(n // 10000):
        f.write(block)
    f.write((line * (n % 10000)).encode())
PY
SIZE=$(stat -c %s "$W/Maildir/new/1.bench")
cd "$W"
EMBARGO_LOG=warn /usr/bin/time -v "$BIN" poll -c embargo.toml --once 2> "$W/time.txt" || { cat "$W/time.txt" >&2; exit 1; }
RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/time.txt")
echo "message: $SIZE bytes; peak RSS of poll --once ($PROFILE): $RSS KiB"
