// Agora's dashboard: plain JS, no dependency, served by the node (crates/node/src/dashboard.rs).
// It reads the node only through its JSON-RPC (POST /) and the agora_subscribeNewHeads
// WebSocket subscription, like any other client (docs/rpc.md).
"use strict";

const TOKEN = 1e9; // base units per token
const PAGE_SIZE = 50; // table rows per page; the node sorts and pages (agora_neurons)
const LAST_BLOCKS = 20;

// ---- JSON-RPC over HTTP ----------------------------------------------------------------
let nextId = 1;

class RpcError extends Error {
  constructor(e) {
    super(e.message);
    this.code = e.code;
    this.data = e.data;
  }
}

async function rpc(method, params = []) {
  const r = await fetch("/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  const body = await r.json();
  if (body.error) throw new RpcError(body.error);
  return body.result;
}

// Several calls in one request (the node answers batches of up to 32); results in call order,
// an error object where a call failed.
async function rpcBatch(calls) {
  if (calls.length === 0) return [];
  const first = nextId;
  nextId += calls.length;
  const r = await fetch("/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(calls.map(([method, params], i) => ({ jsonrpc: "2.0", id: first + i, method, params }))),
  });
  const body = await r.json();
  const byId = new Map(body.map((x) => [x.id, x]));
  return calls.map((_, i) => {
    const x = byId.get(first + i);
    return x && !x.error ? x.result : new RpcError(x ? x.error : { message: "no answer" });
  });
}

// ---- new heads over the WebSocket ------------------------------------------------------
const headListeners = new Set();
let lastHead = null;

function connectHeads() {
  const live = document.getElementById("live");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/`);
  ws.onopen = () => ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "agora_subscribeNewHeads", params: [] }));
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.id === 1 && msg.result !== undefined) {
      live.textContent = "live";
      live.className = "live on";
    } else if (msg.method === "agora_newHead") {
      lastHead = msg.params.result;
      live.textContent = `live · block ${lastHead.height}`;
      for (const f of headListeners) f(lastHead);
    }
  };
  ws.onclose = () => {
    live.textContent = "reconnecting";
    live.className = "live";
    setTimeout(connectHeads, 2000);
  };
}

// ---- formatting ------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const tokens = (base) => (Number(base) / TOKEN).toLocaleString("en-US", { maximumFractionDigits: 4 });
const score = (x) => Number(x).toFixed(4);
const short = (hex) => (hex && hex.length > 16 ? `${hex.slice(0, 8)}…${hex.slice(-6)}` : hex);
const endpoint = (e) => (e ? `${e.ip}:${e.port}` : "-");
const ago = (ms) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
};

function stat(label, value, id) {
  return el("div", { class: "stat" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

function errorBox(e) {
  return el("div", { class: "error", id: "error" }, e instanceof RpcError ? `${e.message} (code ${e.code})` : String(e));
}

// ---- network page ----------------------------------------------------------------------
// The metagraph table's columns: header, agora_neurons sort key (null: not sortable), cell.
const COLUMNS = [
  ["uid", "uid", (n) => el("a", { href: `#/neuron/${n.uid}` }, n.uid)],
  ["hotkey", null, (n) => el("span", { title: n.hotkey, class: "mono" }, short(n.hotkey))],
  ["stake", "stake", (n) => tokens(n.stake)],
  ["R", "rank", (n) => score(n.scores.rank)],
  ["T", "trust", (n) => score(n.scores.trust)],
  ["C", "consensus", (n) => score(n.scores.consensus)],
  ["I", "incentive", (n) => score(n.scores.incentive)],
  ["D", "dividends", (n) => score(n.scores.dividends)],
  ["E", "emission", (n) => tokens(n.scores.emission)],
  ["vtrust", "validator_trust", (n) => score(n.scores.validator_trust)],
  ["endpoint", null, (n) => endpoint(n.endpoint)],
  ["last update", "last_update", (n) => (n.last_weights_block == null ? "-" : n.last_weights_block)],
];

const table = { sort: "uid", descending: false, page: 0 };

