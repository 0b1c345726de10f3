// durably dashboard: live updates by polling a server-rendered fragment, the Gantt's
// geometry, and the operator actions (POSTs that carry the token). No dependencies.
"use strict";

(function () {
  const TOKEN_KEY = "durably-dashboard-token";
  const pollMs = Number(document.body.dataset.pollMs || "1000");

  function placeBars(root) {
    root.querySelectorAll("[data-left][data-width]").forEach(function (element) {
      element.style.left = element.dataset.left + "%";
      element.style.width = element.dataset.width + "%";
    });
  }

  // The server lists the actions that apply to the workflow's status on #status (in
  // the live part): a workflow that finishes while the page is open loses its
  // signal and cancel forms, one that fails gains resume.
  function showActions() {
    const status = document.getElementById("status");
    const section = document.querySelector("section.actions");
    if (!status || !section || status.dataset.actions === undefined) return;
    const applicable = status.dataset.actions.split(" ");
    section.querySelectorAll("form.action").forEach(function (form) {
      form.hidden = !applicable.includes(form.dataset.action);
    });
  }

  function tokenField() {
    return document.getElementById("token");
  }

  function setupToken() {
    const field = tokenField();
    if (!field) return;
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromHash) {
      sessionStorage.setItem(TOKEN_KEY, fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    field.value = sessionStorage.getItem(TOKEN_KEY) || "";
    field.addEventListener("input", function () {
      sessionStorage.setItem(TOKEN_KEY, field.value);
    });
  }

  function liveUrl(live) {
    if (live.dataset.liveUrl) return live.dataset.liveUrl;
    const params = new URLSearchParams(location.search);
    params.delete("id");
    params.set("fragment", "1");
    return "/?" + params.toString();
  }

  function startPolling() {
    const live = document.getElementById("live");
    if (!live) return;
    const url = liveUrl(live);
    let last = null;
    async function poll() {
      try {
        const response = await fetch(url, { headers: { Accept: "text/html" }, cache: "no-store" });
        if (response.ok) {
          const html = await response.text();
          if (last !== null && html !== last) {
            const open = new Set();
            live.querySelectorAll("details[open][data-key], li.row").forEach(function (row) {
              const details = row.querySelector && row.querySelector("details.op-detail");
              if (details && details.open) open.add(row.dataset.seq);
            });
            live.innerHTML = html;
            live.querySelectorAll("li.row").forEach(function (row) {
              if (open.has(row.dataset.seq)) {
                const details = row.querySelector("details.op-detail");
                if (details) details.open = true;
              }
            });
            placeBars(live);
            showActions();
          }
          last = html;
          document.body.classList.remove("offline");
        } else {
          document.body.classList.add("offline");
        }
      } catch (error) {
        document.body.classList.add("offline");
      }
      setTimeout(poll, pollMs);
    }
    poll();
  }

  function flash(text, ok) {
    const element = document.getElementById("flash");
    if (!element) return;
    element.textContent = text;
    element.className = ok ? "ok" : "refused";
  }

  function setupActions() {
    const section = document.querySelector("section.actions");
    if (!section) return;
    const workflowId = section.dataset.workflowId;
    section.querySelectorAll("form.action").forEach(function (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const action = form.dataset.action;
        const body = {};
        new FormData(form).forEach(function (value, key) {
          body[key] = String(value);
        });
        const field = tokenField();
        const token = field ? field.value : "";
        try {
          const response = await fetch(
            "/api/workflows/" + encodeURIComponent(workflowId) + "/" + action,
            {
              method: "POST",
              headers: { "Content-Type": "application/json", "X-Durably-Token": token },
              body: JSON.stringify(body),
            }
          );
          const document_ = await response.json();
          if (response.ok) {
            flash(document_.message || "done", true);
            if (document_.url) {
              const link = document.createElement("a");
              link.href = document_.url;
              link.textContent = " open the fork";
              document.getElementById("flash").appendChild(link);
            }
          } else {
            flash(response.status + ": " + (document_.error || "refused"), false);
          }
        } catch (error) {
          flash("the dashboard did not answer: " + error, false);
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupToken();
    placeBars(document);
    showActions();
    setupActions();
    startPolling();
  });
})();
