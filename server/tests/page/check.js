// Loads ringcast's chat page in jsdom with a real WebSocket (npm ws) against a ringcast it
// starts, and checks: it joins with ?history=50 and shows the kept messages; when its
// connection drops it reconnects by itself with ?since= its last position and shows what it
// missed, once; after a server restart (history lost) it is told reset and shows the
// "some messages may be missing" line.
// With --deflate on (npm ws offers permessage-deflate): a long message round-trips compressed.
// Usage: node check.js PORT RINGCAST_BINARY
const { JSDOM } = require("jsdom");
const WebSocket = require("ws");
const { spawn } = require("child_process");
const [port, binary] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const sockets = [];
class TrackedWebSocket extends WebSocket {
  constructor(url) { super(url); sockets.push(this); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
  return cond();
}
// --deflate on: npm ws offers permessage-deflate as browsers do; the page must keep working.
const start = () => spawn(binary, ["--listen", `127.0.0.1:${port}`, "--cores", "2", "--deflate", "on"], { stdio: "ignore" });
async function publisher() {
  for (;;) {
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/pagetest`);
      await new Promise((ok, fail) => { ws.on("open", ok); ws.on("error", fail); });
      return ws;
    } catch (_) { await sleep(50); }
  }
}
const say = (ws, text) => ws.send(JSON.stringify({ name: "bob", text }));
let failed = false;
function check(ok, what) {
  if (!ok) { failed = true; console.log("   FAILED: " + what); }
}
(async () => {
  let server = start();
  const pub = await publisher();
  const html = await (await fetch(base + "/")).text();
  for (let i = 1; i <= 3; i++) say(pub, "before " + i);
  await sleep(200);
  const dom = new JSDOM(html, {
    url: base + "/#pagetest", runScripts: "dangerously", pretendToBeVisual: true,
    beforeParse(window) { window.WebSocket = TrackedWebSocket; },
  });
  const texts = () => [...dom.window.document.querySelectorAll("#messages li")].map((li) => li.textContent);
  const shown = (word) => texts().filter((t) => t.includes(word)).length;
  await waitFor(() => shown("before 3") === 1);
  console.log("1. joined with", sockets[0].url, "- history shown:", shown("before"), "of 3");
  // A long message: the publisher (npm ws) compresses it (over its 1 KiB threshold), the
  // server inflates it and compresses it once for the page.
  const long = "long " + "the quick brown fox jumps over the lazy dog ".repeat(40);
  say(pub, long);
  await waitFor(() => texts().some((t) => t.includes(long)));
  console.log("   negotiated:", JSON.stringify(sockets[0].extensions), "- long message shown:", texts().some((t) => t.includes(long)));
  check(sockets[0].extensions.startsWith("permessage-deflate") && pub.extensions.startsWith("permessage-deflate"),
    "permessage-deflate negotiated by the page's and the publisher's sockets");
  check(texts().some((t) => t.includes(long)), "a compressed message round-trips to the page");
  say(pub, "live 1");
  await waitFor(() => shown("live 1") === 1);
  // The network drops the page's connection (no close frame): it comes back by itself.
  sockets[0]._socket.destroy();
  await sleep(100);
  say(pub, "away 1");
  say(pub, "away 2");
  await waitFor(() => sockets.length === 2 && sockets[1].readyState === 1);
  say(pub, "live 2");
  await waitFor(() => shown("live 2") === 1);
  console.log("2. reconnected with", sockets[1].url);
  console.log("   shown: live 1 x" + shown("live 1"), "away x" + shown("away"), "of 2, live 2 x" + shown("live 2"), "; missing-line x" + shown("may be missing"));
  check(sockets[0].url.endsWith("?history=50"), "joins with ?history=50");
  check(/\?since=[0-9a-f]+%3A5$/.test(sockets[1].url), "comes back with ?since= after offset 5 (3 before, the long one, live 1)");
  check(shown("before") === 3 && shown("live 1") === 1 && shown("away") === 2 && shown("live 2") === 1,
    "every message shown once, what was missed included");
  check(shown("may be missing") === 0, "no missing-line after a recovery");
  // A restart loses the history: the page comes back with its old position, is told reset.
  server.kill();
  await new Promise((r) => server.on("exit", r));
  server = start();
  await waitFor(() => shown("may be missing") === 1, 20000);
  console.log("3. after a restart, reconnected with", sockets[sockets.length - 1].url, "- missing-line x" + shown("may be missing"));
  check(shown("may be missing") === 1, "a reset shows the missing-line");
  server.kill();
  console.log(failed ? "chat page: FAILED" : "chat page: ok");
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
