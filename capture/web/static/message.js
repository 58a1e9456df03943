// The message page: tabs (click, arrow keys), "Load remote content" in
// place, and keyboard shortcuts: Delete or # deletes, s stars, u or Escape
// goes back to the inbox, Left/Right move between tabs.  Without this
// script the page still works: tabs are ?view= links, the buttons forms.
"use strict";

(() => {
  const article = document.querySelector("article.message");
  if (!article) return;
  const tabs = [...article.querySelectorAll('[role="tab"]')];

  function select(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    const url = new URL(location.href);
    url.searchParams.set("view", tab.dataset.view);
    history.replaceState(null, "", url);
  }

  function step(delta) {
    const now = tabs.findIndex((t) => t.getAttribute("aria-selected") === "true");
    const next = tabs[(now + delta + tabs.length) % tabs.length];
    select(next, article.contains(document.activeElement) || document.activeElement === document.body);
  }

  for (const tab of tabs) {
    tab.addEventListener("click", (event) => {
      event.preventDefault();
      select(tab, true);
    });
  }
  const tablist = article.querySelector('[role="tablist"]');
  tablist.addEventListener("keydown", (event) => {
    if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      select(tabs[event.key === "Home" ? 0 : tabs.length - 1], true);
    }
  });

  const load = document.getElementById("load-remote");
  if (load) {
    load.addEventListener("click", (event) => {
      event.preventDefault();
      const frame = document.getElementById("message-frame");
      // The sandbox is read when a frame navigates: a new frame, with
      // popups allowed (links open outside), still no scripts.
      const fresh = document.createElement("iframe");
      fresh.id = frame.id;
      fresh.title = frame.title;
      fresh.setAttribute("referrerpolicy", "no-referrer");
      fresh.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox");
      fresh.src = `${article.dataset.body}?remote=1`;
      frame.replaceWith(fresh);
      const notice = document.getElementById("remote-notice");
      notice.textContent = "Remote content is shown.";
      notice.classList.add("muted");
      const url = new URL(location.href);
      url.searchParams.set("remote", "1");
      history.replaceState(null, "", url);
      const htmlTab = document.getElementById("tab-html");
      htmlTab.href = "?view=html&remote=1";
    });
  }

  function submit(id) {
    const form = document.getElementById(id);
    if (form) form.requestSubmit();
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || Capture.typing(event)) return;
    switch (event.key) {
      case "Delete":
      case "#":
        submit("delete-form");
        break;
      case "s":
        submit("star-form");
        break;
      case "u":
      case "Escape":
        location.href = article.dataset.inbox;
        break;
      case "ArrowLeft":
      case "ArrowRight":
        // Inside a panel the arrows scroll it.
        if (document.activeElement && document.activeElement.closest('[role="tabpanel"]')) return;
        step(event.key === "ArrowLeft" ? -1 : 1);
        break;
      default:
        return;
    }
    event.preventDefault();
  });
})();
