#!/usr/bin/env python3
"""Per-second sampler for scripts/soak.sh (Python 3 standard library only).

Every second (on a fixed schedule anchored at --t0, so a slow sample never shifts the later
ones) appends one row to the CSV:

    t_s,rss_kib,fds,connections,queued_bytes,slow_consumer_closes,messages_in

t_s is seconds since --t0 (a Unix time, the server's start in soak.sh); rss_kib is VmRSS from
/proc/PID/status; fds the entries of /proc/PID/fd; the rest are ringcast's /metrics gauges and
counters summed over cores (ringcast_connections, ringcast_queued_bytes,
ringcast_slow_consumer_closes_total, ringcast_messages_in_total). A value that could not be
read (a scrape timing out on a saturated core) is left empty rather than guessed. Stops when
the process is gone or on SIGTERM/SIGINT; each row is flushed as it is written.
"""

import argparse
import http.client
import os
import signal
import sys
import time

METRICS = {
    "ringcast_connections": "connections",
    "ringcast_queued_bytes": "queued_bytes",
    "ringcast_slow_consumer_closes_total": "slow_consumer_closes",
    "ringcast_messages_in_total": "messages_in",
}
COLUMNS = ["t_s", "rss_kib", "fds", "connections", "queued_bytes", "slow_consumer_closes", "messages_in"]

stopping = False


def on_signal(_signum, _frame):
    global stopping
    stopping = True


def rss_kib(pid):
    """VmRSS in KiB, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def scrape(port, timeout):
    """The soak's metrics summed over cores, or {} when the scrape failed."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        conn.close()
        if response.status != 200:
            return {}
    except (OSError, http.client.HTTPException):
        return {}
    values = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in METRICS:
            continue
        try:
            value = int(float(line.rsplit(" ", 1)[1]))
        except (IndexError, ValueError):
            continue
        key = METRICS[name]
        values[key] = values.get(key, 0) + value
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, required=True, help="server PID")
    parser.add_argument("--port", type=int, required=True, help="server port (GET /metrics)")
    parser.add_argument("--t0", type=float, required=True, help="Unix time that is t_s = 0")
    parser.add_argument("--out", required=True, help="CSV to append to (header written if new)")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    new = not os.path.exists(args.out) or os.path.getsize(args.out) == 0
    with open(args.out, "a", buffering=1) as out:
        if new:
            out.write(",".join(COLUMNS) + "\n")
        # First tick: the next whole interval after t0 that is not in the past.
        tick = max(0, int((time.time() - args.t0) / args.interval) + 1)
        while not stopping:
            due = args.t0 + tick * args.interval
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
                if stopping:
                    break
            t_s = time.time() - args.t0
            rss = rss_kib(args.pid)
            if rss is None:
                break  # the server is gone
            fds = fd_count(args.pid)
            metrics = scrape(args.port, timeout=max(0.2, args.interval * 0.8))
            row = [f"{t_s:.2f}", str(rss), "" if fds is None else str(fds)]
            row += [str(metrics.get(key, "")) for key in COLUMNS[3:]]
            out.write(",".join(row) + "\n")
            # Skip ticks a slow sample overran instead of bunching them up.
            tick = max(tick + 1, int((time.time() - args.t0) / args.interval) + 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
