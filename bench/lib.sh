# Shared by the benchmarks.

# sipp_percentiles FILES... -> "p50 p99" (ms) of SIPp's -trace_rtt response times, or "- -"
sipp_percentiles() {
    cat "$@" 2>/dev/null | awk -F';' 'NR > 1 && $2 ~ /^[0-9.]+$/ { print $2 }' | sort -n |
        awk '{ v[NR] = $1 }
             END {
                 if (NR == 0) { print "- -"; exit }
                 m = int(NR * 0.50) + 1; if (m > NR) m = NR
                 p = int(NR * 0.99) + 1; if (p > NR) p = NR
                 printf "%.2f %.2f", v[m], v[p]
             }'
}

# sipp_counts SCREEN_FILE CALLS -> "successful failed" from SIPp's final statistics
sipp_counts() {
    local ok failed
    ok=$(grep -a "Successful call" "$1" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    failed=$(grep -a "Failed call" "$1" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
    echo "${ok:-0} ${failed:-$2}"
}

# write_ringer_config FILE PORT ACTION: `ringer serve` on plain SIP (UDP and TCP) at PORT, no
# core to register with, every call (SIPp's built-in uac calls sip:service@..., no subscriber's
# number) given ACTION.
write_ringer_config() {
    cat > "$1" <<TOML
[tas]
sip_uri = "sips:localhost:5061"
[core]
endpoint = "http://127.0.0.1:1"
[registrar]
initial_backoff = "10s"
[sip]
tcp_listen = "127.0.0.1:$2"
udp_listen = "127.0.0.1:$2"
[calls]
unknown_number = "$3"
TOML
}

# write_loop_configs RINGER DIR: development certificates and the configs of the loop path on
# loopback, in DIR: core.toml (the emulated core: SIPp Alice's SBC on UDP 25070, the TAS
# interconnect on TLS 25071, leg 4 to SIPp Bob on UDP 25090) and ringer.toml (the TAS on TLS
# 25061, one loop subscriber +4799990001 with MT prefix 22; /calls, /metrics and /registrations
# on 25094; its own database in DIR, so that no lease a killed earlier run left in a shared one
# keeps the subscriber from registering).
write_loop_configs() {
    local ringer=$1 dir=$2
    "$ringer" certs --domain localhost --domain 127.0.0.1 --out "$dir/certs" > /dev/null
    cat > "$dir/core.toml" <<TOML
[grpc]
listen = "127.0.0.1:25051"
[sbc]
udp_listen = "127.0.0.1:25070"
interconnect_listen = "127.0.0.1:25071"
cert_file = "$dir/certs/server.pem"
key_file = "$dir/certs/server.key"
tas_ca_file = "$dir/certs/ca.pem"
[[sbc.route]]
prefix = "+"
target = "sip:127.0.0.1:25090"
TOML
    cat > "$dir/ringer.toml" <<TOML
[tas]
sip_uri = "sips:localhost:25061"
[core]
endpoint = "http://127.0.0.1:25051"
[http]
listen = "127.0.0.1:25094"
[store]
url = "sqlite://$dir/ringer.db"
[sip]
tls_listen = "127.0.0.1:25061"
cert_file = "$dir/certs/server.pem"
key_file = "$dir/certs/server.key"
core_uri = "sips:localhost:25071"
core_ca_file = "$dir/certs/ca.pem"
[[subscriber]]
phone_number = "+4799990001"
route_type = "loop"
mt_prefix = "22"
TOML
}

# rss_kib PID -> the process's resident memory now, in KiB
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

# gauge URL NAME -> the value of gauge NAME in the Prometheus exposition at URL (0 when absent)
gauge() { curl -s "$1" | awk -v name="$2" '$1 == name { value = $2 } END { print value + 0 }'; }

# needs PACKAGES TOOL...: exits with what to install unless every TOOL is on the PATH.
needs() {
    local packages=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $packages)"; exit 1; }
    done
}

# start_bench: a work folder in $work (kept, and named, when KEEP is set; removed at exit
# otherwise), SIPp checked for, ringer built in release as $ringer. At exit every background
# job is killed outright and waited for: a ringer stopped gently would first hang up its calls
# through a core already gone, holding its ports for the next benchmark.
start_bench() {
    work=$(mktemp -d)
    [ -n "${KEEP:-}" ] && echo "work dir: $work"
    trap '{ kill -9 $(jobs -p) || true; wait || true; } 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
    needs sip-tester sipp
    # RINGER_BIN= measures another build (one saved from an earlier commit) instead.
    if [ -n "${RINGER_BIN:-}" ]; then
        ringer=$RINGER_BIN
    else
        cargo build --release --quiet
        ringer=$PWD/target/release/ringer
    fi
}

# wait_registered: waits until the loop configs' subscriber is registered at the core (the
# load would otherwise go straight from the core to Bob, past ringer); fails after 15 s.
wait_registered() {
    local tries=0
    until curl -s http://127.0.0.1:25094/registrations | grep -q '"state":"registered"'; do
        tries=$((tries + 1))
        [ $tries -lt 150 ] || { echo "the subscriber did not register with the emulated core in 15 s"; exit 1; }
        sleep 0.1
    done
}

# callgrind_instructions PID -> user-space instructions PID executed since its previous dump
# (a process run under valgrind's callgrind with --callgrind-out-file="$work/callgrind.%p").
callgrind_instructions() {
    callgrind_control --dump "$1" >/dev/null 2>&1
    # The dump just written is the newest file of this process.
    grep -h '^summary:' "$(ls -t "$work"/callgrind."$1".* | head -1)" | awk '{ print $2 }'
}
