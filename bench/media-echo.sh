#!/usr/bin/env bash
# Media benchmark: N concurrent WebRTC echo calls (ICE, DTLS-SRTP) against `ringer serve`, held
# for a while; prints calls held without timeout under 1% loss, ringer's CPU and memory per call,
# and setup times. CALLS="50 100 200" HOLD=30s CODEC=PCMA|OPUS bench/media-echo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${CALLS:-50 100 200}"
exec cargo bench --bench media_echo -- --calls "${calls// /,}" --hold "${HOLD:-30s}" --codec "${CODEC:-PCMA}"
