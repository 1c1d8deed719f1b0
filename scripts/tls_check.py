#!/usr/bin/env python3
"""Black-box TLS checks against a running wss:// broadcast server (issue 21).

    tls_check.py --port PORT --dir DIR --pid PID [--ringcast --binary BIN] [--close-within S]
                 [--only wss,openssl,bad,chromium,reload,startup]

Run by scripts/check-tls.sh, which makes the test CA (DIR/ca.pem, DIR/cert.pem, DIR/key.pem
from scripts/tls-cert.sh), starts the server and stops it. Every check prints one
`PASS name: ...` or `FAIL name: ...` line (`SKIP` where it does not apply); exit 1 when any
FAILed. Without --ringcast (uWebSockets SSL, any other server) the checks that need ringcast's
interface (the chat page at /, ALPN, /metrics, SIGHUP reload, its exit codes) are skipped or
relaxed, and each line says so.

Checks: (wss) Python websockets over wss:// trusting DIR/ca.pem: broadcast to two clients,
TLS 1.2-only and 1.3-only clients, ALPN, no ALPN offered, an h2-only client, a client trusting another CA;
(openssl) s_client verifies and GET / through it; (bad) plaintext HTTP, garbage, a truncated
ClientHello, a stalled handshake, no ClientHello, a TLS 1.0 hello: each closed within
--close-within seconds, the server still serving, fds and gauges back to baseline, the
handshake counters; (chromium) headless Chromium loads https://.../ trusting the leaf's SPKI
and the chat page round-trips a message over wss://; (reload) SIGHUP picks up a new pair,
keeps open connections, keeps the old pair when the new key is broken;
ringcast_tls_cert_expiry_seconds is the served cert's notAfter; (startup) a missing key or a
mismatched pair stops ringcast with exit 2 naming the file.
"""
import argparse
import asyncio
import base64
import concurrent.futures
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings

import websockets
from websockets.asyncio.client import connect

warnings.filterwarnings("ignore", category=DeprecationWarning)

ARGS = None
FAILED = []
OK_RESULTS = {"ok", "success", "succeeded", "complete", "completed", "accepted", "established"}


def report(status, name, detail):
    print(f"{status} {name}: {detail}", flush=True)
    if status == "FAIL":
        FAILED.append(name)


def check(name, ok, detail):
    report("PASS" if ok else "FAIL", name, detail)
    return ok


# --- helpers ---------------------------------------------------------------------------------

def client_context(ca, version=None, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=ca)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def url(path):
    return f"wss://127.0.0.1:{ARGS.port}{path}"


async def recv_until(ws, wanted, timeout=5.0):
    """Reads messages until `wanted` arrives (others, e.g. server notices, are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            msg = await asyncio.wait_for(ws.recv(), left)
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            return False
        if msg == wanted:
            return True


async def round_trip(ctx, room=None):
    """One wss:// client: connect, send, read its own message back. Returns (ok, ssl object)."""
    room = room or f"rt-{random.getrandbits(32):08x}"
    async with connect(url(f"/ws/{room}"), ssl=ctx, open_timeout=5, close_timeout=1) as ws:
        text = f"hello {random.getrandbits(64):016x}"
        await ws.send(text)
        ok = await recv_until(ws, text)
        return ok, ws.transport.get_extra_info("ssl_object")


def still_serving():
    try:
        ok, _ = asyncio.run(round_trip(client_context(ARGS.ca)))
        return ok
    except Exception:
        return False


def raw_tls(ctx, timeout=5.0):
    """A TLS handshake on a plain socket; returns the SSLSocket (caller closes) or raises."""
    sock = socket.create_connection(("127.0.0.1", ARGS.port), timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    except BaseException:
        sock.close()
        raise


def client_hello(ctx):
    """The ClientHello bytes `ctx` would send (made in memory, nothing on the wire)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def https_get(path, ca=None, timeout=5.0):
    ctx = ssl.create_default_context(cafile=ca or ARGS.served_ca)
    with urllib.request.urlopen(f"https://127.0.0.1:{ARGS.port}{path}", context=ctx,
                                timeout=timeout) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def metrics():
    """/metrics over https: {name: {labels: value}}."""
    _, body = https_get("/metrics")
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
    return out


def metric_sum(snapshot, name):
    return sum(snapshot.get(name, {}).values())


def handshake_counts(snapshot):
    """ringcast_tls_handshakes_total by its result label."""
    counts = {}
    for name in ("ringcast_tls_handshakes_total", "ringcast_tls_handshakes"):
        for labels, value in snapshot.get(name, {}).items():
            m = re.search(r'result="([^"]*)"', labels)
            key = m.group(1) if m else labels
            counts[key] = counts.get(key, 0) + value
    return counts


def open_fds():
    return len(os.listdir(f"/proc/{ARGS.pid}/fd"))


def not_after(pem_path):
    """Unix time of the first certificate's notAfter in a PEM file (openssl x509 -enddate)."""
    out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", pem_path],
                         capture_output=True, text=True, check=True).stdout
    return int(ssl.cert_time_to_seconds(out.strip().split("=", 1)[1]))