async function networkPage(main) {
  const stats = el("section", { class: "stats", id: "stats" });
  const pager = el("div", { class: "pager", id: "pager" });
  const tbody = el("tbody", { id: "neurons" });
  const head = el("tr");
  for (const [title, key] of COLUMNS) {
    const th = el("th", key ? { "data-sort": key, class: "sortable" } : {}, title);
    if (key) {
      th.addEventListener("click", () => {
        if (table.sort === key) table.descending = !table.descending;
        else Object.assign(table, { sort: key, descending: key !== "uid" });
        table.page = 0;
        refresh();
      });
    }
    head.append(th);
  }
  const localnet = el("section", { id: "localnet" });
  main.append(
    stats,
    localnet,
    el("h2", {}, "Metagraph"),
    pager,
    el("div", { class: "scroll" }, el("table", { class: "neurons" }, el("thead", {}, head), tbody)),
  );

  async function refresh() {
    let net, page;
    try {
      [net, page] = await Promise.all([
        rpc("agora_network"),
        rpc("agora_neurons", [{ offset: table.page * PAGE_SIZE, limit: PAGE_SIZE, sort: table.sort, descending: table.descending }]),
      ]);
    } catch (e) {
      stats.replaceChildren(errorBox(e));
      return;
    }
    // The localnet panel, when `agora localnet` runs this node (agora_localnet); else hidden.
    rpc("agora_localnet").then(
      (l) => localnet.replaceChildren(localnetPanel(l)),
      () => localnet.replaceChildren(),
    );
    const iss = net.issuance;
    const total = Number(iss.genesis) + Number(iss.minted) - Number(iss.burned);
    stats.replaceChildren(
      stat("height", net.head.height, "height"),
      stat("finalized", net.head.height, "finalized"),
      stat("latest", net.latest, "latest"),
      stat("block time", net.block_time_ms == null ? "-" : `${(net.block_time_ms / 1000).toFixed(2)} s`, "block-time"),
      stat("n", net.n, "n"),
      stat("mechanism", `${net.mechanism} (tempo ${net.tempo})`, "mechanism"),
      stat("issuance", tokens(total), "issuance"),
      stat("emission / block", tokens(net.tau), "tau"),
    );
    for (const th of head.children) {
      const key = th.dataset.sort;
      th.classList.toggle("sorted", key === table.sort);
      th.dataset.dir = key === table.sort ? (table.descending ? "desc" : "asc") : "";
    }
    tbody.replaceChildren(
      ...page.neurons.map((n) =>
        el("tr", { "data-uid": n.uid, "data-hotkey": n.hotkey }, COLUMNS.map(([title, , cell]) => el("td", { "data-col": title }, cell(n)))),
      ),
    );
    const pages = Math.max(1, Math.ceil(page.n / PAGE_SIZE));
    pager.replaceChildren(
      el("button", { id: "prev", onclick: () => { table.page--; refresh(); } }, "‹ prev"),
      el("span", { id: "page" }, ` page ${table.page + 1} of ${pages} (${page.n} neurons, block ${page.block}) `),
      el("button", { id: "next", onclick: () => { table.page++; refresh(); } }, "next ›"),
    );
    pager.querySelector("#prev").disabled = table.page === 0;
    pager.querySelector("#next").disabled = table.page + 1 >= pages;
  }

  await refresh();
  return refresh; // called on every new head
}

// ---- localnet ---------------------------------------------------------------------------
// The peers' loss curves as one chart: their blocks merged, each peer's values aligned to them.
function lossChart(peers) {
  const heights = [...new Set(peers.flatMap((p) => p.loss.map(([b]) => b)))].sort((a, b) => a - b);
  const neurons = peers
    .filter((p) => p.loss.length)
    .map((p) => {
      const at = new Map(p.loss);
      return { uid: p.uid, loss: heights.map((h) => at.get(h) ?? null) };
    });
  if (!neurons.length) return el("p", { class: "muted" }, "no loss reported by the peers yet");
  return lineChart("loss", "held-out loss of each peer (its status.csv)", { heights, neurons }, (v) => v.toFixed(2));
}

