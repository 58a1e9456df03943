// The inbox page: local times, a keyboard selection through the list,
// delete and star without leaving the page, and new mail arriving live
// from the inbox's event stream.  Without this script the page still
// works: rows are links and every action is a form.
"use strict";

(() => {
  const list = document.getElementById("messages");
  if (!list) return;
  const inbox = list.dataset.inbox;
  const path = "/inbox/" + encodeURIComponent(inbox).replace(/%40/g, "@").replace(/%2B/g, "+");
  const status = document.getElementById("live-status");
  const countText = document.getElementById("inbox-count");
  const baseTitle = document.title;
  let selected = null;
  let unseen = 0;

  // Times in the reader's own zone.
  const sameDay = (a, b) => a.toDateString() === b.toDateString();
  function localTime(el) {
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) return;
    const now = new Date();
    el.title = when.toLocaleString();
    el.textContent = sameDay(when, now)
      ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : when.toLocaleDateString([], when.getFullYear() === now.getFullYear()
        ? { day: "numeric", month: "short" } : { day: "numeric", month: "short", year: "numeric" });
  }
  list.querySelectorAll("time[datetime]").forEach(localTime);

  // Selection: one row is current; its link is the one in the tab order.
  const rows = () => Array.from(list.querySelectorAll("li.message"));
  function select(row, focus = true) {
    if (selected && selected !== row) {
      selected.classList.remove("selected");
      selected.querySelector("a.open").removeAttribute("aria-current");
      selected.querySelector("a.open").tabIndex = -1;
    }
    selected = row;
    if (!row) return;
    row.classList.add("selected");
    const link = row.querySelector("a.open");
    link.setAttribute("aria-current", "true");
    link.tabIndex = 0;
    if (focus) link.focus();
  }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.indexOf(selected);
    const next = at < 0 ? all[0] : all[Math.min(all.length - 1, Math.max(0, at + step))];
    select(next);
    next.scrollIntoView({ block: "nearest" });
  }
  function initTabs() {
    rows().forEach((row, i) => { row.querySelector("a.open").tabIndex = i === 0 ? 0 : -1; });
  }
  initTabs();
  list.addEventListener("focusin", (event) => {
    const row = event.target.closest("li.message");
    if (row && row !== selected) select(row, false);
  });

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || Capture.typing(event)) return;
    const key = event.key;
    if (key === "j" || key === "ArrowDown") { event.preventDefault(); move(1); }
    else if (key === "k" || key === "ArrowUp") { event.preventDefault(); move(-1); }
    else if (key === "Enter" && selected && document.activeElement === document.body) {
      window.location.assign(selected.querySelector("a.open").href);
    } else if ((key === "Delete" || key === "#") && selected) {
      event.preventDefault();
      remove(selected);
    } else if (key === "/") {
      event.preventDefault();
      const search = document.getElementById("q");
      search.focus();
      search.select();
    }
  });

  function setCount(delta) {
    const match = /^(\d+) message/.exec(countText.textContent);
    if (!match) return;
    const n = Math.max(0, Number(match[1]) + delta);
    countText.textContent = `${n} message${n === 1 ? "" : "s"}`;
  }
  function showStatus(text, state) {
    status.textContent = text;
    status.dataset.state = state;
  }

  // Delete and star through the same routes as the forms, answered in JSON.
  async function remove(row) {
    const form = row.querySelector("form.delete-form");
    if (!form) return;
    const response = await Capture.post(form.action).catch(() => null);
    if (!response || !response.ok) {
      showStatus("Could not delete that message; reload and try again.", "down");
      return;
    }
    const all = rows();
    const at = all.indexOf(row);
    const next = all[at + 1] || all[at - 1] || null;
    const hadFocus = row.contains(document.activeElement) || row === selected;
    row.remove();
    setCount(-1);
    if (selected === row) selected = null;
    if (next) select(next, hadFocus);
    else initTabs();
  }
  async function toggleStar(form) {
    const field = form.querySelector("input[name=starred]");
    const response = await Capture.post(form.action, { starred: field.value }).catch(() => null);
    if (!response || !response.ok) {
      showStatus("Could not star that message; reload and try again.", "down");
      return;
    }
    const starred = field.value === "1";
    field.value = starred ? "0" : "1";
    const button = form.querySelector("button");
    button.textContent = starred ? "Unstar" : "Star";
    button.setAttribute("aria-pressed", String(starred));
    const row = form.closest("li.message");
    row.classList.toggle("starred", starred);
    const marks = row.querySelector(".marks");
    const mark = marks.querySelector(".star");
    if (starred && !mark) marks.append(markSpan("★", "star", "Starred"));
    if (!starred && mark) mark.remove();
  }
  list.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.classList.contains("delete-form")) {
      event.preventDefault();
      remove(form.closest("li.message"));
    } else if (form.classList.contains("star-form")) {
      event.preventDefault();
      toggleStar(form);
    }
  });
  const purge = document.querySelector("form.purge-form");
  if (purge) {
    purge.addEventListener("submit", (event) => {
      if (!window.confirm(`Delete every unstarred message of ${inbox}? This cannot be undone.`)) {
        event.preventDefault();
      }
    });
  }

  // New mail, live.
  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }
  function markSpan(symbol, kind, label) {
    const mark = element("span", `mark ${kind}`, symbol);
    mark.setAttribute("role", "img");
    mark.setAttribute("aria-label", label);
    mark.title = label;
    return mark;
  }
  function actionForm(action, className, button, fields) {
    const form = element("form", `inline ${className}`);
    form.method = "post";
    form.action = action;
    for (const [name, value] of Object.entries({ csrf: Capture.csrf(), ...fields })) {
      const input = element("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.append(input);
    }
    form.append(button);
    return form;
  }
  function rowFor(message) {
    const href = `${path}/${encodeURIComponent(message._id)}`;
    const row = element("li", "message fresh" + (message.read ? "" : " unread"));
    row.dataset.id = message._id;
    const link = element("a", "open");
    link.href = href;
    link.tabIndex = -1;
    const from = (message.from || [])[0];
    link.append(element("span", "from", from ? (from.name || from.address) : "(unknown sender)"));
    const subject = element("span", "subject");
    if (!message.read) subject.append(element("span", "visually-hidden", "unread, "));
    subject.append(message.subject || "(no subject)");
    link.append(subject);
    const marks = element("span", "marks");
    const attached = (message.attachments || []).length;
    if (attached) {
      marks.append(markSpan("📎", "attach", `${attached} attachment${attached === 1 ? "" : "s"}`));
    }
    if (message.savedBy) marks.append(markSpan("★", "star", "Starred"));
    link.append(marks);
    const time = element("time");
    time.setAttribute("datetime", message.received);
    localTime(time);
    link.append(time, element("span", "size", Capture.size(message.size)));
    const actions = element("div", "actions");
    if (list.dataset.star) {
      const button = element("button", "secondary star-button", message.savedBy ? "Unstar" : "Star");
      button.type = "submit";
      button.setAttribute("aria-pressed", String(Boolean(message.savedBy)));
      actions.append(actionForm(`${href}/star`, "star-form", button,
        { starred: message.savedBy ? "0" : "1" }));
    }
    if (list.dataset.delete) {
      const button = element("button", "danger delete-button", "Delete");
      button.type = "submit";
      actions.append(actionForm(`${href}/delete`, "delete-form", button, {}));
    }
    row.append(link, actions);
    return row;
  }

  function looking() { return !document.hidden && document.hasFocus(); }
  function updateTitle() { document.title = unseen ? `(${unseen}) ${baseTitle}` : baseTitle; }
  function seen() { if (looking() && unseen) { unseen = 0; updateTitle(); } }
  window.addEventListener("focus", seen);
  document.addEventListener("visibilitychange", seen);
  document.addEventListener("pointerdown", seen);
  document.addEventListener("keydown", seen);

  let waiting = 0;  // new mail not shown on a page of older mail or of results
  function arrived(message) {
    if (list.querySelector(`li[data-id="${CSS.escape(message._id)}"]`)) return;
    if (list.dataset.live === "paused") {
      waiting += 1;
      showStatus(`${waiting} new since this page was loaded`, "live");
    } else {
      list.hidden = false;
      const empty = document.querySelector(".inbox-list .empty");
      if (empty) empty.remove();
      list.prepend(rowFor(message));
      setCount(1);
      if (!selected) initTabs();
    }
    if (!looking()) { unseen += 1; updateTitle(); }
  }

  if (!window.EventSource) { showStatus("", "off"); return; }
  const events = new EventSource(`/api/addresses/${encodeURIComponent(inbox)}/events`);
  events.addEventListener("open", () => showStatus("Live: new mail appears here", "live"));
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) showStatus("Offline: reload to see new mail", "down");
    else showStatus(navigator.onLine ? "Reconnecting…" : "Offline; reconnecting…", "down");
  });
  events.addEventListener("message", (event) => {
    try { arrived(JSON.parse(event.data)); } catch (error) { console.error(error); }
  });
  window.addEventListener("offline", () => showStatus("Offline; reconnecting…", "down"));
})();