def make_pair(directory, days):
    subprocess.run([ARGS.cert_script, directory, str(days)], check=True, stdout=subprocess.DEVNULL)


# --- 1. Python websockets over wss:// ----------------------------------------------------------

def check_wss():
    ca = ARGS.ca

    async def broadcast():
        room = f"tls-{random.getrandbits(32):08x}"
        ctx = client_context(ca)
        async with connect(url(f"/ws/{room}"), ssl=ctx, open_timeout=5) as a, \
                connect(url(f"/ws/{room}"), ssl=ctx, open_timeout=5) as b:
            await asyncio.sleep(0.2)
            text = f"broadcast {random.getrandbits(64):016x}"
            await a.send(text)
            got_a, got_b = await asyncio.gather(recv_until(a, text), recv_until(b, text))
            return got_a, got_b, a.transport.get_extra_info("ssl_object")

    try:
        got_a, got_b, obj = asyncio.run(broadcast())
        check("wss broadcast", got_a and got_b,
              f"sender received it: {got_a}, other client received it: {got_b} "
              f"({obj.version()}, {obj.cipher()[0]})")
        alpn = obj.selected_alpn_protocol()
        if ARGS.ringcast:
            check("wss alpn", alpn == "http/1.1", f"client offered http/1.1, negotiated {alpn!r}")
        else:
            check("wss alpn", alpn in ("http/1.1", None),
                  f"client offered http/1.1, negotiated {alpn!r} (not ringcast: none allowed)")
    except Exception as e:
        check("wss broadcast", False, f"{type(e).__name__}: {e}")

    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        try:
            ok, obj = asyncio.run(round_trip(client_context(ca, version)))
            check(f"wss {name}-only client", ok and obj.version() == name,
                  f"negotiated {obj.version()}, own message back: {ok}")
        except Exception as e:
            check(f"wss {name}-only client", False, f"{type(e).__name__}: {e}")

    # No ALPN offered at all (many clients send none): rustls then selects none and goes on.
    try:
        ok, obj = asyncio.run(round_trip(client_context(ca, alpn=())))
        check("wss client offering no ALPN", ok and obj.selected_alpn_protocol() is None,
              f"own message back: {ok}, ALPN {obj.selected_alpn_protocol()!r}")
    except Exception as e:
        check("wss client offering no ALPN", False, f"{type(e).__name__}: {e}")

    # h2 only: rustls with alpn_protocols=[http/1.1] fails the handshake with a
    # no_application_protocol alert (RFC 7301 3.2); a server without ALPN just ignores it.
    try:
        sock = raw_tls(client_context(ca, alpn=("h2",)))
        got = sock.selected_alpn_protocol()
        sock.close()
        if ARGS.ringcast:
            check("wss h2-only client", False, f"handshake succeeded, ALPN {got!r}; "
                  "expected a no_application_protocol alert")
        else:
            check("wss h2-only client", got is None, f"handshake succeeded with ALPN {got!r} "
                  "(not ringcast: no ALPN allowed, h2 is not)")
    except ssl.SSLError as e:
        # Refused for ALPN, not for anything else (a failed verification says nothing).
        # OpenSSL names the alert "no_application_protocol" or "no application protocol".
        alert = "NO_APPLICATION_PROTOCOL" in str(e).upper().replace(" ", "_")
        check("wss h2-only client", alert, f"refused: {e}")
    except OSError as e:
        check("wss h2-only client", False, f"{type(e).__name__}: {e}")

    # A client trusting another CA must not get through: verification is doing its job.
    try:
        sock = raw_tls(client_context(ARGS.other_ca))
        sock.close()
        check("wss other CA refused", False, "a client trusting an unrelated CA verified the server")
    except ssl.SSLCertVerificationError as e:
        check("wss other CA refused", True, f"{e.verify_message}")
    except Exception as e:
        check("wss other CA refused", False, f"unexpected {type(e).__name__}: {e}")