function localnetPanel(l) {
  const rho = l.spearman_incentive == null ? "n/a" : l.spearman_incentive.toFixed(3);
  const judged = l.judge_block == null ? "not measured yet" : `measured at block ${l.judge_block}`;
  return el(
    "div",
    {},
    el("h2", {}, "Localnet"),
    el(
      "p",
      { id: "localnet-summary" },
      `block ${l.done} of ${l.blocks}, epoch ${l.epoch}; the independent judge's value ${judged}; Spearman(incentive now, judge) = ${rho}`,
    ),
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { class: "localnet" },
        el("thead", {}, el("tr", {}, ["uid", "name", "role", "judge's value"].map((h) => el("th", {}, h)))),
        el(
          "tbody",
          {},
          l.peers.map((p) =>
            el(
              "tr",
              { "data-uid": p.uid, class: `role-${p.role}` },
              el("td", {}, el("a", { href: `#/neuron/${p.uid}` }, p.uid)),
              el("td", { "data-col": "name" }, p.name),
              el("td", { "data-col": "role" }, p.role),
              el("td", { "data-col": "judge" }, p.judge == null ? "-" : p.judge.toFixed(4)),
            ),
          ),
        ),
      ),
    ),
    el("div", { class: "charts" }, lossChart(l.peers)),
  );
}

// ---- blocks and transactions -----------------------------------------------------------
function receiptStatus(r) {
  const s = r.status;
  if (s.status === "applied") return el("span", { class: "ok" }, "applied");
  const reason = s.reason ? ` ${s.reason.error}${s.reason.details ? " " + JSON.stringify(s.reason.details) : ""}` : "";
  return el("span", { class: "bad" }, `${s.status}:${reason}`);
}

async function blocksPage(main) {
  const form = el(
    "form",
    { id: "tx-form", class: "lookup" },
    el("input", { id: "tx-input", placeholder: "transaction id (64 hex digits)", size: 70 }),
    el("button", { type: "submit" }, "look up"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/tx/${form.querySelector("input").value.trim()}`;
  });
  const tbody = el("tbody", { id: "blocks" });
  main.append(
    el("h2", {}, "Transaction"),
    form,
    el("h2", {}, `Last ${LAST_BLOCKS} blocks`),
    el(
      "div",
      { class: "scroll" },
      el("table", { class: "blocks" }, el("thead", {}, el("tr", {}, ["height", "hash", "time", "proposer", "epoch", "transactions"].map((h) => el("th", {}, h)))), tbody),
    ),
  );

  async function refresh() {
    let head;
    try {
      head = await rpc("agora_head");
    } catch (e) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6 }, errorBox(e))));
      return;
    }
    const heights = [];
    for (let h = head.height; h >= 1 && heights.length < LAST_BLOCKS; h--) heights.push(h);
    const blocks = await rpcBatch(heights.map((h) => ["agora_block", [h]]));
    tbody.replaceChildren(
      ...blocks.filter((b) => !(b instanceof RpcError)).map((b) => {
        const hd = b.block.header;
        const txs = b.receipts.map((r, i) =>
          el("div", {}, el("a", { href: `#/tx/${r.tx_id}`, class: "mono" }, short(r.tx_id)), " ", b.block.txs[i].body.call.type, " ", receiptStatus(r)),
        );
        return el(
          "tr",
          { "data-height": hd.height },
          el("td", {}, hd.height),
          el("td", { class: "mono", title: b.hash }, short(b.hash)),
          el("td", {}, new Date(hd.timestamp_ms).toISOString().replace("T", " ").slice(0, 19), " (", ago(hd.timestamp_ms), ")"),
          el("td", { class: "mono", title: hd.proposer }, short(hd.proposer)),
          el("td", {}, b.epoch ? "yes" : ""),
          el("td", {}, txs.length ? txs : "-"),
        );
      }),
    );
  }
  await refresh();
  return refresh;
}

