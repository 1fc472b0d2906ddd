#!/usr/bin/env bash
# Heap allocations per call, counted by heaptrack: a figure that does not move with the load of
# a shared machine, unlike CPU time. ringer is built with the system's allocator (heaptrack
# hooks malloc; mimalloc would hide the calls) in its own target folder, so the other
# benchmarks keep the mimalloc build. For each transport and path, SIPp places CALLS calls;
# the allocations of a run with no call (start-up, idle timers) are taken off, and the rest is
# divided by the calls completed.
#
#   bench/allocations.sh                      # 5000 calls a row
#   CALLS=20000 RATE=1000 bench/allocations.sh
#   RINGER_BIN=/tmp/old/ringer bench/allocations.sh  # another build (with the system allocator)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

CALLS=${CALLS:-5000}
RATE=${RATE:-1000}
PORT=25060
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

needs "sip-tester heaptrack" sipp heaptrack heaptrack_print
if [ -n "${RINGER_BIN:-}" ]; then
    ringer=$RINGER_BIN
else
    CARGO_TARGET_DIR=target/system-allocator cargo build --release --quiet --features system-allocator
    ringer=$PWD/target/system-allocator/release/ringer
fi

# allocations ACTION TRANSPORT CALLS -> "allocations completed" of one ringer run under heaptrack
allocations() {
    local action=$1 transport=$2 calls=$3 scenario=(-sn uac)
    [ "$action" = "reject 486" ] && scenario=(-sf "$PWD/scenarios/uac_reject.xml")
    write_ringer_config "$work/ringer.toml" "$PORT" "$action"
    rm -rf "$work/var" "$work/heaptrack.zst"
    (cd "$work" && RINGER_LOG=warn heaptrack -o "$work/heaptrack" "$ringer" serve --config "$work/ringer.toml" \
        > "$work/ringer.log" 2>&1) &
    local runner=$!
    sleep 3
    local ok=0
    if [ "$calls" -gt 0 ]; then
        (cd "$work" && sipp "${scenario[@]}" -t "$transport" -i 127.0.0.1 -p $((PORT + 1000)) -r "$RATE" -m "$calls" \
            -l $((RATE * 4)) -nostdin -timeout $((calls / RATE * 4 + 30))s -timeout_error 127.0.0.1:"$PORT" \
            > "$work/sipp.out" 2>&1) || true
        read -r ok _ < <(sipp_counts "$work/sipp.out" "$calls")
    else
        sleep $((5000 / RATE))
    fi
    # Idle as long after the calls as before them: the transactions' timers run out the same.
    sleep 6
    pkill -INT -f "$ringer serve --config $work/ringer.toml" || true
    wait $runner 2>/dev/null || true
    local count
    count=$( (heaptrack_print -f "$work/heaptrack.zst" 2>/dev/null || true) |
        awk -F': ' '/^calls to allocation functions/ { split($2, a, " "); print a[1] }')
    echo "${count:-0} $ok"
}

printf '%-9s %-7s %8s %14s %16s\n' transport path calls allocations "per call"
for transport in u1 t1; do
    name=udp; [ "$transport" = t1 ] && name=tcp
    for path in reject answer; do
        action="answer echo"; [ "$path" = reject ] && action="reject 486"
        read -r idle _ < <(allocations "$action" "$transport" 0)
        read -r total ok < <(allocations "$action" "$transport" "$CALLS")
        per_call=$(awk -v t="$total" -v i="$idle" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", (t - i) / n; else print "-" }')
        printf '%-9s %-7s %8s %14s %16s\n' "$name" "$path" "$ok" "$total" "$per_call"
    done
done
