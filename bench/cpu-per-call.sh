#!/usr/bin/env bash
# CPU per call: ringer against Kamailio answering statelessly (bench/kamailio-stateless.cfg)
# under the same SIPp load, per transport (UDP, TCP) and path (reject, answer). On 2 shared
# cores SIPp caps the offered rate before either server, so calls/s cannot tell them apart; the
# CPU of each server's whole process tree divided by the calls it completed can. Runs vary from
# one to the next: each row is run REPEATS times with the servers alternating, and the median
# and the spread (min–max) of each server's µs per call are printed, with the ratio of medians.
#
#   bench/cpu-per-call.sh                                  # 3000 calls/s, 8 s a run, 5 repeats
#   RATE=2000 SECONDS_PER_RUN=5 REPEATS=3 bench/cpu-per-call.sh
#   TOKIO_WORKER_THREADS=1 bench/cpu-per-call.sh          # ringer on one worker thread
#   RINGER_BIN=/tmp/ringer-before bench/cpu-per-call.sh   # another build, for before and after
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

RATE=${RATE:-3000}
RUN=${SECONDS_PER_RUN:-8}
REPEATS=${REPEATS:-5}
RINGER_PORT=25060
KAMAILIO_PORT=25070
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

needs sip-tester sipp
needs kamailio kamailio
if [ -z "${RINGER_BIN:-}" ]; then
    cargo build --release --quiet
fi
ringer=${RINGER_BIN:-target/release/ringer}
ticks=$(getconf CLK_TCK)

# tree_ticks PID -> CPU ticks "user system" of PID and every process under it
tree_ticks() {
    local pids=$1 frontier=$1 children
    while [ -n "$frontier" ]; do
        children=$( (ps -o pid= --ppid "${frontier// /,}" 2>/dev/null || true) | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
        pids="$pids $children"
        frontier=$children
    done
    for pid in $pids; do awk '{print $14, $15}' "/proc/$pid/stat" 2>/dev/null || true; done |
        awk '{ u += $1; s += $2 } END { print u + 0, s + 0 }'
}

# run PID PORT TRANSPORT PATH -> "total system": µs of PID's tree per completed call, all of it
# and its part in the kernel
run() {
    local pid=$1 port=$2 transport=$3 path=$4
    local calls=$((RATE * RUN)) scenario=(-sn uac) flag=u1
    [ "$path" = reject ] && scenario=(-sf "$PWD/scenarios/uac_reject.xml")
    [ "$transport" = tcp ] && flag=t1
    local user_before system_before user_after system_after ok failed
    read -r user_before system_before < <(tree_ticks "$pid")
    (cd "$work" && sipp "${scenario[@]}" -t "$flag" -i 127.0.0.1 -p $((port + 1000)) -r "$RATE" -m "$calls" \
        -l $((RATE * 4)) -nostdin -timeout $((RUN * 4))s -timeout_error -max_socket 50000 \
        127.0.0.1:"$port" > sipp.out 2>&1) || true
    read -r user_after system_after < <(tree_ticks "$pid")
    read -r ok failed < <(sipp_counts "$work/sipp.out" "$calls")
    awk -v u=$((user_after - user_before)) -v s=$((system_after - system_before)) -v t="$ticks" -v n="$ok" \
        'BEGIN { if (n > 0) printf "%.1f %.1f\n", (u + s) / t * 1e6 / n, s / t * 1e6 / n; else print "nan nan" }'
}

# summary VALUES... -> "median min-max"
summary() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f %.1f-%.1f\n", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

# Besides each median, the median of its part spent in the kernel ("sys"): system calls, thread
# switches and page faults on the server's behalf.
printf '%-7s %-7s %6s %18s %11s %18s %11s %8s\n' transport path "runs" "ringer µs/call" "ringer sys" \
    "kamailio µs/call" "kamailio sys" ratio
for transport in udp tcp; do
    for path in reject answer; do
        action="answer echo"; [ "$path" = reject ] && action="reject 486"
        write_ringer_config "$work/ringer.toml" "$RINGER_PORT" "$action"
        RINGER_LOG=warn "$ringer" serve --config "$work/ringer.toml" > "$work/ringer.log" 2>&1 &
        ringer_pid=$!
        defines=(); [ "$path" = reject ] && defines=(-A REJECT)
        kamailio -DD -E -f bench/kamailio-stateless.cfg "${defines[@]}" -P "$work/kamailio.pid" > "$work/kamailio.log" 2>&1 &
        kamailio_pid=$!
        sleep 1
        ringer_runs=(); kamailio_runs=(); ringer_sys=(); kamailio_sys=()
        for repeat in $(seq 1 "$REPEATS"); do
            for server in ringer kamailio; do
                # The servers alternate which runs first.
                ((repeat % 2)) || server=$([ $server = ringer ] && echo kamailio || echo ringer)
                if [ $server = ringer ]; then
                    read -r total system < <(run $ringer_pid $RINGER_PORT $transport $path)
                    ringer_runs+=("$total"); ringer_sys+=("$system")
                else
                    read -r total system < <(run $kamailio_pid $KAMAILIO_PORT $transport $path)
                    kamailio_runs+=("$total"); kamailio_sys+=("$system")
                fi
            done
        done
        read -r ringer_median ringer_spread < <(summary "${ringer_runs[@]}")
        read -r kamailio_median kamailio_spread < <(summary "${kamailio_runs[@]}")
        read -r ringer_sys_median _ < <(summary "${ringer_sys[@]}")
        read -r kamailio_sys_median _ < <(summary "${kamailio_sys[@]}")
        ratio=$(awk -v r="$ringer_median" -v k="$kamailio_median" 'BEGIN { if (k > 0) printf "%.2f", r / k; else print "-" }')
        printf '%-7s %-7s %6s %18s %11s %18s %11s %8s\n' $transport $path "$REPEATS" "$ringer_median ($ringer_spread)" \
            "$ringer_sys_median" "$kamailio_median ($kamailio_spread)" "$kamailio_sys_median" "$ratio"
        kill $ringer_pid 2>/dev/null || true; wait $ringer_pid 2>/dev/null || true
        kill "$(cat "$work/kamailio.pid" 2>/dev/null || echo $kamailio_pid)" 2>/dev/null || true; sleep 1
    done
done
