#!/usr/bin/env bash
# Many subscribers: imported into the database, registered by one `ringer serve` against the
# emulated core, then refreshed over one time to live. Release builds, an SQLite file.
#
# Prints: the import time; the time from start until every subscriber is registered (noted in
# the leases table); ringer's RSS then, its RSS with no subscribers, and the difference per
# subscriber; refreshes per second over one time to live after that (max and mean of the
# per-second counts, from the leases' noted expiries), and the process's CPU over that window.
#
#   bench/subscribers.sh                              # 1,000,000 subscribers, TTL 120 s
#   SUBSCRIBERS=100000 TTL=60 bench/subscribers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${SUBSCRIBERS:-1000000}
TTL=${TTL:-120}
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir: $work"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

cargo build --release --quiet
ringer=$PWD/target/release/ringer
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
db="sqlite://$work/ringer.db"

cat > "$work/core.toml" <<TOML
time_to_live = "${TTL}s"
[grpc]
listen = "127.0.0.1:26051"
TOML
serve_config() {
    cat <<TOML
[store]
url = "$1"
[tas]
sip_uri = "sips:tas.example.net:5061"
[core]
endpoint = "http://127.0.0.1:26051"
[registrar]
max_in_flight = 512
[sip]
tcp_listen = "127.0.0.1:0"
TOML
}
RINGER_LOG=warn "$ringer" core --config "$work/core.toml" > "$work/core.log" 2>&1 &
sleep 1

# Baseline: the same server with no subscribers.
serve_config "sqlite://$work/empty.db" > "$work/empty.toml"
RINGER_LOG=warn "$ringer" serve --config "$work/empty.toml" > "$work/empty.log" 2>&1 &
empty_pid=$!
sleep 5
base_kib=$(rss_kib $empty_pid)
kill $empty_pid; wait $empty_pid 2>/dev/null || true

python3 - "$work/subscribers.toml" "$N" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as out:
    for i in range(n):
        out.write(f'[[subscriber]]\nphone_number = "+47{40000000 + i}"\nroute_type = "loop"\nmo_prefix = "11"\nmt_prefix = "22"\n')
PY
"$ringer" db migrate --database "$db" > /dev/null
start=$(date +%s.%N)
"$ringer" subscribers import "$work/subscribers.toml" --database "$db" > "$work/import.log"
import_s=$(echo "$(date +%s.%N) - $start" | bc)

count_noted() {
    python3 - "$work/ringer.db" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
since = int(sys.argv[2])
print(db.execute("SELECT COUNT(*) FROM registration_leases WHERE registered_until >= ?", (since,)).fetchone()[0])
PY
}
serve_config "$db" > "$work/ringer.toml"
start=$(date +%s.%N)
RINGER_LOG=warn "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
pid=$!
while [ "$(count_noted 1)" -lt "$N" ]; do
    kill -0 $pid 2>/dev/null || { echo "ringer serve stopped:"; tail -5 "$work/ringer.log"; exit 1; }
    sleep 1
done
registered_s=$(echo "$(date +%s.%N) - $start" | bc)
rss=$(rss_kib $pid)

# Refreshes over one TTL: each refresh notes its new expiry (answer time + TTL) in the leases
# table, so after the window the expiries that fall in [window start + TTL, window end + TTL)
# tell when each subscriber was last refreshed in it, per second (a subscriber refreshed twice
# in the window counts once: refreshes come more than half a TTL apart).
window_start=$(date +%s%3N)
cpu_before=$(cpu_ticks $pid)
sleep "$TTL"
cpu_after=$(cpu_ticks $pid)
rss_after=$(rss_kib $pid)
sleep 6 # three heartbeats: the window's last refreshes noted
counts=$(python3 - "$work/ringer.db" "$window_start" "$TTL" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
start, ttl = int(sys.argv[2]), int(sys.argv[3]) * 1000
rows = db.execute(
    "SELECT (registered_until - ? - ?) / 1000 AS second, COUNT(*) FROM registration_leases "
    "WHERE registered_until >= ? AND registered_until < ? GROUP BY second",
    (start, ttl, start + ttl, start + 2 * ttl),
).fetchall()
print(" ".join(str(count) for _, count in rows))
PY
)
kill $pid; wait $pid 2>/dev/null || true

max=0; sum=0
for c in $counts; do sum=$((sum + c)); [ "$c" -gt "$max" ] && max=$c; done
printf 'subscribers               %d\n' "$N"
printf 'import                    %.1f s\n' "$import_s"
printf 'all registered after      %.1f s\n' "$registered_s"
printf 'RSS, no subscribers       %d MiB\n' $((base_kib / 1024))
printf 'RSS, all registered       %d MiB (%d MiB after one TTL)\n' $((rss / 1024)) $((rss_after / 1024))
printf 'bytes per subscriber      %d\n' $(( (rss - base_kib) * 1024 / N ))
printf 'refreshes/s over %ss     max %d, mean %d (%d refreshed)\n' "$TTL" "$max" $((sum / TTL)) "$sum"
printf 'CPU over that window      %d%% of one core\n' $(( (cpu_after - cpu_before) * 100 / ticks / TTL ))
