#!/bin/bash
# usage: prof.sh BIN NAME  (a release loadgen built in this repo; writes /tmp/perf-NAME.{data,txt})
BIN=$1; NAME=$2; PORT=8190
taskset -c 1 $BIN --cores 1 --listen 127.0.0.1:$PORT >/tmp/prof-$NAME.log 2>&1 &
SP=$!
sleep 1
taskset -c 0 "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)/target/release/loadgen" run --url ws://127.0.0.1:$PORT/ws --subscribers 5000 --publishers 1 --rate 20 --size 64 --connect-rate 5000 --warmup 5s --duration 15s --src 127.0.0.1-127.0.0.8 --threads 1 >/tmp/prof-$NAME.lg 2>&1 &
LP=$!
sleep 9
perf record -g -p $SP -o /tmp/perf-$NAME.data -- sleep 8 >/dev/null 2>&1
wait $LP
kill $SP; wait $SP 2>/dev/null
perf report -i /tmp/perf-$NAME.data --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E "^ +[0-9]" > /tmp/perf-$NAME.txt
