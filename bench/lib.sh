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
