#!/usr/bin/env bash
# Instructions per call: ringer under valgrind's callgrind, per transport (UDP, TCP) and path
# (reject, answer), counting the user-space instructions it executes while SIPp places CALLS
# calls at RATE calls/s. Unlike CPU time this figure does not move with the machine's load
# (runs of the same build agree within 1 %), so it shows what a change to ringer's own code
# did; the kernel's part (system calls, thread switches) and memory stalls are not in it, and
# bench/cpu-per-call.sh remains the measure of those.
#
# Each window is counted from a callgrind dump taken before SIPp starts to one taken LINGER
# seconds after it ends (so Timer I's work on UDP is inside), less what ringer does idle over
# as long (measured once per path: timers and the call record writer's wake-ups).
#
#   bench/instructions.sh                                 # 1000 calls at 100/s per row
#   CALLS=500 RATE=50 bench/instructions.sh
#   RINGER_BIN=/tmp/ringer-before bench/instructions.sh   # another build, for before and after
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

CALLS=${CALLS:-1000}
RATE=${RATE:-100}
LINGER=${LINGER:-6}
PORT=25080
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

needs "valgrind sip-tester" valgrind callgrind_control sipp
if [ -z "${RINGER_BIN:-}" ]; then
    cargo build --release --quiet
fi
ringer=${RINGER_BIN:-target/release/ringer}

printf '%-9s %-7s %6s %14s %18s\n' transport path calls "seconds" "instructions/call"
for path in reject answer; do
    action="answer echo"; [ "$path" = reject ] && action="reject 486"
    write_ringer_config "$work/ringer.toml" "$PORT" "$action"
    rm -f "$work"/callgrind.* "$work"/*.db*
    RINGER_LOG=warn valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/callgrind.%p" \
        "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 120); do
        ss -lun | grep -q ":$PORT " && ss -ltn | grep -q ":$PORT " && break
        sleep 0.5
    done
    sleep 2
    callgrind_instructions $pid >/dev/null
    for transport in udp tcp; do
        flag=u1; [ "$transport" = tcp ] && flag=t1
        scenario=(-sn uac); [ "$path" = reject ] && scenario=(-sf "$PWD/scenarios/uac_reject.xml")
        start=$(date +%s.%N)
        (cd "$work" && sipp "${scenario[@]}" -t "$flag" -i 127.0.0.1 -p $((PORT + 1000)) -r "$RATE" -m "$CALLS" \
            -l "$CALLS" -nostdin -timeout 120s -timeout_error 127.0.0.1:"$PORT" > sipp.out 2>&1) || true
        sleep "$LINGER"
        used=$(callgrind_instructions $pid)
        seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
        read -r ok _failed < <(sipp_counts "$work/sipp.out" "$CALLS")
        # What ringer does idle over as long, once per path.
        if [ "$transport" = udp ]; then
            sleep "$seconds"
            idle=$(callgrind_instructions $pid)
        fi
        awk -v u="$used" -v i="$idle" -v n="$ok" -v t="$transport" -v p="$path" -v s="$seconds" \
            'BEGIN { if (n > 0) printf "%-9s %-7s %6d %14s %18.0f\n", t, p, n, s, (u - i) / n;
                     else printf "%-9s %-7s %6d %14s %18s\n", t, p, n, s, "no call completed" }'
    done
    kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
done