# --- 2. openssl s_client ------------------------------------------------------------------------

def check_openssl():
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        run = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{ARGS.port}", "-CAfile", ARGS.ca,
             "-alpn", "http/1.1", "-verify_ip", "127.0.0.1", "-verify_return_error", "-ign_eof"],
            input=request, capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        check("openssl s_client verify", False, "s_client did not finish within 15 s")
        return
    out = run.stdout.decode("utf-8", "replace")
    code = re.search(r"Verify return code: (\d+) \(([^)]*)\)", out)
    proto = re.search(r"Protocol\s*: (\S+)", out)
    alpn = re.search(r"ALPN protocol: (\S+)", out)
    check("openssl s_client verify", bool(code) and code.group(1) == "0",
          f"Verify return code: {code.group(1) + ' (' + code.group(2) + ')' if code else 'missing'}, "
          f"{proto.group(1) if proto else '?'}, ALPN {alpn.group(1) if alpn else 'none'}")
    if ARGS.ringcast:
        check("openssl s_client alpn", bool(alpn) and alpn.group(1) == "http/1.1",
              f"ALPN protocol: {alpn.group(1) if alpn else 'none negotiated'}")
    status = re.search(r"^HTTP/1\.1 (\d{3})", out, re.M)
    if ARGS.ringcast:
        page = "<title>" in out and 'id="messages"' in out
        check("openssl GET /", bool(status) and status.group(1) == "200" and page,
              f"status {status.group(1) if status else 'none'}, chat page in the body: {page}")
    else:
        check("openssl GET /", bool(status), f"an HTTP/1.1 answer through TLS: status "
              f"{status.group(1) if status else 'none'} (not ringcast: no chat page expected)")


# --- 3. bad input -------------------------------------------------------------------------------

def closed_within(payload, limit, read_handshake=False):
    """Sends `payload` on a fresh TCP connection and waits for the server to close it.
    Returns (seconds until EOF/reset or None when still open at `limit`, bytes received)."""
    start = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", ARGS.port), timeout=limit) as sock:
        if payload:
            sock.sendall(payload)
        while True:
            left = limit - (time.monotonic() - start)
            if left <= 0:
                return None, received
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return None, received
            except ConnectionResetError:
                return time.monotonic() - start, received
            if not chunk:
                return time.monotonic() - start, received
            received += chunk


def describe(received):
    if not received:
        return "nothing sent back"
    if received[0] == 0x15 and len(received) >= 7:
        return f"TLS alert {received[5]}/{received[6]}"
    if received[0] == 0x16:
        return f"{len(received)} bytes of TLS handshake"
    first = received.split(b"\r\n", 1)[0][:60]
    return f"{len(received)} bytes: {first!r}"


