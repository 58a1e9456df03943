// What every page shares; each page's own script (inbox.js, message.js,
// account.js) builds on it.  No framework, no build step.
"use strict";

const Capture = {
  /** The CSRF token of this browser, for requests that change state. */
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  /** POST a form-encoded body with the CSRF token; resolves to the response. */
  post(url, fields = {}) {
    const body = new URLSearchParams(fields);
    body.set("csrf", Capture.csrf());
    return fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { "X-Capture-CSRF": Capture.csrf(), Accept: "application/json" },
    });
  },

  /** A human size: 1.2 KB, 34 KB, 2.1 MB. */
  size(octets) {
    if (octets < 1000) return `${octets} B`;
    if (octets < 1e6) return `${(octets / 1e3).toFixed(octets < 1e4 ? 1 : 0)} KB`;
    return `${(octets / 1e6).toFixed(1)} MB`;
  },

  /** Whether a key press belongs to a text field (then shortcuts stay off). */
  typing(event) {
    const t = event.target;
    return t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  },

  /** An element with a class and text (always text: mail is never HTML here). */
  element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  },

  /** A message's page path: /inbox/<address>/<id>. */
  messagePath(inbox, id) {
    const address = encodeURIComponent(inbox).replace(/%40/g, "@").replace(/%2B/g, "+");
    return `/inbox/${address}/${encodeURIComponent(id)}`;
  },

  /**
   * The Star and Delete forms of a row, as the server renders them
   * (capture.web.inboxpages): they work without script, and
   * Capture.messageList sends them with fetch.
   */
  rowActions(href, { star = true, remove = true, starred = false } = {}) {
    const actions = Capture.element("div", "actions");
    const form = (action, className, button, fields) => {
      const f = Capture.element("form", `inline ${className}`);
      f.method = "post";
      f.action = action;
      for (const [name, value] of Object.entries({ csrf: Capture.csrf(), ...fields })) {
        const input = Capture.element("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        f.append(input);
      }
      f.append(button);
      return f;
    };
    if (star) {
      const button = Capture.element("button", "secondary star-button", starred ? "Unstar" : "Star");
      button.type = "submit";
      button.setAttribute("aria-pressed", String(starred));
      actions.append(form(`${href}/star`, "star-form", button, { starred: starred ? "0" : "1" }));
    }
    if (remove) {
      const button = Capture.element("button", "danger delete-button", "Delete");
      button.type = "submit";
      actions.append(form(`${href}/delete`, "delete-form", button, {}));
    }
    return actions;
  },

  /**
   * A keyboard-usable list of messages: rows are li.message, each with an
   * a.open link and optionally form.star-form and form.delete-form.
   * j/k or the arrows move a selection (its link is the one in the tab
   * order), Enter opens, Delete or # deletes, / goes to the search field
   * (#q); the forms are sent with
   * fetch so the page stays.  Hooks: removed(row), starred(row, on),
   * failed(text).  Returns { refresh() } to call after adding rows, and
   * { removeId(id) } for a message deleted elsewhere (the stream's
   * "removed" event); either way a row goes once and the selection moves
   * to its neighbour.
   */
  messageList(list, hooks = {}) {
    const rows = () => Array.from(list.querySelectorAll("li.message"));
    const linkOf = (row) => row.querySelector("a.open");
    let selected = null;

    function select(row, focus = true) {
      if (selected && selected !== row && selected.isConnected) {
        selected.classList.remove("selected");
        linkOf(selected).removeAttribute("aria-current");
        linkOf(selected).tabIndex = -1;
      }
      selected = row;
      if (!row) return;
      row.classList.add("selected");
      const link = linkOf(row);
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
    function refresh() {
      if (selected && selected.isConnected) return;
      rows().forEach((row, i) => { linkOf(row).tabIndex = i === 0 ? 0 : -1; });
    }
    refresh();
    list.addEventListener("focusin", (event) => {
      const row = event.target.closest("li.message");
      if (row && row !== selected) select(row, false);
    });

    async function remove(row) {
      const form = row.querySelector("form.delete-form");
      if (!form) return;
      const response = await Capture.post(form.action).catch(() => null);
      if (!response || !response.ok) {
        const answer = response ? await response.json().catch(() => null) : null;
        (hooks.failed || (() => {}))(
          `Could not delete that message${answer && answer.message ? ` (${answer.message})` : ""}; reload and try again.`);
        return;
      }
      drop(row, true);
    }
    function drop(row, byUser) {
      // Deleted here and announced by the stream too: the later one finds
      // the row gone and does nothing, so counts change once.
      if (!row.isConnected) return;
      const all = rows();
      const at = all.indexOf(row);
      const next = all[at + 1] || all[at - 1] || null;
      const wasSelected = row === selected;
      const hadFocus = row.contains(document.activeElement) || (byUser && wasSelected);
      row.remove();
      if (wasSelected) selected = null;
      // A row deleted elsewhere moves the selection only if it held it,
      // and focus only if it had it: a vanishing row never pulls focus.
      if (next && (byUser || wasSelected || hadFocus)) select(next, hadFocus);
      else refresh();
      (hooks.removed || (() => {}))(row);
    }
    function removeId(id) {
      const row = rows().find((one) => one.dataset.id === id);
      if (row) drop(row);
    }
    async function toggleStar(form) {
      const field = form.querySelector("input[name=starred]");
      const response = await Capture.post(form.action, { starred: field.value }).catch(() => null);
      if (!response || !response.ok) {
        (hooks.failed || (() => {}))("Could not star that message; reload and try again.");
        return;
      }
      const starred = field.value === "1";
      field.value = starred ? "0" : "1";
      const button = form.querySelector("button");
      button.textContent = starred ? "Unstar" : "Star";
      button.setAttribute("aria-pressed", String(starred));
      const row = form.closest("li.message");
      row.classList.toggle("starred", starred);
      (hooks.starred || (() => {}))(row, starred);
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

    document.addEventListener("keydown", (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey || Capture.typing(event)) return;
      const key = event.key;
      if (key === "j" || key === "ArrowDown") { event.preventDefault(); move(1); }
      else if (key === "k" || key === "ArrowUp") { event.preventDefault(); move(-1); }
      else if (key === "Enter" && selected && document.activeElement === document.body) {
        window.location.assign(linkOf(selected).href);
      } else if ((key === "Delete" || key === "#") && selected && selected.isConnected) {
        event.preventDefault();
        remove(selected);
      } else if (key === "/" && document.getElementById("q")) {
        event.preventDefault();
        const search = document.getElementById("q");
        search.focus();
        search.select();
      }
    });
    return { refresh, removeId };
  },

  /** Times in the reader's own zone (a <time datetime> element). */
  localTime(el, options) {
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) return;
    const now = new Date();
    el.title = when.toLocaleString();
    el.textContent = options ? when.toLocaleString(undefined, options)
      : when.toDateString() === now.toDateString()
        ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
        : when.toLocaleDateString([], when.getFullYear() === now.getFullYear()
          ? { day: "numeric", month: "short" } : { day: "numeric", month: "short", year: "numeric" });
  },
};
window.Capture = Capture;
