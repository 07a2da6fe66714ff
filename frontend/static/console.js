// The console's small shared behaviours (console-design.md): copy buttons, confirm dialogs
// before destructive or production actions, times in the viewer's timezone, and closing the
// top bar's menus. Pages read fine without it; forms then post without the confirmation.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="value">.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    event.preventDefault();
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
    } catch (err) {
      // Not a secure context (http on another host): select the text for Ctrl+C instead.
      const code = button.parentElement.querySelector("code");
      if (code) window.getSelection().selectAllChildren(code);
    }
    const label = button.textContent;
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => {
      button.textContent = label;
      button.classList.remove("copied");
    }, 1500);
  });

  // Confirm dialogs: <form data-confirm="text"> or <form data-confirm-dialog="dialog id">.
  // A <dialog> (showModal) traps focus and closes on Escape.
  function confirmDialog(form) {
    let dialog;
    if (form.dataset.confirmDialog) {
      dialog = document.getElementById(form.dataset.confirmDialog);
    } else {
      dialog = document.getElementById("confirm-dialog");
      if (!dialog) {
        dialog = document.createElement("dialog");
        dialog.id = "confirm-dialog";
        dialog.setAttribute("aria-labelledby", "confirm-dialog-text");
        dialog.innerHTML =
          '<p id="confirm-dialog-text"></p><div class="actions">' +
          '<button type="button" class="secondary" value="cancel">Cancel</button>' +
          '<button type="button" value="confirm" data-testid="confirm">Confirm</button></div>';
        document.body.appendChild(dialog);
      }
      dialog.querySelector("#confirm-dialog-text").textContent = form.dataset.confirm;
    }
    return dialog;
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form.dataset.confirm || form.dataset.confirmDialog) || form.dataset.confirmed === "1") return;
    event.preventDefault();
    const submitter = event.submitter;
    const dialog = confirmDialog(form);
    const onClick = (e) => {
      const button = e.target.closest("button[value]");
      if (!button || !dialog.contains(button)) return;
      dialog.removeEventListener("click", onClick);
      dialog.close();
      if (button.value === "confirm") {
        // Inputs inside the dialog (a picked version, a typed name) travel with the form.
        dialog.querySelectorAll("[data-form-field]").forEach((field) => {
          let hidden = form.querySelector(`input[type=hidden][name="${field.name}"]`);
          if (!hidden) {
            hidden = document.createElement("input");
            hidden.type = "hidden";
            hidden.name = field.name;
            form.appendChild(hidden);
          }
          hidden.value = field.value;
        });
        form.dataset.confirmed = "1";
        form.requestSubmit(submitter && form.contains(submitter) ? submitter : undefined);
        form.dataset.confirmed = "";
      }
    };
    dialog.addEventListener("click", onClick);
    dialog.addEventListener("close", () => dialog.removeEventListener("click", onClick), { once: true });
    dialog.showModal();
    const confirmButton = dialog.querySelector("button[value=confirm]");
    if (confirmButton) confirmButton.focus();
  });

  // Times: "3 min ago" with the exact local time on hover (the server wrote UTC).
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) el.title = date.toLocaleString() + " (" + el.title + ")";
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    // On a narrow screen the function's tab bar scrolls: keep the current tab in view.
    const current = document.querySelector(".tabs [aria-current]");
    if (current) current.scrollIntoView({ block: "nearest", inline: "center" });
  });
  // A live part polling after the session ended would get the login page back (a redirect
  // htmx follows): reload the page instead, so the sign-in form shows whole.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr && xhr.responseURL && new URL(xhr.responseURL).pathname === "/login/") {
      event.detail.shouldSwap = false;
      window.location.reload();
    }
  });
  document.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));

  // Menus in the top bar close on Escape and on a click elsewhere.
  document.addEventListener("click", (event) => {
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });
})();
