#!/usr/bin/env bash
# SIPp against `ringer serve` at rising call rates, per transport (UDP, TCP) and path (reject,
# answer), beside a stateless Kamailio answering the same load in the same run.
#
# Prints per row: offered rate, calls/s completed, failed calls, response time p50/p99 (ms),
# ringer's CPU (% of one core) and peak memory, and the ratio to Kamailio's calls/s.
#
#   bench/sip-load.sh                  # rates 1000 2000 5000 10000 20000, 10 s each
#   RATES="500 1000" SECONDS_PER_STEP=5 bench/sip-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

RATES=${RATES:-"1000 2000 5000 10000 20000"}
STEP=${SECONDS_PER_STEP:-10}
RINGER_PORT=25060
KAMAILIO_PORT=25070
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

needs sip-tester sipp
have_kamailio=1
command -v kamailio >/dev/null || { echo "kamailio not installed: no baseline (apt-get install kamailio)"; have_kamailio=0; }
cargo build --release --quiet
ringer=target/release/ringer
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_step TRANSPORT PATH PORT RATE -> "completed_cps failed p50 p99"
run_step() {
    local transport=$1 path=$2 port=$3 rate=$4
    local calls=$((rate * STEP)) scenario=(-sn uac)
    [ "$path" = reject ] && scenario=(-sf "$PWD/scenarios/uac_reject.xml")
    local flag=u1; [ "$transport" = tcp ] && flag=t1
    rm -f "$work"/*_rtt.csv
    local start end
    start=$(date +%s.%N)
    (cd "$work" && sipp "${scenario[@]}" -t "$flag" -i 127.0.0.1 -p $((port + 1000)) -r "$rate" -m "$calls" \
        -l $((rate * 4)) -nostdin -timeout $((STEP * 4))s -timeout_error -max_socket 50000 \
        -trace_rtt -rtt_freq 1 127.0.0.1:"$port" > sipp.out 2>&1) || true
    end=$(date +%s.%N)
    local ok failed
    read -r ok failed < <(sipp_counts "$work/sipp.out" "$calls")
    local cps
    cps=$(awk -v ok="$ok" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", ok / (e - s) }')
    local rtt
    rtt=$(sipp_percentiles "$work"/*_rtt.csv)
    echo "$cps $failed $rtt"
}

printf '%-9s %-7s %-8s %10s %8s %9s %9s %8s %10s %12s %8s\n' server transport path offered "calls/s" failed "p50 ms" "p99 ms" "cpu %" "peak RSS" "ratio"
for transport in udp tcp; do
    for path in reject answer; do
        action="answer echo"; [ "$path" = reject ] && action="reject 486"
        write_ringer_config "$work/ringer.toml" "$RINGER_PORT" "$action"
        RINGER_LOG=warn "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
        ringer_pid=$!
        kamailio_pid=""
        if [ $have_kamailio = 1 ]; then
            defines=(); [ "$path" = reject ] && defines=(-A REJECT)
            kamailio -DD -E -f bench/kamailio-stateless.cfg "${defines[@]}" -P "$work/kamailio.pid" > "$work/kamailio.log" 2>&1 &
            kamailio_pid=$!
        fi
        sleep 1
        for rate in $RATES; do
            before=$(cpu_ticks $ringer_pid); t0=$(date +%s.%N)
            read -r cps failed p50 p99 < <(run_step $transport $path $RINGER_PORT "$rate")
            after=$(cpu_ticks $ringer_pid); t1=$(date +%s.%N)
            cpu=$(awk -v a="$after" -v b="$before" -v t="$ticks" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (a - b) / t / (e - s) * 100 }')
            rss=$(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$ringer_pid/status")
            ratio="-"
            if [ -n "$kamailio_pid" ]; then
                read -r kcps kfailed kp50 kp99 < <(run_step $transport $path $KAMAILIO_PORT "$rate")
                printf '%-9s %-7s %-8s %10s %8s %9s %9s %8s %10s %12s %8s\n' kamailio $transport $path "$rate" "$kcps" "$kfailed" "$kp50" "$kp99" - - -
                ratio=$(awk -v r="$cps" -v k="$kcps" 'BEGIN { if (k > 0) printf "%.2f", r / k; else print "-" }')
            fi
            printf '%-9s %-7s %-8s %10s %8s %9s %9s %8s %10s %12s %8s\n' ringer $transport $path "$rate" "$cps" "$failed" "$p50" "$p99" "$cpu" "$rss" "$ratio"
        done
        kill $ringer_pid 2>/dev/null || true; wait $ringer_pid 2>/dev/null || true
        if [ -n "$kamailio_pid" ]; then kill "$(cat "$work/kamailio.pid" 2>/dev/null || echo $kamailio_pid)" 2>/dev/null || true; sleep 1; fi
    done
done
