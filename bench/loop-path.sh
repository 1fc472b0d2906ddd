#!/usr/bin/env bash
# The whole loop path under load: SIPp Alice -> emulated core (SBC, UDP) -> ringer (leg 2, TLS)
# -> core (leg 3, TLS) -> SIPp Bob (leg 4, UDP), both release builds.
#
# Per offered rate it runs the same load twice: to a subscriber registered with route type
# loop (through the TAS) and to a number with no registration (core straight to Bob).
#
# Prints per row: path, offered calls/s, completed calls/s, failed calls, setup time at Alice
# (INVITE to 200) p50/p99 in ms as SIPp measures it (its clock ticks in 4 ms steps here), and
# for the loop rows what the TAS hop adds, measured inside ringer (GET /calls): leg 2 INVITE
# in to leg 3 INVITE out, plus leg 3 200 in to leg 2 200 out, p50 and p99 in µs (histogram
# bucket bounds, so upper estimates); then ringer's and the core's CPU (% of one core), and
# ringer's CPU per completed loop call in µs (the step's whole CPU over its completed calls).
#
#   bench/loop-path.sh                         # rates 1000 2000 3000 4000, 10 s each
#   RATES="1000 3000" SECONDS_PER_STEP=5 bench/loop-path.sh
#   PERF_OUT=/tmp/loop.perf RATES=1000 bench/loop-path.sh   # also perf-records ringer and the core per loop step
#   RINGER_BIN=/tmp/ringer-before bench/loop-path.sh       # another build (ringer and the core), for before and after
#   CALLGRIND=1 RATES=50 bench/loop-path.sh                 # ringer under callgrind: user-space instructions per loop call
#
# With CALLGRIND ringer runs under valgrind's callgrind (about fifty times slower: keep the rate
# low) and the last column is the instructions it executed per completed loop call, from a dump
# before the loop step to one after it: a figure the machine's load does not move.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
repo=$PWD

RATES=${RATES:-"1000 2000 3000 4000"}
STEP=${SECONDS_PER_STEP:-10}
start_bench
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

write_loop_configs "$ringer" "$work"
RINGER_LOG=warn "$ringer" core --config "$work/core.toml" > "$work/core.log" 2>&1 &
core_pid=$!
sleep 1
start_ringer() {
    if [ -n "${CALLGRIND:-}" ]; then
        needs valgrind valgrind callgrind_control
        RINGER_LOG=warn valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/callgrind.%p" \
            "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
    else
        RINGER_LOG=warn "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
    fi
    ringer_pid=$!
    wait_registered
}
stop_ringer() { kill $ringer_pid 2>/dev/null || true; wait $ringer_pid 2>/dev/null || true; }
# hop FIELD -> the request-hop plus answer-hop value of FIELD, in µs
hop() {
    curl -s http://127.0.0.1:25094/calls |
        python3 -c "import json,sys; v=json.load(sys.stdin); print(v['request_hop']['$1'] + v['answer_hop']['$1'])"
}

# run_step CALLEE RATE -> "completed_cps failed p50 p99 completed"
run_step() {
    local callee=$1 rate=$2
    local calls=$((rate * STEP))
    rm -f "$work"/*_rtt.csv
    (cd "$work" && exec sipp -sf "$repo/scenarios/bob_uas.xml" -t u1 -i 127.0.0.1 -p 25090 -buff_size 4194304 -nostdin \
        -timeout $((STEP * 4 + 10))s -max_socket 50000 > bob.out 2>&1) &
    local bob=$!
    sleep 0.5
    local start end
    start=$(date +%s.%N)
    (cd "$work" && sipp -sf "$repo/scenarios/alice_uac.xml" -key caller +4711111111 -s "$callee" -t u1 \
        -i 127.0.0.1 -p 25091 -r "$rate" -m "$calls" -l $((rate * 4)) -nostdin -timeout $((STEP * 4))s \
        -timeout_error -max_socket 50000 -buff_size 4194304 -timer_resol 1 -trace_rtt -rtt_freq 1 127.0.0.1:25070 > alice.out 2>&1) || true
    end=$(date +%s.%N)
    kill $bob 2>/dev/null || true; wait $bob 2>/dev/null || true
    local ok failed
    read -r ok failed < <(sipp_counts "$work/alice.out" "$calls")
    # The scenario holds each call 200 ms after the answer: completed calls over the sending time.
    local cps rtt
    cps=$(awk -v ok="$ok" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", ok / (e - s - 0.2) }')
    rtt=$(sipp_percentiles "$work"/*_rtt.csv)
    echo "$cps $failed $rtt $ok"
}

printf '%-7s %8s %8s %7s %8s %8s %13s %13s %8s %8s %12s\n' path offered "calls/s" failed "p50 ms" "p99 ms" "hop p50 µs" "hop p99 µs" "ringer%" "core%" "ringer µs/call"
for rate in $RATES; do
    start_ringer
    read -r dcps dfailed dp50 dp99 _ < <(run_step +4712345678 "$rate")
    printf '%-7s %8s %8s %7s %8s %8s %13s %13s %8s %8s %12s\n' direct "$rate" "$dcps" "$dfailed" "$dp50" "$dp99" - - - - -
    [ -n "${CALLGRIND:-}" ] && callgrind_instructions $ringer_pid >/dev/null
    r0=$(cpu_ticks $ringer_pid); c0=$(cpu_ticks $core_pid); t0=$(date +%s.%N)
    if [ -n "${PERF_OUT:-}" ]; then
        # Where ringer's time goes during the loop step (perf report -i PERF_OUT.RATE).
        perf record -q -F 499 --call-graph dwarf,16384 -p "$ringer_pid" -o "$PERF_OUT.$rate" -- sleep "$((STEP / 2 + 1))" \
            > /dev/null 2>&1 &
        # And the emulated core's, which is part of the path (perf report -i PERF_OUT.core.RATE).
        perf record -q -F 499 --call-graph dwarf,16384 -p "$core_pid" -o "$PERF_OUT.core.$rate" -- sleep "$((STEP / 2 + 1))" \
            > /dev/null 2>&1 &
    fi
    read -r cps failed p50 p99 completed < <(run_step +4799990001 "$rate")
    r1=$(cpu_ticks $ringer_pid); c1=$(cpu_ticks $core_pid); t1=$(date +%s.%N)
    rcpu=$(awk -v a="$r1" -v b="$r0" -v t="$ticks" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (a - b) / t / (e - s) * 100 }')
    ccpu=$(awk -v a="$c1" -v b="$c0" -v t="$ticks" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (a - b) / t / (e - s) * 100 }')
    # CPU over the whole step (the hold and the BYEs included) per completed call.
    per_call=$(awk -v a="$r1" -v b="$r0" -v t="$ticks" -v n="$completed" 'BEGIN { printf "%.0f", n ? (a - b) / t / n * 1e6 : 0 }')
    if [ -n "${CALLGRIND:-}" ]; then
        per_call="$(callgrind_instructions $ringer_pid | awk -v n="$completed" '{ printf "%.0f", n ? $1 / n : 0 }') instr"
    fi
    hop50=$(hop p50_us); hop99=$(hop p99_us)
    printf '%-7s %8s %8s %7s %8s %8s %13s %13s %8s %8s %12s\n' loop "$rate" "$cps" "$failed" "$p50" "$p99" "$hop50" "$hop99" "$rcpu" "$ccpu" "$per_call"
    rss() { awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"; }
    ringer_rss=$(rss $ringer_pid)
    stop_ringer
done
echo "peak RSS: ringer $ringer_rss (last rate), core $(rss $core_pid)"
