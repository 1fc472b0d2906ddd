#!/usr/bin/env bash
# Memory per live SIP state in ringer: how its resident memory grows with what it holds, as the
# slope of a least-squares line through samples taken every half second while the count climbs
# (resident memory over the live count from /metrics), so that what every process holds anyway
# (code, buffers, the allocator's pools) is left out.
#
#   transaction  UDP INVITEs refused 486 straight to ringer, at RATE for SECONDS_PER_ROW: each
#                transaction lives on after the ACK for Timer I (T4, 5 s on UDP), so about
#                RATE x 5 are live at once (ringer_sip_server_transactions)
#   loop call    calls through the emulated core (bench/loop-path.sh's set-up) held HOLD_SECONDS
#                each, at RATE / 4 for SECONDS_PER_ROW: each is two dialogs in ringer (leg 2,
#                leg 3; ringer_sip_dialogs) with the B2BUA's call and both legs' INVITE
#                transactions, answered 2xx transactions lingering Timer L (32 s, RFC 6026)
#
# Prints per row the live count at its peak, the resident memory at the start and at the peak,
# and the slope in bytes per counted item (per transaction; per dialog and per loop call).
#
#   bench/live-state.sh                                   # 2000/s, 8 s a row, calls held 30 s
#   RATE=1000 SECONDS_PER_ROW=6 HOLD_SECONDS=20 bench/live-state.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
repo=$PWD

RATE=${RATE:-2000}
ROW=${SECONDS_PER_ROW:-8}
HOLD=${HOLD_SECONDS:-30}
start_bench

# sample PID METRICS_URL GAUGE SECONDS > FILE: "count rss_kib" every half second
sample() {
    local end=$(($(date +%s) + $4))
    while [ "$(date +%s)" -lt "$end" ]; do
        echo "$(gauge "$2" "$3") $(rss_kib "$1")"
        sleep 0.5
    done
}

# report NAME UNIT PER_ITEM SAMPLES: the row; PER_ITEM scales the slope (2: a loop call's two dialogs)
report() {
    awk -v name="$1" -v unit="$2" -v per="$3" '
        NR == 1 { first = $2 }
        { n++; sx += $1; sy += $2 * 1024; sxx += $1 * $1; sxy += $1 * $2 * 1024
          if ($1 >= peak) { peak = $1; at_peak = $2 } }
        END {
            d = n * sxx - sx * sx
            slope = d > 0 ? (n * sxy - sx * sy) / d : 0
            printf "%-12s %10d %12.1f %12.1f %14.0f %s", name, peak, first / 1024, at_peak / 1024, slope, unit
            if (per > 1) printf " (%.0f per loop call)", slope * per
            printf "\n"
        }' "$4"
}

printf '%-12s %10s %12s %12s %14s\n' row "peak live" "RSS MiB at 0" "RSS at peak" "bytes each"

# Transactions: ringer alone, every call refused.
write_ringer_config "$work/reject.toml" 25060 "reject 486"
printf '[http]\nlisten = "127.0.0.1:25095"\n' >> "$work/reject.toml"
RINGER_LOG=warn "$ringer" serve --config "$work/reject.toml" > "$work/reject.log" 2>&1 &
pid=$!
sleep 1
sample $pid http://127.0.0.1:25095/metrics ringer_sip_server_transactions $((ROW + 1)) > "$work/transactions" &
sampler=$!
(cd "$work" && sipp -sf "$repo/scenarios/uac_reject.xml" -t u1 -i 127.0.0.1 -p 26060 -r "$RATE" -m $((RATE * ROW)) \
    -l $((RATE * 4)) -nostdin -timeout $((ROW * 4))s -buff_size 4194304 127.0.0.1:25060 > reject.out 2>&1) || true
wait $sampler
report transaction "per transaction" 1 "$work/transactions"
kill $pid; wait $pid 2>/dev/null || true

# Dialogs: the loop path with calls held.
write_loop_configs "$ringer" "$work"
sed "s/<pause milliseconds=\"200\"\/>/<pause milliseconds=\"$((HOLD * 1000))\"\/>/" "$repo/scenarios/alice_uac.xml" > "$work/alice_holds.xml"
grep -q "milliseconds=\"$((HOLD * 1000))\"" "$work/alice_holds.xml" || { echo "alice_uac.xml has no 200 ms pause to stretch"; exit 1; }
RINGER_LOG=warn "$ringer" core --config "$work/core.toml" > "$work/core.log" 2>&1 &
RINGER_LOG=warn "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
pid=$!
wait_registered
rate=$((RATE / 4))
(cd "$work" && exec sipp -sf "$repo/scenarios/bob_uas.xml" -t u1 -i 127.0.0.1 -p 25090 -buff_size 4194304 -nostdin \
    -timeout $((ROW + HOLD + 30))s -max_socket 50000 > bob.out 2>&1) &
sleep 0.5
sample $pid http://127.0.0.1:25094/metrics ringer_sip_dialogs $((ROW + 1)) > "$work/dialogs" &
sampler=$!
(cd "$work" && exec sipp -sf "$work/alice_holds.xml" -key caller +4711111111 -s +4799990001 -t u1 -i 127.0.0.1 -p 25091 \
    -r "$rate" -m $((rate * ROW)) -l $((rate * (HOLD + 4))) -nostdin -timeout $((ROW + HOLD + 20))s -max_socket 50000 \
    -buff_size 4194304 127.0.0.1:25070 > alice.out 2>&1) &
wait $sampler
report "loop call" "per dialog" 2 "$work/dialogs"
