/// The console's one page: HTML, CSS and script in one answer, nothing loaded from elsewhere
/// (no CDN, no build step). It polls `/api/snapshot` every two seconds and draws it; every
/// value goes in as text (`textContent`), never as markup, so a dead letter's key cannot
/// become script. The token is asked for once, kept in the tab's `sessionStorage` and sent
/// as `Authorization: Bearer`, never in a URL.
enum ConsolePage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>prewarm console</title>
        <style>
          :root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
          * { box-sizing: border-box; }
          body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #1f2328; background: #fff; }
          header { display: flex; gap: 16px; align-items: center; padding: 10px 16px; background: #24292f; color: #fff; }
          header h1 { font-size: 16px; margin: 0; }
          header .spacer { flex: 1; }
          header input { width: 180px; }
          main { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 12px; padding: 12px; }
          section { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 0; }
          section.wide { grid-column: 1 / -1; }
          h2 { font-size: 14px; margin: 4px 0 8px; }
          table { border-collapse: collapse; width: 100%; }
          th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
          th { color: var(--muted); font-weight: 600; }
          .bar { position: relative; width: 160px; height: 14px; background: var(--bg); border: 1px solid var(--line); border-radius: 3px; }
          .bar > span { position: absolute; left: 0; top: 0; bottom: 0; background: #54aeff; }
          .bar > i { position: absolute; right: 4px; top: -1px; font-style: normal; font-size: 11px; }
          .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); font-weight: 600; }
          tr.risk { background: #ffebe9; }
          .muted { color: var(--muted); }
          .problems { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 12px; margin: 12px 12px 0; border-radius: 6px; }
          #answer { margin: 12px 12px 0; padding: 6px 12px; border-radius: 6px; background: var(--bg); border: 1px solid var(--line); white-space: pre-wrap; font-family: ui-monospace, monospace; }
          #answer:empty { display: none; }
          button { font: inherit; padding: 1px 8px; cursor: pointer; }
          button:disabled { cursor: not-allowed; }
          code, .mono { font-family: ui-monospace, monospace; font-size: 12px; }
          svg.spark { vertical-align: middle; }
        </style>
        </head>
        <body>
        <header>
          <h1>prewarm console</h1>
          <span id="updated" class="muted">loading…</span>
          <span class="spacer"></span>
          <label>admin token <input id="token" type="password" autocomplete="off" placeholder="PREWARM_ADMIN_TOKEN"></label>
          <button id="use-token">use</button>
          <span id="token-state"></span>
        </header>
        <div id="problems" class="problems" hidden></div>
        <div id="answer" aria-live="polite"></div>
        <main>
          <section class="wide"><h2>Key-account pre-warms and tasks</h2><table id="tasks"></table></section>
          <section class="wide"><h2>Job runs (last 24 h)</h2><table id="runs"></table></section>
          <section><h2>Consumer lag</h2><table id="lag"></table></section>
          <section><h2>Pods</h2><table id="pods"></table></section>
          <section><h2>Dead letters</h2><table id="dlq"></table></section>
          <section><h2>Retry table</h2><table id="retries"></table></section>
          <section class="wide"><h2>Latest alerts</h2><table id="alerts"></table></section>
        </main>
        <script>
        "use strict";
        let token = sessionStorage.getItem("prewarm-token") || "";
        let snapshot = null;

        function el(tag, attrs, ...children) {
          const node = document.createElement(tag);
          for (const [name, value] of Object.entries(attrs || {})) {
            if (value === undefined || value === null || value === false) continue;
            if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
            else node.setAttribute(name, value === true ? "" : value);
          }
          for (const child of children.flat()) {
            if (child === undefined || child === null) continue;
            node.append(child instanceof Node ? child : document.createTextNode(String(child)));
          }
          return node;
        }
        function table(id, head, rows, empty) {
          const target = document.getElementById(id);
          target.replaceChildren(el("tr", {}, head.map((h) => el("th", {}, h))));
          if (rows.length === 0) target.append(el("tr", {}, el("td", { colspan: head.length, class: "muted" }, empty)));
          for (const row of rows) target.append(row);
        }
        function num(n) { return n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US"); }
        function when(text) {
          if (!text) return "–";
          const date = new Date(text);
          return date.toLocaleString("en-GB", { month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
        }
        function span(seconds) {
          if (seconds === undefined || seconds === null || !isFinite(seconds)) return "–";
          seconds = Math.max(0, Math.round(seconds));
          if (seconds < 60) return seconds + " s";
          if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
          return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
        }
        function bar(done, total) {
          const share = total ? Math.min(1, done / total) : 0;
          return el("div", { class: "bar", title: num(done) + " / " + num(total) },
            el("span", { style: "width:" + (share * 100).toFixed(1) + "%" }), el("i", {}, total ? Math.floor(share * 100) + " %" : "–"));
        }
        function stateClass(state) {
          return { succeeded: "ok", running: "warn", queued: "muted", "fanned-out": "warn", partial: "bad", failed: "bad", cancelled: "bad" }[state] || "";
        }
        function spark(points) {
          const width = 160, height = 28;
          if (!points || points.length < 2) return el("span", { class: "muted" }, "–");
          const max = Math.max(1, ...points.map((p) => p.lag));
          const t0 = Date.parse(points[0].at), t1 = Date.parse(points[points.length - 1].at) || t0 + 1;
          const xy = points.map((p) => [((Date.parse(p.at) - t0) / Math.max(1, t1 - t0)) * width, height - 2 - (p.lag / max) * (height - 4)]);
          const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
          svg.setAttribute("class", "spark"); svg.setAttribute("width", width); svg.setAttribute("height", height);
          const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
          line.setAttribute("points", xy.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" "));
          line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0969da"); line.setAttribute("stroke-width", "1.5");
          svg.append(line);
          return svg;
        }

        async function act(button, method, path, what) {
          const answer = document.getElementById("answer");
          if (!token) { answer.textContent = what + ": enter the admin token first"; return; }
          button.disabled = true;
          answer.textContent = what + "…";
          try {
            const response = await fetch(path, { method, headers: { Authorization: "Bearer " + token } });
            const text = await response.text();
            let shown = text;
            try { shown = JSON.stringify(JSON.parse(text), null, 1); } catch (_) {}
            answer.textContent = what + ": " + response.status + " " + (response.ok ? "OK" : "refused") + "\n" + shown;
            answer.dataset.status = response.status;
          } catch (error) {
            answer.textContent = what + ": " + error;
          } finally {
            button.disabled = false;
            refresh();
          }
        }

        function draw() {
          const s = snapshot, status = s.status || { runs: [], tasks: [], retries: [], lag: {}, alerts: [] };
          const now = Date.parse(s.at);
          document.getElementById("updated").textContent = "updated " + when(s.at) + " · lag from " + (status.lagSource || "–");
          const problems = document.getElementById("problems");
          const list = Object.entries(s.problems || {});
          problems.hidden = list.length === 0;
          problems.replaceChildren(...list.map(([source, error]) => el("div", {}, el("b", {}, source + " unreadable: "), error)));
          const actions = s.actionsEnabled;

          table("tasks", ["kind", "key", "state", "progress", "done / total", "rate", "ETA", "deadline", "attempts", "retry rows", "owner", "error", ""],
            status.tasks.map(({ task, retryPending, retryExhausted }) => {
              const eta = task.total && task.rate > 0 ? Math.max(0, task.total - task.done) / task.rate : null;
              const deadline = task.deadline ? Date.parse(task.deadline) : null;
              const active = task.state === "running" || task.state === "queued";
              const risk = active && deadline && (eta === null ? now > deadline : now + eta * 1000 > deadline);
              const retry = (task.state === "failed" || task.state === "cancelled")
                ? el("button", { disabled: !actions, title: actions ? "queue it again from its checkpoint" : "the console has no PREWARM_ADMIN_TOKEN",
                    onclick: (event) => act(event.target, "POST", "/api/tasks/" + encodeURIComponent(task.kind) + "/" + encodeURIComponent(task.key) + "/retry", "retry " + task.kind + " " + task.key) }, "retry")
                : null;
              return el("tr", { class: risk ? "risk" : null, "data-task": task.kind + ":" + task.key },
                el("td", {}, task.kind), el("td", { class: "mono" }, task.key),
                el("td", { class: stateClass(task.state) }, task.state, risk ? el("span", { class: "bad" }, " · will miss its deadline") : null),
                el("td", {}, bar(task.done, task.total)), el("td", { class: "progress" }, num(task.done) + " / " + num(task.total)),
                el("td", {}, task.rate ? num(Math.round(task.rate)) + "/s" : "–"),
                el("td", {}, active ? span(eta) : "–"),
                el("td", {}, when(task.deadline), deadline && active ? el("div", { class: "muted" }, "in " + span((deadline - now) / 1000)) : null),
                el("td", {}, task.attempts + " of " + task.maxAttempts),
                el("td", {}, retryPending + " pending, " + retryExhausted + " exhausted"),
                el("td", { class: "mono muted" }, task.owner || "–"),
                el("td", { class: task.lastError ? "bad" : "" }, task.lastError || ""),
                el("td", {}, retry));
            }), "no task in the last day");

          const jobs = new Set(status.runs.map((r) => r.job));
          for (const pod of s.pods) for (const job of pod.jobs) jobs.add(job);
          table("runs", ["job", "period", "state", "progress", "items", "rate", "ETA", "deadline", "failed", "batches", "attempt", "take-overs", "started", "took", ""],
            status.runs.map((run) => {
              const known = run.batchesTotal !== undefined && run.batchesTotal !== null ? run.itemsProduced : run.itemsExpected;
              const finished = run.itemsDone + run.itemsFailed;
              const active = run.state === "running" || run.state === "fanned-out";
              const elapsed = run.startedAt ? (now - Date.parse(run.startedAt)) / 1000 : null;
              const rate = active && elapsed > 0 && finished > 0 ? finished / elapsed : null;
              const eta = rate && known ? Math.max(0, known - finished) / rate : null;
              const deadline = run.deadlineAt ? Date.parse(run.deadlineAt) : null;
              const risk = active && deadline && (eta === null ? now > deadline : now + eta * 1000 > deadline);
              return el("tr", { class: risk ? "risk" : null, "data-run": run.job + "@" + run.period },
                el("td", {}, run.job), el("td", { class: "mono" }, run.period),
                el("td", { class: stateClass(run.state) }, run.state + (run.forced ? " (forced)" : ""), risk ? el("span", { class: "bad" }, " · will miss its deadline") : null),
                el("td", {}, bar(finished, known)), el("td", {}, num(finished) + " / " + num(known)),
                el("td", {}, rate ? num(Math.round(rate)) + "/s" : "–"), el("td", {}, active ? span(eta) : "–"),
                el("td", {}, when(run.deadlineAt)),
                el("td", { class: run.itemsFailed ? "bad" : "" }, num(run.itemsFailed)),
                el("td", {}, num(run.batchesDone) + " / " + num(run.batchesTotal ?? run.batchesExpected)),
                el("td", {}, run.attempt), el("td", {}, run.takeovers), el("td", {}, when(run.startedAt)),
                el("td", {}, span(run.durationSeconds)),
                el("td", { class: "bad" }, run.error || ""));
            }), "no job run in the last day");
          const triggers = [...jobs].sort().map((job) => el("button", { disabled: !actions, "data-job": job,
            onclick: (event) => act(event.target, "POST", "/api/jobs/" + encodeURIComponent(job) + "/trigger?force=true", "trigger " + job) }, "run " + job + " now"));
          document.getElementById("runs").append(el("tr", {}, el("td", { colspan: 15 }, triggers.length ? triggers : el("span", { class: "muted" }, "no pod with scheduled jobs on the board"))));

          table("lag", ["group", "behind", "last 30 min", "partitions behind"],
            Object.entries(status.lag).sort().map(([group, partitions]) => {
              const total = Object.values(partitions).reduce((a, b) => a + b, 0);
              const behind = Object.entries(partitions).filter(([, lag]) => lag > 0).sort((a, b) => b[1] - a[1]).slice(0, 4);
              return el("tr", { "data-group": group }, el("td", {}, group), el("td", { class: total > 0 ? "warn" : "ok" }, num(total)),
                el("td", {}, spark(s.lagHistory[group])),
                el("td", { class: "mono muted" }, behind.map(([p, lag]) => p + " " + num(lag)).join(", ") || "caught up"));
            }), "no group lag known");

          table("pods", ["worker", "pod", "admin", "ready", "since", "notes"],
            s.pods.map((pod) => el("tr", {}, el("td", {}, pod.worker), el("td", { class: "mono" }, pod.owner.replace(pod.worker + "@", "")),
              el("td", { class: "mono muted" }, pod.admin), el("td", { class: pod.ready ? "ok" : "bad" }, pod.ready ? "ready" : "not ready"),
              el("td", {}, when(pod.startedAt)), el("td", { class: "muted" }, pod.problems.join("; ")))), "no pod on the board");

          if (s.deadLetters) {
            table("dlq", ["topic", "kept", "not replayed", "classes (latest)", "latest", ""],
              s.deadLetters.map((topic) => {
                const sample = topic.samples[0];
                const classes = Object.entries(topic.classes).sort((a, b) => b[1] - a[1]).map(([c, n]) => c + " " + n).join(", ");
                return el("tr", { "data-dlq": topic.topic }, el("td", { class: "mono" }, topic.topic),
                  el("td", {}, num(topic.count)), el("td", { class: topic.pending > 0 ? "bad" : "ok" }, num(topic.pending)),
                  el("td", {}, classes || "–"),
                  el("td", {}, sample ? [el("div", { class: "mono" }, "key " + (sample.key ?? "–") + " · " + sample.errorClass),
                    el("div", { class: "muted" }, sample.reason),
                    Object.keys(sample.headers).length ? el("div", { class: "mono muted" }, Object.entries(sample.headers).map(([k, v]) => k + "=" + v).join(" ")) : null] : "–"),
                  el("td", {}, topic.pending > 0 ? el("button", { disabled: !actions,
                    onclick: (event) => act(event.target, "POST", "/api/dlq/" + encodeURIComponent(topic.topic) + "/replay", "replay " + topic.topic) }, "replay") : null));
              }), "no dead-letter topic");
          } else {
            table("dlq", ["topic"], [], "Kafka not configured or not read yet");
          }

          table("retries", ["kind", "state", "rows"], status.retries.map((r) => el("tr", {}, el("td", {}, r.kind),
            el("td", { class: r.state === "exhausted" ? "bad" : "warn" }, r.state), el("td", {}, num(r.count)))), "the retry table is empty");

          table("alerts", ["at", "kind", "worker", "message"], status.alerts.map((a) => el("tr", { "data-alert": a.kind },
            el("td", {}, when(a.at)), el("td", { class: "bad" }, a.kind), el("td", {}, a.worker), el("td", {}, a.message))), "no alert");
        }

        async function refresh() {
          try {
            const response = await fetch("/api/snapshot", { cache: "no-store" });
            snapshot = await response.json();
            draw();
          } catch (error) {
            document.getElementById("updated").textContent = "console unreachable: " + error;
          }
        }

        async function useToken() {
          const field = document.getElementById("token");
          token = field.value.trim();
          field.value = "";
          const state = document.getElementById("token-state");
          const response = await fetch("/api/auth", { method: "POST", headers: { Authorization: "Bearer " + token } });
          if (response.status === 204) {
            sessionStorage.setItem("prewarm-token", token);
            state.textContent = "token accepted";
          } else {
            token = "";
            sessionStorage.removeItem("prewarm-token");
            state.textContent = response.status === 403 ? "actions are off (no PREWARM_ADMIN_TOKEN)" : "token refused";
          }
        }
        document.getElementById("use-token").addEventListener("click", useToken);
        document.getElementById("token").addEventListener("keydown", (event) => { if (event.key === "Enter") useToken(); });
        if (token) document.getElementById("token-state").textContent = "token set";
        refresh();
        setInterval(refresh, 2000);
        </script>
        </body>
        </html>
        """#
}
