// bliss-lite live view: the queue panel. Polls /api/queue/SESSION once a second (the queue
// changes at human pace) and sends pause/resume/stop/abort as JSON POSTs. Every string from
// the queue (commands, errors) is written as text, never as HTML.
"use strict";

const queueView = window.blissQueue = { session: null, items: [], status: null, error: null };

function queueText(id, text) { const e = document.getElementById(id); if (e.textContent !== text) e.textContent = text; }

async function queueAsk(op) {
  if (!queueView.session) return;
  try {
    const reply = await fetch("/api/queue/" + encodeURIComponent(queueView.session) + "/" + op,
                              { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    const answer = await reply.json();
    queueView.error = reply.ok ? null : answer.error;
  } catch (e) {
    queueView.error = String(e);
  }
  queuePoll();
}

function queueProgress(item) {  // " 12/200 points" of the item's scan, "" before it has one
  const known = (n) => typeof n === "number" && isFinite(n);
  if (!known(item.points)) return "";
  return " " + item.points + (known(item.expected) ? "/" + item.expected : "") + " points";
}

function queueDraw() {
  const status = queueView.status || {};
  queueText("queue-session", queueView.session || "");
  queueText("queue-mode", (status.mode || "") + (status.holding ? ", holding" : "") +
            (status.server ? "" : " (no server)"));
  queueText("queue-error", queueView.error || "");
  const list = document.getElementById("queue-items");
  const rows = queueView.items.slice(-12);  // the newest history and what is queued: a glance, not an archive
  while (list.children.length > rows.length) list.lastChild.remove();
  rows.forEach((item, i) => {
    let li = list.children[i];
    if (!li) { li = document.createElement("li"); list.appendChild(li); }
    const scan = item.scan === null || item.scan === undefined ? "" : " #" + item.scan;
    const text = item.state + scan + queueProgress(item) + "  " + item.command + (item.error ? "  (" + item.error + ")" : "");
    if (li.textContent !== text) li.textContent = text;
    li.className = "queue-" + item.state;
    li.dataset.id = item.id;
  });
}

async function queuePoll() {
  try {
    if (!queueView.session) {
      const found = await (await fetch("/api/queues")).json();
      queueView.session = new URLSearchParams(location.search).get("queue") || found.sessions[0] || null;
    }
    if (queueView.session) {
      const state = await (await fetch("/api/queue/" + encodeURIComponent(queueView.session))).json();
      queueView.items = state.items || [];
      queueView.status = state.status || null;
    }
    document.getElementById("queue-panel").hidden = !queueView.session;
  } catch (e) {
    queueView.error = String(e);
  }
  queueDraw();
}

for (const op of ["pause", "resume", "stop", "abort"]) {
  document.getElementById("queue-" + op).onclick = () => queueAsk(op);
}
queuePoll();
setInterval(() => { if (!document.hidden) queuePoll(); }, 1000);
