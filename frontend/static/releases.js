// Release cards (frontend/templates/releases/_card.html) poll every 500 ms while the release
// is active. Two things a swap must not do to a person using the card: replace the form
// behind an open confirm dialog (the confirmation would submit nothing), or drop the
// keyboard focus from the button they are on.
(function () {
  "use strict";
  let focused = null;

  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    if (!target || !target.matches("[data-live-release]")) return;
    if (document.querySelector("dialog[open]")) {
      event.detail.shouldSwap = false; // the next poll brings the change once the dialog closes
      return;
    }
    const active = document.activeElement;
    const holder = active && target.contains(active) ? active.closest("[data-testid]") : null;
    focused = holder && holder !== target ? holder.dataset.testid : null;
  });

  document.addEventListener("htmx:afterSwap", () => {
    if (!focused) return;
    const holder = document.querySelector(`[data-testid="${CSS.escape(focused)}"]`);
    focused = null;
    if (!holder) return;
    const target = holder.matches("a, button, [tabindex]")
      ? holder
      : holder.querySelector("button:not([disabled]), a, [tabindex]");
    if (target) target.focus();
  });
})();