async function txPage(main, id) {
  const box = el("section", { id: "tx" });
  main.append(el("h2", {}, "Transaction"), el("p", { class: "mono" }, id), box);
  async function refresh() {
    let t;
    try {
      t = await rpc("agora_getTransaction", [id]);
    } catch (e) {
      box.replaceChildren(errorBox(e));
      return;
    }
    const rows = [["state", el("span", { id: "tx-state" }, t.state)]];
    if (t.state === "included") {
      const b = await rpc("agora_block", [t.height]);
      const tx = b.block.txs[t.index];
      const { type, ...args } = tx.body.call;
      rows.push(
        ["outcome", el("span", { id: "tx-outcome" }, receiptStatus(t.receipt))],
        ["block", el("span", {}, `${t.height} (index ${t.index})`)],
        ["call", el("span", { id: "tx-call" }, type)],
        ["arguments", el("code", {}, JSON.stringify(args))],
        ["sender", el("span", { class: "mono" }, tx.body.sender)],
        ["nonce", tx.body.nonce],
        ["fee paid", tokens(t.receipt.fee_paid)],
      );
    } else if (t.state === "unknown") {
      rows.push(["", "never seen by this node, or dropped from the mempool because a block made it invalid"]);
    }
    box.replaceChildren(el("table", { class: "kv" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
  }
  await refresh();
  return refresh;
}

// ---- history: charts drawn as SVG here (a chart library would be more code than this) -----
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fdb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c940d", "#495057", "#364fc7"];

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// One line per neuron over the sampled heights; each line carries its data points in
// data-heights and data-values (what the browser test checks).
function lineChart(key, title, hist, fmt) {
  const W = 620, H = 220, L = 64, R = 12, T = 12, B = 28;
  const { heights } = hist;
  const values = hist.neurons.flatMap((n) => n[key].filter((v) => v != null));
  const ymax = Math.max(1e-12, ...values);
  const x0 = heights[0] ?? 0, x1 = heights[heights.length - 1] ?? 1;
  const x = (h) => L + ((h - x0) / Math.max(1, x1 - x0)) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", "data-series": key });
  for (const f of [0, 0.5, 1]) {
    chart.append(
      svg("line", { x1: L, x2: W - R, y1: y(f * ymax), y2: y(f * ymax), class: "grid" }),
      svg("text", { x: L - 6, y: y(f * ymax) + 4, "text-anchor": "end", class: "tick" }, fmt(f * ymax)),
    );
  }
  chart.append(
    svg("text", { x: L, y: H - 8, class: "tick" }, `block ${x0}`),
    svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "tick" }, `block ${x1}`),
  );
  hist.neurons.forEach((n, i) => {
    const pts = heights.map((h, k) => [h, n[key][k]]).filter(([, v]) => v != null);
    // A series of one point draws no line: a dot shows it.
    if (pts.length === 1) chart.append(svg("circle", { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: PALETTE[i % PALETTE.length] }));
    chart.append(
      svg("polyline", {
        points: pts.map(([h, v]) => `${x(h).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        stroke: PALETTE[i % PALETTE.length],
        class: "series",
        "data-uid": n.uid,
        "data-heights": pts.map(([h]) => h).join(","),
        "data-values": pts.map(([, v]) => v).join(","),
      }),
    );
  });
  return el("figure", { class: "chart-box" }, el("figcaption", {}, title), chart);
}

// A colour square; set through the CSSOM, which the page's Content-Security-Policy allows
// (a style attribute it would refuse).
function swatch(colour) {
  const i = el("i");
  i.style.background = colour;
  return i;
}

async function historyPage(main) {
  const box = el("section", { id: "history" });
  main.append(el("h2", {}, "History: the 10 neurons with the most stake"), box);
  async function refresh() {
    let hist;
    try {
      hist = await rpc("agora_history");
    } catch (e) {
      box.replaceChildren(errorBox(e));
      return;
    }
    const legend = el(
      "div",
      { class: "legend" },
      hist.neurons.map((n, i) => el("span", {}, swatch(PALETTE[i % PALETTE.length]), ` uid ${n.uid} ${short(n.hotkey)}`)),
    );
    box.replaceChildren(
      el("p", { class: "muted" }, `${hist.heights.length} samples from block ${hist.heights[0] ?? "-"} to ${hist.heights[hist.heights.length - 1] ?? "-"}, one every ${hist.stride} blocks (kept by the node since it started, at most 256)`),
      legend,
      el(
        "div",
        { class: "charts" },
        lineChart("stake_share", "stake share", hist, (v) => `${(v * 100).toFixed(1)}%`),
        lineChart("incentive", "incentive I (last epoch)", hist, (v) => v.toFixed(3)),
        lineChart("emission", "emission E (last epoch, tokens)", hist, (v) => tokens(v)),
      ),
    );
  }
  await refresh();
  return refresh;
}

// ---- one neuron ------------------------------------------------------------------------
// [uid, value] pairs as a table with a bar per value (W's row or column, the bonds).
function linkTable(id, who, pairs) {
  const max = Math.max(1e-12, ...pairs.map(([, v]) => v));
  return el(
    "table",
    { id, class: "links" },
    el("thead", {}, el("tr", {}, el("th", {}, who), el("th", {}, "value"), el("th", {}, ""))),
    el(
      "tbody",
      {},
      pairs.length
        ? pairs.map(([u, v]) => {
            const bar = el("span", { class: "bar" });
            bar.style.width = `${(100 * v) / max}%`;
            return el("tr", { "data-uid": u }, el("td", {}, el("a", { href: `#/neuron/${u}` }, u)), el("td", { "data-col": "value" }, score(v)), el("td", { class: "barcell" }, bar));
          })
        : el("tr", {}, el("td", { colspan: 3 }, "none")),
    ),
  );
}

async function neuronPage(main, uidText) {
  const uid = Number(uidText);
  const box = el("section", { id: "neuron" });
  main.append(el("h2", {}, `Neuron ${uidText}`), box);
  async function refresh() {
    let n, links, hist;
    try {
      [n, links, hist] = await Promise.all([
        rpc("agora_neuron", [{ uid }]),
        rpc("agora_weights", [uid]),
        rpc("agora_history", [{ uids: [uid] }]),
      ]);
    } catch (e) {
      box.replaceChildren(errorBox(e));
      return;
    }
    const row = [
      ["hotkey", el("span", { class: "mono", id: "neuron-hotkey" }, n.hotkey)],
      ["coldkey", el("span", { class: "mono" }, n.coldkey)],
      ["stake", el("span", { id: "neuron-stake" }, tokens(n.stake))],
      ["R / T / C", `${score(n.scores.rank)} / ${score(n.scores.trust)} / ${score(n.scores.consensus)}`],
      ["I / D / vtrust", `${score(n.scores.incentive)} / ${score(n.scores.dividends)} / ${score(n.scores.validator_trust)}`],
      ["E (last epoch)", tokens(n.scores.emission)],
      ["active / permit", `${n.scores.active} / ${n.scores.validator_permit}`],
      ["endpoint", endpoint(n.endpoint)],
      ["registered at", n.registered_at],
      ["last weights", n.last_weights_block ?? "-"],
    ];
    box.replaceChildren(
      el("table", { class: "kv" }, row.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
      el("h2", {}, "Over blocks"),
      el(
        "div",
        { class: "charts" },
        lineChart("stake_share", "stake share", hist, (v) => `${(v * 100).toFixed(1)}%`),
        lineChart("incentive", "incentive I", hist, (v) => v.toFixed(3)),
        lineChart("emission", "emission E (tokens)", hist, (v) => tokens(v)),
      ),
      el(
        "div",
        { class: "columns" },
        el("div", {}, el("h2", {}, "Weights given (its row of W)"), linkTable("given", "to uid", links.given)),
        el("div", {}, el("h2", {}, "Weights received (its column of W)"), linkTable("received", "from uid", links.received)),
        el("div", {}, el("h2", {}, "Bonds (its row of B)"), linkTable("bonds", "on uid", links.bonds)),
      ),
    );
  }
  await refresh();
  return refresh;
}

// ---- routing ---------------------------------------------------------------------------
let onHead = null;
headListeners.add((h) => onHead && onHead(h));

async function route() {
  const main = document.getElementById("main");
  main.replaceChildren();
  onHead = null;
  const [, page, arg] = location.hash.split("/");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("here", a.dataset.page === (page || "network")));
  let refresh;
  try {
    if (page === "blocks") refresh = await blocksPage(main);
    else if (page === "history") refresh = await historyPage(main);
    else if (page === "neuron") refresh = await neuronPage(main, arg || "");
    else if (page === "tx") refresh = await txPage(main, arg || "");
    else refresh = await networkPage(main);
  } catch (e) {
    main.append(errorBox(e));
  }
  onHead = refresh;
  document.body.dataset.ready = "1";
}

window.addEventListener("hashchange", route);
connectHeads();
route();
