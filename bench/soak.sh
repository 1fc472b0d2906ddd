#!/usr/bin/env bash
# Soak: the whole loop path (bench/loop-path.sh's set-up: SIPp Alice -> emulated core -> ringer
# over TLS -> core -> SIPp Bob) at RATE calls/s for MINUTES, with ringer's resident memory,
# live dialogs and server transactions sampled every SAMPLE_SECONDS. Prints each sample, then
# the calls completed and failed, and how much ringer's memory grew after the first minute
# (the target: under 5 %).
#
#   bench/soak.sh                                 # 3000 calls/s for 10 minutes
#   RATE=2000 MINUTES=3 SAMPLE_SECONDS=30 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
repo=$PWD

RATE=${RATE:-3000}
MINUTES=${MINUTES:-10}
EVERY=${SAMPLE_SECONDS:-60}
start_bench
write_loop_configs "$ringer" "$work"
RINGER_LOG=warn "$ringer" core --config "$work/core.toml" > "$work/core.log" 2>&1 &
RINGER_LOG=warn "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
pid=$!
wait_registered
seconds=$((MINUTES * 60))
(cd "$work" && exec sipp -sf "$repo/scenarios/bob_uas.xml" -t u1 -i 127.0.0.1 -p 25090 -buff_size 4194304 -nostdin \
    -timeout $((seconds + 60))s -max_socket 50000 > bob.out 2>&1) &
sleep 0.5
(cd "$work" && exec sipp -sf "$repo/scenarios/alice_uac.xml" -key caller +4711111111 -s +4799990001 -t u1 -i 127.0.0.1 \
    -p 25091 -r "$RATE" -m $((RATE * seconds)) -l $((RATE * 4)) -nostdin -timeout $((seconds + 30))s -timeout_error \
    -max_socket 50000 -buff_size 4194304 127.0.0.1:25070 > alice.out 2>&1) &
alice=$!

metrics=http://127.0.0.1:25094/metrics
printf '%8s %10s %10s %14s\n' seconds "RSS MiB" dialogs transactions
elapsed=0
: > "$work/rss"
while [ $elapsed -lt $seconds ]; do
    sleep "$EVERY"
    elapsed=$((elapsed + EVERY))
    rss=$(rss_kib $pid)
    echo "$elapsed $rss" >> "$work/rss"
    printf '%8s %10.1f %10s %14s\n' $elapsed "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
        "$(gauge $metrics ringer_sip_dialogs)" "$(gauge $metrics ringer_sip_server_transactions)"
done
wait $alice || true
read -r ok failed < <(sipp_counts "$work/alice.out" $((RATE * seconds)))
echo "calls: $ok completed, $failed failed, at $RATE calls/s for $MINUTES min"
# Growth from the first sample at or after a minute to the last.
awk '$1 >= 60 && !base { base = $2 } { last = $2 }
     END { if (base) printf "RSS after the first minute: %.1f -> %.1f MiB (%+.1f %%)\n", base / 1024, last / 1024, (last - base) * 100 / base }' "$work/rss"
