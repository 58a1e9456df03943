// The signed-in pages: live new mail and keyboard moves in the unified
// inbox; confirmations and the copy button in the settings.
"use strict";

(() => {
  // Forms that destroy something ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // The new API key: copy it to the clipboard.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (_) {
        document.execCommand("copy");
      }
      button.textContent = "Copied";
    });
  }

  // Times in the reader's own zone.
  const localTime = (element) => {
    const when = new Date(element.getAttribute("datetime"));
    if (!isNaN(when)) {
      element.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      element.title = element.getAttribute("datetime");
    }
  };
  document.querySelectorAll("time[datetime]").forEach(localTime);

  const list = document.getElementById("messages");
  if (!list) return;

  // A row for a message that arrived live, the same as the server's
  // (capture.web.accountpages.messageRow), built from its Mailsac JSON.
  const span = (className, text) => {
    const s = document.createElement("span");
    s.className = className;
    s.textContent = text;
    return s;
  };
  const row = (message) => {
    const li = document.createElement("li");
    li.className = "message unread new" + (message.savedBy ? " starred" : "");
    li.dataset.id = message._id;
    const a = document.createElement("a");
    a.className = "row-link";
    a.href = `/inbox/${encodeURIComponent(message.inbox).replace(/%40/g, "@").replace(/%2B/g, "+")}/${encodeURIComponent(message._id)}`;
    const sender = (message.from && message.from[0]) || null;
    const when = document.createElement("time");
    when.setAttribute("datetime", message.received);
    localTime(when);
    const whenSpan = span("when", "");
    whenSpan.append(when);
    a.append(
      span("mark-unread", "Unread"),
      span("mark-star", message.savedBy ? "★" : ""),
      span("from", sender ? (sender.name || sender.address) : "(no sender)"),
      span("subject", message.subject || "(no subject)"),
      span("inbox", message.inbox),
      whenSpan,
      span("size", Capture.size(message.size)),
      span("mark-attachment", message.attachments && message.attachments.length ? "📎" : ""),
    );
    li.append(a);
    return li;
  };

  const baseTitle = document.title;
  let arrived = 0;
  const summary = document.getElementById("summary");
  if (list.dataset.live === "1" && window.EventSource) {
    const source = new EventSource("/api/inbox/events");
    source.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (list.querySelector(`li[data-id="${CSS.escape(message._id)}"]`)) return;
      const empty = list.querySelector("li.empty");
      if (empty) empty.remove();
      list.prepend(row(message));
      arrived += 1;
      document.title = `(${arrived}) ${baseTitle}`;
      if (summary) {
        const unread = Number(summary.dataset.unread || 0) + 1;
        summary.dataset.unread = String(unread);
        summary.textContent = `${unread} unread.`;
      }
    });
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { arrived = 0; document.title = baseTitle; }
  });

  // j/k or the arrows move through the list; Enter opens.
  let active = -1;
  const rows = () => Array.from(list.querySelectorAll("li.message"));
  const move = (step) => {
    const all = rows();
    if (!all.length) return;
    active = Math.max(0, Math.min(all.length - 1, active + step));
    all.forEach((li, i) => li.classList.toggle("active", i === active));
    all[active].querySelector("a").focus();
  };
  document.addEventListener("keydown", (event) => {
    if (Capture.typing(event) || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "j" || event.key === "ArrowDown") { move(1); event.preventDefault(); }
    else if (event.key === "k" || event.key === "ArrowUp") { move(-1); event.preventDefault(); }
  });
})();
