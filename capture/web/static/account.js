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
  const localTime = (el) => Capture.localTime(el, { dateStyle: "medium", timeStyle: "short" });
  document.querySelectorAll("time[datetime]").forEach(localTime);

  const list = document.getElementById("messages");
  if (!list) return;
  const summary = document.getElementById("summary");
  const account = list.dataset.account;
  function unreadBy(delta, news) {
    if (!summary) return;
    const unread = Math.max(0, Number(summary.dataset.unread || 0) + delta);
    summary.dataset.unread = String(unread);
    // The summary is a status region: a screen reader hears the news.
    summary.textContent = `${unread} unread.${news ? ` ${news}` : ""}`;
  }

  // j/k or the arrows move through the list, Enter opens, Delete deletes;
  // Star and Delete stay on the page.
  const messages = Capture.messageList(list, {
    removed: (row) => {
      if (row.classList.contains("unread")) unreadBy(-1);
      if (!list.querySelector("li.message")) list.append(Capture.element("li", "empty", "No mail here now."));
    },
    starred: (row, on) => {
      const mark = row.querySelector(".mark-star");
      mark.textContent = on ? "★" : "";
      mark.title = on ? "Starred" : "";
    },
    failed: (text) => { if (summary) summary.textContent = text; },
  });

  // A row for a message that arrived live, the same as the server's
  // (capture.web.accountpages.messageRow), built from its Mailsac JSON.
  const span = (className, text) => Capture.element("span", className, text);
  const row = (message) => {
    const li = Capture.element("li", "message unread new" + (message.savedBy ? " starred" : ""));
    li.dataset.id = message._id;
    const a = Capture.element("a", "row-link open");
    a.href = Capture.messagePath(message.inbox, message._id);
    a.tabIndex = -1;
    const sender = (message.from && message.from[0]) || null;
    const when = Capture.element("time");
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
    // What arrives here is the account's own mail (its addresses and
    // domains) or mail it starred; the server refuses what it may not do.
    li.append(a, Capture.rowActions(a.getAttribute("href"), {
      starred: Boolean(message.savedBy) && message.savedBy === account,
    }));
    return li;
  };

  const baseTitle = document.title;
  let arrived = 0;
  if (list.dataset.live === "1" && window.EventSource) {
    const source = new EventSource("/api/inbox/events");
    source.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (list.querySelector(`li[data-id="${CSS.escape(message._id)}"]`)) return;
      const empty = list.querySelector("li.empty");
      if (empty) empty.remove();
      list.prepend(row(message));
      messages.refresh();
      arrived += 1;
      document.title = `(${arrived}) ${baseTitle}`;
      const sender = (message.from && message.from[0]) || null;
      unreadBy(1, `New mail from ${sender ? (sender.name || sender.address) : "an unknown sender"}: `
        + `${message.subject || "(no subject)"}`);
    });
    // Deleted elsewhere (the API, IMAP, another window): the row goes too.
    source.addEventListener("removed", (event) => {
      try { messages.removeId(JSON.parse(event.data)._id); } catch (error) { console.error(error); }
    });
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { arrived = 0; document.title = baseTitle; }
  });
})();
