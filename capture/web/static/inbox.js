// The inbox page: local times, a keyboard selection through the list,
// delete and star without leaving the page (Capture.messageList), and new
// mail arriving (and mail deleted elsewhere leaving) live from the inbox's
// event stream.  Without this script
// the page still works: rows are links and every action is a form.
"use strict";

(() => {
  const list = document.getElementById("messages");
  if (!list) return;
  const inbox = list.dataset.inbox;
  const status = document.getElementById("live-status");
  const countText = document.getElementById("inbox-count");
  const baseTitle = document.title;
  let unseen = 0;
  const { element } = Capture;

  list.querySelectorAll("time[datetime]").forEach((el) => Capture.localTime(el));

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
  function markSpan(symbol, kind, label) {
    const mark = element("span", `mark ${kind}`, symbol);
    mark.setAttribute("role", "img");
    mark.setAttribute("aria-label", label);
    mark.title = label;
    return mark;
  }

  const messages = Capture.messageList(list, {
    removed: () => {
      setCount(-1);
      if (!list.querySelector("li.message") && !document.querySelector(".inbox-list .empty")) {
        // The last one gone: say so, as the server's empty page does.
        list.hidden = true;
        const empty = element("div", "empty");
        empty.append(element("p", "", "No mail here now; new mail appears as it arrives."));
        list.after(empty);
      }
    },
    starred: (row, starred) => {
      const marks = row.querySelector(".marks");
      const mark = marks.querySelector(".star");
      if (starred && !mark) marks.append(markSpan("★", "star", "Starred"));
      if (!starred && mark) mark.remove();
    },
    failed: (text) => showStatus(text, "down"),
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
  function rowFor(message) {
    const href = Capture.messagePath(inbox, message._id);
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
    Capture.localTime(time);
    link.append(time, element("span", "size", Capture.size(message.size)));
    row.append(link, Capture.rowActions(href, {
      star: Boolean(list.dataset.star), remove: Boolean(list.dataset.delete),
      starred: Boolean(message.savedBy),
    }));
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
    const from = (message.from || [])[0];
    const who = from ? (from.name || from.address) : "an unknown sender";
    if (list.dataset.live === "paused") {
      waiting += 1;
      showStatus(`${waiting} new since this page was loaded`, "live");
    } else {
      list.hidden = false;
      const empty = document.querySelector(".inbox-list .empty");
      if (empty) empty.remove();
      list.prepend(rowFor(message));
      setCount(1);
      messages.refresh();
      // The status is a polite live region: a screen reader hears it.
      showStatus(`New mail from ${who}: ${message.subject || "(no subject)"}`, "live");
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
  // Deleted elsewhere (the API, IMAP, another window): the row goes too.
  events.addEventListener("removed", (event) => {
    try { messages.removeId(JSON.parse(event.data)._id); } catch (error) { console.error(error); }
  });
  window.addEventListener("offline", () => showStatus("Offline; reconnecting…", "down"));
})();
