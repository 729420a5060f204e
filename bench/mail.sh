#!/bin/sh
# Benchmark: messages per second drained by `embargo poll --once` from a
# local Dovecot (Debian dovecot-imapd, run as root): N messages of 10 KiB
# each, every one fetched, sealed (two OpenPGP messages), fsynced,
# committed and expunged. Not a test; prints the figure.
#
#   bench/mail.sh [N]          (default 500; PROFILE=release for a release build)
set -eu
N=${1:-500}
SIZE=10240
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
embargo_bin
[ -x /usr/sbin/dovecot ] || { echo "install dovecot-imapd first" >&2; exit 1; }

W=$(mktemp -d /tmp/embench.XXXXXX)
DPID=
cleanup() {
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    GNUPGHOME="$W/gnupg" gpgconf --kill all 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
chmod 755 "$W"
mkdir -p "$W/dc/run" "$W/dc/state" "$W/dc/mail" "$W/dc/home" "$W/site/keys" "$W/gnupg"
chown -R dovecot:dovecot "$W/dc/mail" "$W/dc/home"
chmod 700 "$W/gnupg"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/dc/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $W/dc/run
state_dir = $W/dc/state
log_path = $W/dc/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$W/dc/mail
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {
  driver = static
  args = password=bench
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$W/dc/home
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
/usr/sbin/dovecot -F -c "$W/dc/dovecot.conf" &
DPID=$!

export GNUPGHOME="$W/gnupg"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Bench <bench@example.org>' ed25519 cert,sign 1y 2>/dev/null
FPR=$(gpg --batch --with-colons --list-keys bench@example.org | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --quiet --passphrase '' --quick-add-key "$FPR" cv25519 encr 1y 2>/dev/null
gpg --batch --armor --export "$FPR" > "$W/site/keys/bench.asc" 2>/dev/null
printf 'bench\n' > "$W/site/imap-password"
cat > "$W/site/embargo.toml" <<CONF
[mailbox]
kind = "imap"
host = "127.0.0.1"
port = $PORT
tls = "none"
username = "bench"
password_file = "imap-password"
CONF

python3 - "$PORT" "$N" "$SIZE" <<'PY'
import imaplib, sys, time, random
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(100):
    try:
        m = imaplib.IMAP4("127.0.0.1", port); break
    except OSError:
        time.sleep(0.05)
m.login("bench", "bench")
rnd = random.Random(1)
for i in range(n):
    head = f"From: r{i}@example.org\r\nSubject: bench {i}\r\nMessage-ID: <b{i}@example.org>\r\n\r\n"
    body = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(size - len(head) - 2))
    m.append("INBOX", None, None, (head + body + "\r\n").encode())
m.logout()
PY

START=$(date +%s.%N)
"$BIN" poll -c "$W/site/embargo.toml" --once
END=$(date +%s.%N)
SEALED=$(ls "$W/site/data/reports" | grep -vc '^\.' || true)
LEFT=$(python3 - "$PORT" <<'PY'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1])); m.login("bench", "bench")
print(m.select("INBOX")[1][0].decode()); m.logout()
PY
)
python3 -c "
n, s, e = $N, $START, $END
print(f'{n} messages of $SIZE bytes drained in {e - s:.2f} s: {n / (e - s):.1f} messages/s ($PROFILE build, $SEALED reports sealed, $LEFT left in INBOX)')
"
[ "$SEALED" -eq "$N" ] && [ "$LEFT" -eq 0 ]