def check_bad_input():
    limit = ARGS.close_within
    baseline = {}
    if ARGS.ringcast:
        time.sleep(0.5)
        baseline = {"fds": open_fds(), "metrics": metrics()}

    tls13 = client_context(ARGS.ca)
    hello = client_hello(tls13)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1
    tls10_hello = client_hello(old)
    garbage = random.Random(21).randbytes(517)
    cases = [
        ("plaintext HTTP", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        ("garbage ClientHello", garbage),
        ("truncated ClientHello", hello[:40]),
        ("stalled handshake", hello),
        ("no ClientHello", b""),
        ("TLS 1.0 hello", tls10_hello),
    ]
    assert tls10_hello[9:11] == b"\x03\x01", "the TLS 1.0 hello is not TLS 1.0"
    # All at once (a slow server takes --close-within each): while they are open the server
    # must serve a good client, and once they are closed too.
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        futures = [pool.submit(closed_within, payload, limit) for _, payload in cases]
        time.sleep(0.5)
        serving_during = still_serving()
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except OSError as e:
                outcomes.append(e)
    serving_after = still_serving()
    for (name, _), outcome in zip(cases, outcomes):
        if isinstance(outcome, OSError):
            check(f"bad input: {name}", False, f"{type(outcome).__name__}: {outcome}")
            continue
        took, received = outcome
        check(f"bad input: {name}", took is not None,
              (f"closed after {took:.2f} s" if took is not None else f"still open after {limit} s")
              + f" ({describe(received)})")
    check("bad input: server serving while they were open", serving_during,
          "a wss:// client round-tripped a message" if serving_during else "a wss:// client failed")
    check("bad input: server serving afterwards", serving_after,
          "a wss:// client round-tripped a message" if serving_after else "a wss:// client failed")

    # A real TLS 1.0-only client must be refused.
    try:
        sock = raw_tls(old)
        version = sock.version()
        sock.close()
        check("bad input: TLS 1.0 client refused", False, f"handshake succeeded with {version}")
    except ssl.SSLError as e:
        check("bad input: TLS 1.0 client refused", True, f"{e.reason or e}")
    except ConnectionRefusedError as e:
        check("bad input: TLS 1.0 client refused", False, f"no server: {e}")
    except OSError as e:
        check("bad input: TLS 1.0 client refused", True, f"{type(e).__name__}: {e}")

    if not ARGS.ringcast:
        report("SKIP", "bad input: fds, gauges, handshake counters", "ringcast only")
        return
    # Back to baseline: fds of the process, the connection gauge, open fds in /metrics.
    deadline = time.monotonic() + 5
    while True:
        fds, after = open_fds(), metrics()
        same = (fds == baseline["fds"]
                and metric_sum(after, "ringcast_connections") == metric_sum(baseline["metrics"], "ringcast_connections")
                and metric_sum(after, "process_open_fds") == metric_sum(baseline["metrics"], "process_open_fds"))
        if same or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    check("bad input: fds back to baseline", fds == baseline["fds"],
          f"/proc/{ARGS.pid}/fd: {baseline['fds']} before, {fds} after")
    for name in ("ringcast_connections", "process_open_fds", "ringcast_queued_bytes"):
        if name not in baseline["metrics"]:
            check(f"bad input: {name} back to baseline", False, "not in /metrics")
            continue
        b, a = metric_sum(baseline["metrics"], name), metric_sum(after, name)
        check(f"bad input: {name} back to baseline", a == b, f"{b:g} before, {a:g} after")
    before, now = handshake_counts(baseline["metrics"]), handshake_counts(after)
    if not now:
        check("bad input: ringcast_tls_handshakes_total", False, "not in /metrics")
        return
    delta = {k: now.get(k, 0) - before.get(k, 0) for k in now}
    failed = sum(v for k, v in delta.items() if k not in OK_RESULTS)
    good = sum(v for k, v in delta.items() if k in OK_RESULTS)
    # Failures: every case that sent bytes and the TLS 1.0 client (the one that sent nothing
    # may or may not count); successes: the two still-serving clients.
    wanted = sum(1 for _, payload in cases if payload) + 1
    check("bad input: ringcast_tls_handshakes_total", failed >= wanted and good >= 2,
          f"by result since the baseline: {delta} (wanted >= {wanted} not ok, >= 2 ok; "
          f"ok results: {sorted(OK_RESULTS)})")


# --- 4. Chromium --------------------------------------------------------------------------------

def spki_hash(cert_pem):
    """base64(sha256(SubjectPublicKeyInfo)) of the first certificate in cert_pem."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_pem, "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class Chromium:
    """Headless Chromium driven over the DevTools protocol (as scripts/check_chat_page_chromium.py
    on the chromium-check branch does), on a free debugging port, with its own profile."""

    def __init__(self, extra_flags):
        self.profile = tempfile.mkdtemp(prefix="tls-check-chromium-")
        self.proc = subprocess.Popen(
            [ARGS.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             *extra_flags, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.events = []
        self.ids = iter(range(1, 1_000_000))

    async def open(self):
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            await asyncio.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        for _ in range(100):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                page = next(t for t in targets if t["type"] == "page")
                break
            except Exception:
                await asyncio.sleep(0.1)
        self.cdp = await websockets.connect(page["webSocketDebuggerUrl"], max_size=None)
        await self.call("Network.enable")
        await self.call("Page.enable")
        await self.call("Runtime.enable")

    async def call(self, method, **params):
        my = next(self.ids)
        await self.cdp.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.cdp.recv(), 20))
            if msg.get("id") == my:
                return msg.get("result", msg.get("error"))
            self.events.append(msg)

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        return result.get("result", {}).get("value")

    async def close(self):
        try:
            await self.cdp.close()
        except Exception:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the browser and its helpers
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


async def chromium_run(trust):
    """Loads https://127.0.0.1:PORT/#room; returns what was seen."""
    room = f"chromium-{random.getrandbits(32):08x}"
    flags = [f"--ignore-certificate-errors-spki-list={spki_hash(ARGS.cert)}"] if trust else []
    browser = Chromium(flags)
    seen = {}
    try:
        await browser.open()
        nav = await browser.call("Page.navigate", url=f"https://127.0.0.1:{ARGS.port}/#{room}")
        seen["navigate_error"] = nav.get("errorText")
        if seen["navigate_error"]:
            return seen
        await asyncio.sleep(1.5)
        responses = [e["params"]["response"] for e in browser.events
                     if e.get("method") == "Network.responseReceived"
                     and e["params"]["response"]["url"].startswith(f"https://127.0.0.1:{ARGS.port}/")]
        seen["status"] = responses[0]["status"] if responses else None
        seen["protocol"] = (responses[0].get("securityDetails") or {}).get("protocol") if responses else None
        text = f"from chromium {random.getrandbits(32):08x}"
        python_text = f"from python {random.getrandbits(32):08x}"
        ctx = client_context(ARGS.ca)
        async with connect(url(f"/ws/{room}"), ssl=ctx, open_timeout=5) as peer:
            if ARGS.ringcast:
                # The page's own WebSocket: it connected on load; wait for it to be open.
                seen["page_state"] = await browser.evaluate("""new Promise(done => {
                    const t0 = Date.now();
                    (function poll() {
                        const s = document.getElementById('status');
                        if (s && s.dataset.state === 'open') return done('open');
                        if (Date.now() - t0 > 8000) return done(s ? s.dataset.state : 'no page');
                        setTimeout(poll, 100);
                    })();
                })""")
                seen["ws_urls"] = [e["params"]["url"] for e in browser.events
                                   if e.get("method") == "Network.webSocketCreated"]
                await browser.evaluate(f"""(() => {{
                    document.getElementById('text').value = {json.dumps(text)};
                    document.getElementById('send').requestSubmit();
                }})()""")
                # The page sends {"name": ..., "text": ...}: read until one carries our text.
                deadline = time.monotonic() + 5
                got = False
                while not got and time.monotonic() < deadline:
                    try:
                        msg = await asyncio.wait_for(peer.recv(), deadline - time.monotonic())
                    except (asyncio.TimeoutError, websockets.ConnectionClosed):
                        break
                    try:
                        got = json.loads(msg).get("text") == text
                    except (ValueError, AttributeError):
                        pass
                seen["peer_got_page_message"] = got
                await peer.send(json.dumps({"name": "python", "text": python_text}))
                seen["page_shows"] = await browser.evaluate(f"""new Promise(done => {{
                    const t0 = Date.now();
                    (function poll() {{
                        const lines = [...document.querySelectorAll('#messages li')].map(li => li.textContent);
                        const mine = lines.some(l => l.includes({json.dumps(text)}));
                        const theirs = lines.some(l => l.includes({json.dumps(python_text)}));
                        if ((mine && theirs) || Date.now() - t0 > 5000) return done([mine, theirs]);
                        setTimeout(poll, 100);
                    }})();
                }})""")
            else:
                # No chat page: a WebSocket made in the https page round-trips over wss://.
                seen["page_roundtrip"] = await browser.evaluate(f"""new Promise(done => {{
                    const ws = new WebSocket('wss://127.0.0.1:{ARGS.port}/ws/{room}');
                    ws.onopen = () => ws.send({json.dumps(text)});
                    ws.onmessage = e => {{ if (e.data === {json.dumps(text)}) done(true); }};
                    ws.onerror = () => done(false);
                    setTimeout(() => done(false), 5000);
                }})""")
                seen["peer_got_page_message"] = await recv_until(peer, text)
                seen["ws_urls"] = [e["params"]["url"] for e in browser.events
                                   if e.get("method") == "Network.webSocketCreated"]
        return seen
    finally:
        await browser.close()


def check_chromium():
    if not ARGS.chromium:
        check("chromium", False, "chromium not found")
        return
    try:
        seen = asyncio.run(chromium_run(trust=False))
        err = seen.get("navigate_error")
        check("chromium untrusted cert refused", bool(err) and "CERT" in err.upper(),
              f"without the SPKI flag: {err or 'loaded (it should not)'}")
    except Exception as e:
        check("chromium untrusted cert refused", False, f"{type(e).__name__}: {e}")
    try:
        seen = asyncio.run(chromium_run(trust=True))
    except Exception as e:
        check("chromium https page", False, f"{type(e).__name__}: {e}")
        return
    if seen.get("navigate_error"):
        check("chromium https page", False, f"navigation failed: {seen['navigate_error']}")
        return
    wss = bool(seen["ws_urls"]) and all(u.startswith("wss://") for u in seen["ws_urls"])
    if ARGS.ringcast:
        check("chromium https page", seen["status"] == 200,
              f"status {seen['status']} over {seen['protocol']}")
        check("chromium page websocket is wss://", wss and seen.get("page_state") == "open",
              f"page WebSockets {seen['ws_urls']}, page state {seen.get('page_state')}")
        mine, theirs = seen.get("page_shows") or [False, False]
        check("chromium chat round-trip", seen["peer_got_page_message"] and mine and theirs,
              f"page's message reached a Python client: {seen['peer_got_page_message']}, "
              f"page shows its own message: {mine}, shows the Python client's: {theirs}")
    else:
        check("chromium https page", seen["status"] is not None,
              f"loaded over {seen['protocol']}, status {seen['status']} (not ringcast: no chat page)")
        check("chromium wss round-trip", wss and seen["page_roundtrip"] and seen["peer_got_page_message"],
              f"page-made WebSocket {seen['ws_urls']} got its message back: {seen['page_roundtrip']}, "
              f"a Python client in the room got it: {seen['peer_got_page_message']}")


# --- 5. reload ----------------------------------------------------------------------------------

def expiry_metric():
    snapshot = metrics()
    if "ringcast_tls_cert_expiry_seconds" not in snapshot:
        return None
    return max(snapshot["ringcast_tls_cert_expiry_seconds"].values())


def check_expiry(name, pem):
    try:
        value = expiry_metric()
    except Exception as e:
        check(name, False, f"/metrics: {type(e).__name__}: {e}")
        return
    want = not_after(pem)
    if value is None:
        check(name, False, "ringcast_tls_cert_expiry_seconds not in /metrics")
    else:
        hint = ""
        if abs(value - (want - time.time())) < 120:
            hint = " (looks like seconds left, not the notAfter timestamp)"
        check(name, abs(value - want) <= 1,
              f"ringcast_tls_cert_expiry_seconds {value:.0f}, notAfter of the served leaf {want}{hint}")


def handshake_ok(ca):
    try:
        sock = raw_tls(client_context(ca))
        sock.close()
        return True
    except (ssl.SSLError, OSError):
        return False


def check_reload():
    if not ARGS.ringcast:
        report("SKIP", "reload", "ringcast only (SIGHUP)")
        return
    check_expiry("expiry metric before reload", ARGS.cert)
    work = tempfile.mkdtemp(prefix="tls-check-reload-")
    new_dir = os.path.join(work, "second")
    make_pair(new_dir, 7)  # another CA, another notAfter (7 days, not 30)
    new_ca = os.path.join(new_dir, "ca.pem")

    results = {}  # step: ok, filled as the scenario goes (an exception ends it)

    async def scenario():
        room = f"reload-{random.getrandbits(32):08x}"
        async with connect(url(f"/ws/{room}"), ssl=client_context(ARGS.ca), open_timeout=5) as old:
            text = "before reload"
            await old.send(text)
            results["receiving before"] = await recv_until(old, text)
            shutil.copyfile(os.path.join(new_dir, "cert.pem"), ARGS.cert)
            shutil.copyfile(os.path.join(new_dir, "key.pem"), ARGS.key)
            os.kill(ARGS.pid, signal.SIGHUP)
            ARGS.served_ca = new_ca  # /metrics from now on
            deadline = time.monotonic() + 5
            while not handshake_ok(new_ca) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            results["new CA after reload"] = handshake_ok(new_ca)
            results["old CA refused after reload"] = not handshake_ok(ARGS.ca)
            async with connect(url(f"/ws/{room}"), ssl=client_context(new_ca), open_timeout=5) as new:
                text = "after reload"
                await new.send(text)
                results["open connection still receives"] = await recv_until(old, text)
                results["new connection receives"] = await recv_until(new, text)
            # Broken key: the old (second) pair stays.
            with open(ARGS.key, "w") as f:
                f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
            os.kill(ARGS.pid, signal.SIGHUP)
            await asyncio.sleep(1)
            results["alive after broken reload"] = os.path.exists(f"/proc/{ARGS.pid}") and \
                ARGS.pid_alive()
            results["new CA after broken reload"] = handshake_ok(new_ca)
            async with connect(url(f"/ws/{room}"), ssl=client_context(new_ca), open_timeout=5) as new:
                text = "after broken reload"
                await new.send(text)
                results["open connection receives after broken reload"] = await recv_until(old, text)

    try:
        asyncio.run(scenario())
    except Exception as e:
        for name, ok in results.items():
            check(f"reload: {name}", ok, "yes" if ok else "no")
        check("reload", False, f"stopped after {list(results)[-1:] or 'the start'}: "
              f"{type(e).__name__}: {e}")
        return
    else:
        for name, ok in results.items():
            check(f"reload: {name}", ok, "yes" if ok else "no")
        check_expiry("expiry metric after reload and broken reload (second pair)",
                     os.path.join(new_dir, "cert.pem"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- 6. startup errors (ringcast only) ----------------------------------------------------------

def check_startup():
    if not ARGS.ringcast or not ARGS.binary:
        report("SKIP", "startup errors", "ringcast only")
        return
    work = tempfile.mkdtemp(prefix="tls-check-start-")
    other = os.path.join(work, "other")
    make_pair(other, 30)
    missing = os.path.join(work, "missing-key.pem")
    other_key = os.path.join(other, "key.pem")
    # Each must exit 2 and name the file (the mismatch: the cert or the key).
    cases = [
        ("missing key", [ARGS.cert_copy, missing], [missing]),
        ("mismatched pair", [ARGS.cert_copy, other_key], [ARGS.cert_copy, other_key]),
    ]
    for name, (cert, key), names in cases:
        try:
            run = subprocess.run([ARGS.binary, "--listen", "127.0.0.1:0", "--tls-cert", cert,
                                  "--tls-key", key], capture_output=True, text=True, timeout=10)
            err = run.stderr.strip().splitlines()
            last = err[-1] if err else ""
            named = any(path in run.stderr for path in names)
            check(f"startup: {name}", run.returncode == 2 and named,
                  f"exit {run.returncode}, stderr: {last[:160]!r}")
        except subprocess.TimeoutExpired:
            check(f"startup: {name}", False, "still running after 10 s (it should refuse to start)")
    shutil.rmtree(work, ignore_errors=True)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="scripts/tls-cert.sh output (served files)")
    parser.add_argument("--pid", type=int, required=True, help="the server's PID")
    parser.add_argument("--ringcast", action="store_true", help="the server is ringcast")
    parser.add_argument("--binary", help="ringcast binary (startup checks)")
    parser.add_argument("--close-within", type=float, default=5.0)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--cert-script", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls-cert.sh"))
    parser.add_argument("--only", default="wss,openssl,bad,chromium,reload,startup")
    ARGS = parser.parse_args()
    ARGS.ca = os.path.join(ARGS.dir, "ca.pem")
    ARGS.cert = os.path.join(ARGS.dir, "cert.pem")
    ARGS.key = os.path.join(ARGS.dir, "key.pem")
    ARGS.served_ca = ARGS.ca  # the CA of the pair served now (reload changes it)
    ARGS.pid_alive = lambda: subprocess.run(["kill", "-0", str(ARGS.pid)]).returncode == 0
    scratch = tempfile.mkdtemp(prefix="tls-check-")
    make_pair(os.path.join(scratch, "other"), 30)
    ARGS.other_ca = os.path.join(scratch, "other", "ca.pem")
    ARGS.cert_copy = os.path.join(scratch, "cert.pem")
    shutil.copyfile(ARGS.cert, ARGS.cert_copy)  # the first pair, before reload rewrites it
    steps = {"wss": check_wss, "openssl": check_openssl, "bad": check_bad_input,
             "chromium": check_chromium, "reload": check_reload, "startup": check_startup}
    try:
        for name in ARGS.only.split(","):
            steps[name]()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if FAILED:
        print(f"tls checks: {len(FAILED)} FAILED: {', '.join(FAILED)}")
        return 1
    print("tls checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
