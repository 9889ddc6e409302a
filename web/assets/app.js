// The haul dashboard's only script: confirmations before destructive actions, and
// an auto-refresh of `main#content` every `data-refresh-ms` milliseconds.
//
// The refresh leaves the page alone while the user is busy with it (something in the
// content has the focus, a mouse button is down, text is selected, a form was just sent,
// the tab is hidden), swaps nothing when the content has not changed, and keeps a form whose
// fields the user changed. An action's flash message (`?notice=`) is shown once: it
// is dropped from the address, so the refresh, a reload or a bookmark do not show it
// again; the banner stays until NOTICE_MS have passed.
(function () {
  "use strict";

  // How long an action's notice stays on the page across refreshes.
  var NOTICE_MS = 8000;

  // The longest a refresh may take before it is given up.
  var FETCH_TIMEOUT_MS = 10000;
  // The longest delay setTimeout takes (a longer one fires at once).
  var MAX_DELAY_MS = 2147483647;

  var confirming = false;
  var pointerDown = false;
  var submitting = false;
  var noticeShownAt = null;

  // Every form with a `data-confirm` asks before it is sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    confirming = true;
    var ok = false;
    try {
      ok = window.confirm(question);
    } finally {
      confirming = false;
    }
    if (!ok) {
      event.preventDefault();
      return;
    }
    // Sent: no refresh swaps in a fresh copy of the form to be sent again meanwhile.
    submitting = true;
    if (event.submitter) event.submitter.disabled = true;
  });

  // A press that a swap would split (down on the old button, up on the new one) is a
  // lost click: no refresh while a button is held.
  // Only the primary button: a right click opens a menu and its release never arrives.
  document.addEventListener("pointerdown", function (event) { pointerDown = event.button === 0; }, true);
  ["pointerup", "pointercancel", "contextmenu", "dragstart"].forEach(function (name) {
    document.addEventListener(name, function () { pointerDown = false; }, true);
  });
  window.addEventListener("blur", function () { pointerDown = false; });

  // Whether the user has selected some text (e.g. to copy an error).
  function selecting() {
    var selection = window.getSelection ? window.getSelection() : null;
    return !!selection && !selection.isCollapsed && selection.toString() !== "";
  }

  // Whether the user is busy with the page: a refresh would throw their work away.
  function busy() {
    if (confirming || pointerDown || submitting || document.hidden || selecting()) return true;
    // Anything focused in the content (a field, a button, a link: keyboard users) would
    // lose its focus to the swap.
    var active = document.activeElement;
    var content = document.getElementById("content");
    return !!active && active !== document.body && !!content && content.contains(active);
  }

  // The page's address without `notice`.
  function withoutNotice(href) {
    var url = new URL(href);
    if (!url.searchParams.has("notice")) return href;
    url.searchParams.delete("notice");
    return url.toString();
  }

  // Drops `notice` from the address bar (and so from a reload or a bookmark).
  function forgetNotice() {
    var href = window.location.href;
    var clean = withoutNotice(href);
    if (clean === href) return;
    if (document.getElementById("notice")) noticeShownAt = Date.now();
    try {
      window.history.replaceState(window.history.state, "", clean);
    } catch (error) {
      // An address the history refuses: the notice stays in it, nothing else changes.
    }
  }

  // Whether a field of `form` holds something else than the page rendered.
  function edited(form) {
    for (var i = 0; i < form.elements.length; i++) {
      var field = form.elements[i];
      if (field instanceof HTMLSelectElement) {
        for (var j = 0; j < field.options.length; j++) {
          var option = field.options[j];
          var rendered = option.defaultSelected || (j === 0 && !hasDefault(field));
          if (option.selected !== rendered) return true;
        }
      } else if (field instanceof HTMLInputElement && (field.type === "checkbox" || field.type === "radio")) {
        if (field.checked !== field.defaultChecked) return true;
      } else if (field instanceof HTMLInputElement || field instanceof HTMLTextAreaElement) {
        if (field.value !== field.defaultValue) return true;
      }
    }
    return false;
  }

  function hasDefault(select) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].defaultSelected) return true;
    }
    return false;
  }

  // Puts `current`'s forms the user edited in place of their new copies in `next`.
  function keepEditedForms(current, next) {
    var forms = current.querySelectorAll("form[id]");
    for (var i = 0; i < forms.length; i++) {
      var form = forms[i];
      if (!edited(form)) continue;
      var replacement = next.querySelector("form#" + CSS.escape(form.getAttribute("id")));
      if (replacement) replacement.replaceWith(form);
    }
  }

  // Carries a young notice over into `next`, which (fetched without `notice`) has none.
  function keepNotice(current, next) {
    var notice = current.querySelector("#notice");
    if (!notice || next.querySelector("#notice")) return;
    if (noticeShownAt === null || Date.now() - noticeShownAt >= NOTICE_MS) return;
    next.insertBefore(document.importNode(notice, true), next.firstChild);
  }

  function refresh() {
    if (busy()) return Promise.resolve();
    var controller = new AbortController();
    var timer = window.setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    return fetch(withoutNotice(window.location.href), {
      credentials: "same-origin",
      cache: "no-store",
      redirect: "manual",
      signal: controller.signal,
    })
      .then(function (response) {
        window.clearTimeout(timer);
        // Signed out, or sent elsewhere (an application's login page in front of a
        // mounted dashboard): reload, so the browser shows what the server wants.
        if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
          window.location.reload();
          return null;
        }
        var type = response.headers.get("content-type") || "";
        if (!response.ok || type.indexOf("text/html") !== 0) return null;
        return response.text();
      })
      .then(function (text) {
        if (text === null || busy()) return;
        var parsed = new DOMParser().parseFromString(text, "text/html").getElementById("content");
        var current = document.getElementById("content");
        if (!parsed || !current) return;
        var next = document.importNode(parsed, true);
        keepNotice(current, next);
        // Unchanged: nothing to swap, so nothing under the pointer or selected moves.
        if (next.innerHTML === current.innerHTML) return;
        keepEditedForms(current, next);
        current.replaceWith(next);
      })
      .catch(function () {
        // Unreachable or timed out for now; the next tick tries again.
        window.clearTimeout(timer);
      });
  }

  function start() {
    forgetNotice();
    var every = parseInt(document.body.getAttribute("data-refresh-ms") || "0", 10);
    if (!(every > 0)) return;
    every = Math.min(every, MAX_DELAY_MS);
    var schedule = function () {
      window.setTimeout(function () {
        refresh().then(schedule, schedule);
      }, every);
    };
    schedule();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
