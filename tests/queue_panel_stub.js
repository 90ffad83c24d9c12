// Runs bliss_lite/view/static/queue.js against a minimal DOM and fetch, for tests/test_queue_http.py:
// prints JSON {texts, rows, posts} after one poll and a click on "pause".
"use strict";
const fs = require("fs");
const elements = {};
function element(id) {
  if (!elements[id]) {
    const children = [];
    elements[id] = {
      id, textContent: "", hidden: true, className: "", dataset: {}, children, onclick: null,
      appendChild(child) { children.push(child); child.parent = this; },
      get lastChild() { const c = children[children.length - 1]; return c && { remove: () => children.pop() }; },
    };
  }
  return elements[id];
}
const posts = [];
const state = { session: "test", status: { mode: "running", holding: false, server: "h:1" },
  items: [{ id: "a", command: "ct(0.1)", state: "done", scan: 3, error: null, points: 1, expected: 1 },
          { id: "b", command: "<img src=x onerror=alert(1)>", state: "running", scan: 4, error: null, points: 12, expected: 200 },
          { id: "c", command: "timescan(0.1)", state: "running", scan: 5, error: null, points: 7, expected: null },
          { id: "d", command: "ct(0.2)", state: "queued", scan: null, error: null, points: null, expected: null }] };
global.window = {};
global.document = { getElementById: element, createElement: () => ({ textContent: "", className: "", dataset: {} }), hidden: false };
global.location = { search: "" };
global.setInterval = () => 0;
global.fetch = async (url, options) => {
  if (options && options.method === "POST") { posts.push({ url, type: options.headers["Content-Type"], body: options.body }); }
  const body = url === "/api/queues" ? { sessions: ["test"] } : (options ? {} : state);
  return { ok: true, json: async () => body };
};
eval(fs.readFileSync(process.argv[2], "utf8"));  // the page script, in this stubbed page
setTimeout(async () => {
  await element("queue-pause").onclick();
  await new Promise((r) => setTimeout(r, 50));
  const rows = element("queue-items").children.map((li) => ({ text: li.textContent, cls: li.className, id: li.dataset.id }));
  console.log(JSON.stringify({ mode: element("queue-mode").textContent, hidden: element("queue-panel").hidden,
                               session: element("queue-session").textContent, rows, posts }));
}, 50);
