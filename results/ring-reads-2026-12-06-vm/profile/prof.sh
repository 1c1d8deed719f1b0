#!/bin/bash
# usage: prof.sh BIN OUT SCENARIO-ARGS...
BIN=$1; OUT=$2; shift 2
taskset -c 1 $BIN --listen 127.0.0.1:8097 --cores 1 > /dev/null 2>&1 &
sleep 1; PID=$(pgrep -f "listen 127.0.0.1:8097")
taskset -c 0 /work/main/target/release/loadgen run --url ws://127.0.0.1:8097/ws/bench "$@" --connect-rate 5000 --warmup 5 --duration 12 --threads 1 --out /tmp/prof-lg > /dev/null 2>&1 &
LG=$!
sleep 8; perf record -F 1999 -g -p $PID -o $OUT -- sleep 6 > /dev/null 2>&1
wait $LG; kill $PID; wait
