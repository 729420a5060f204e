#!/usr/bin/env bash
# Benchmark (not a test): uploads one large file through the web API with
# curl and prints throughput and the server's peak RSS, next to
# `gpg --encrypt --compress-algo none` on the same file.
#
#   bench/upload.sh [SIZE_MIB]          (default 1024, i.e. 1 GiB)
#
# EMBARGO_BIN picks the binary (default: target/release/embargo, built if
# missing). Everything happens in a temporary directory on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${1:-1024}
bin=${EMBARGO_BIN:-target/release/embargo}
if [ ! -x "$bin" ]; then
  cargo build --release --bin embargo
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/embargo-bench.XXXXXX")
export GNUPGHOME
GNUPGHOME=$(mktemp -d /tmp/egb.XXXXXX)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  gpgconf --kill all 2>/dev/null || true
  rm -rf "$work" "$GNUPGHOME"
}
trap cleanup EXIT

# A maintainer key made by stock gpg (Curve25519, no passphrase).
gpg --batch --quiet --passphrase '' --quick-gen-key 'Bench <bench@example.org>' ed25519 cert,sign 0
fpr=$(gpg --with-colons --list-keys bench@example.org | awk -F: '/^fpr:/ {print $10; exit}')
gpg --batch --quiet --passphrase '' --quick-add-key "$fpr" cv25519 encr 0
mkdir -p "$work/keys"
gpg --armor --export "$fpr" > "$work/keys/bench.asc"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/embargo.toml" <<TOML
listen = "127.0.0.1:$port"
project_name = "Benchmark"
[limits]
max_attachment_bytes = $(( (size_mib + 1) * 1024 * 1024 ))
upload_timeout = "60m"
TOML
printf '{"report":{"title":"bench","description":"bench"}}' > "$work/report.json"

echo "making a ${size_mib} MiB random file..."
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/file.bin"

EMBARGO_LOG=warn "$bin" serve -c "$work/embargo.toml" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
rss_idle=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")

echo "uploading through POST /api/v1/reports..."
read -r code secs < <(curl -sS -o "$work/response.json" -w '%{http_code} %{time_total}\n' \
  -F "report=@$work/report.json;type=application/json" \
  -F "attachment=@$work/file.bin;type=application/octet-stream" \
  "http://127.0.0.1:$port/api/v1/reports")
if [ "$code" != 201 ]; then
  echo "upload failed with HTTP $code:" >&2
  cat "$work/response.json" "$work/server.log" >&2
  exit 1
fi
peak_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/response.json")
stored=$(du -sm "$work/data/reports/$id" | cut -f1)

echo "gpg --encrypt --compress-algo none on the same file..."
gpg_start=$(date +%s.%N)
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f '%M' -o "$work/gpg.rss" gpg --batch --yes --trust-model always --compress-algo none \
    -r "$fpr" -o "$work/file.gpg" --encrypt "$work/file.bin"
  gpg_peak_kib=$(cat "$work/gpg.rss")
else
  gpg --batch --yes --trust-model always --compress-algo none -r "$fpr" -o "$work/file.gpg" --encrypt "$work/file.bin"
  gpg_peak_kib="?"
fi
gpg_end=$(date +%s.%N)

python3 - "$size_mib" "$secs" "$gpg_start" "$gpg_end" "$peak_kib" "$rss_idle" "$gpg_peak_kib" "$stored" "$bin" <<'PY'
import sys
size, secs, g0, g1, peak, idle, gpeak, stored, binary = sys.argv[1:]
size = float(size); secs = float(secs); gsecs = float(g1) - float(g0)
print()
print(f"embargo binary:           {binary}")
print(f"file:                     {size:.0f} MiB (random bytes)")
print(f"embargo upload (curl):    {secs:7.2f} s  {size / secs:8.1f} MiB/s  (HTTP + multipart + encrypt + fsync, report stored: {stored} MiB)")
print(f"gpg --encrypt (no compr): {gsecs:7.2f} s  {size / gsecs:8.1f} MiB/s")
print(f"embargo server peak RSS:  {int(peak) / 1024:7.1f} MiB  (VmHWM; {int(idle) / 1024:.1f} MiB after start)")
if gpeak != "?":
    print(f"gpg peak RSS:             {int(gpeak) / 1024:7.1f} MiB")
print(f"target: peak RSS <= 64 MiB: {'met' if int(peak) <= 64 * 1024 else 'NOT met'}")
PY
