#!/bin/bash
OUT=$1; shift
taskset -c 1 /work/shared/peers/uws/run.sh 8097 > /tmp/uws-prof.log 2>&1 &
for i in $(seq 1 100); do PID=$(ss -ltnpH 'sport = :8097' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2); [ -n "$PID" ] && break; sleep 0.3; done
taskset -c 0 /work/main/target/release/loadgen run --url ws://127.0.0.1:8097/ws/bench "$@" --connect-rate 5000 --warmup 5 --duration 12 --threads 1 --out /tmp/prof-lg > /dev/null 2>&1 &
LG=$!
sleep 8; perf record -F 1999 -g -p $PID -o $OUT -- sleep 6 > /dev/null 2>&1
wait $LG; kill $PID; wait
