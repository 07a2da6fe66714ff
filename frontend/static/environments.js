// The "Environments & traffic" tab (apps/functions/pages/environments.py). The page works
// without it; this makes the confirmations name the picked version and adds rule rows.
(function () {
  "use strict";

  // A form whose <select> options carry data-confirm: the confirm dialog (console.js) names
  // the option picked, not a generic "the chosen version".
  function syncConfirm(select) {
    const form = select.form;
    const option = select.selectedOptions[0];
    if (form && form.dataset.confirm !== undefined && option && option.dataset.confirm) {
      form.dataset.confirm = option.dataset.confirm;
    }
  }

  // The rollback dialog shows the details of the version picked in it, and its button names it.
  function syncRollback(select) {
    const dialog = select.closest("dialog");
    if (!dialog) return;
    dialog.querySelectorAll("[data-rollback-detail]").forEach((detail) => {
      detail.hidden = detail.dataset.rollbackDetail !== select.value;
    });
    const confirm = dialog.querySelector("[data-rollback-confirm]");
    if (confirm) confirm.textContent = "Roll back to v" + select.value;
  }

  document.addEventListener("change", (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement)) return;
    if (select.matches("[data-rollback-select]")) syncRollback(select);
    else syncConfirm(select);
  });

  // "Add a rule": a copy of the last (blank) row of the rules table.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-add-rule]");
    if (!button) return;
    const body = button.closest("form").querySelector("[data-rules-body]");
    const last = body.querySelector("tr.rule-row:last-child");
    if (!last) return;
    const row = last.cloneNode(true);
    const n = body.querySelectorAll("tr.rule-row").length + 1;
    row.querySelectorAll("input").forEach((input) => (input.value = ""));
    row.querySelectorAll(".field-error").forEach((el) => el.remove());
    row.querySelectorAll("[aria-label]").forEach((el) => {
      el.setAttribute("aria-label", el.getAttribute("aria-label").replace(/^Rule \d+/, "Rule " + n));
    });
    body.appendChild(row);
    row.querySelector("input[name=rule_name]").focus();
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-confirm] select").forEach(syncConfirm);
    document.querySelectorAll("select[data-rollback-select]").forEach(syncRollback);
  });
})();
