// The Triggers tab: a live preview of the expression being typed (POST /api/v1/triggers/preview,
// debounced), its description and next fire times in the chosen timezone, or the API's
// message naming the rule broken.
(function () {
  const form = document.querySelector("form.trigger-form");
  if (!form) return;
  const out = form.querySelector(".preview");
  const expression = form.querySelector("input[name=expression]");
  const zone = form.querySelector("input[name=timezone]");
  const csrf = (form.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";
  let timer = null;
  let seq = 0;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function show(body) {
    out.replaceChildren();
    out.appendChild(el("p", body.description, "preview-description"));
    const list = el("ol", undefined, "preview-times");
    for (const t of body.fire_times) {
      const item = el("li");
      const local = t.local.replace("T", " ").slice(0, 16);
      item.appendChild(el("span", local, "mono"));
      item.appendChild(el("span", " " + t.local.slice(19) + " · " + t.utc.replace("T", " ").slice(0, 16) + " UTC", "muted small"));
      list.appendChild(item);
    }
    if (!body.fire_times.length) out.appendChild(el("p", "No fire time left.", "muted"));
    else out.appendChild(list);
  }

  async function preview() {
    const mine = ++seq;
    if (!expression.value.trim()) {
      out.replaceChildren(el("p", "The next fire times show here as you type.", "muted"));
      return;
    }
    try {
      const response = await fetch(form.dataset.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ expression: expression.value, timezone: zone.value || "UTC" }),
      });
      const body = await response.json();
      if (mine !== seq) return; // a newer keystroke answered first
      if (response.ok) show(body);
      else out.replaceChildren(el("p", (body.error && body.error.message) || "Not a valid schedule.", "error"));
    } catch (e) {
      if (mine === seq) out.replaceChildren(el("p", "Preview unavailable: " + e.message, "error"));
    }
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
  }
  expression.addEventListener("input", later);
  zone.addEventListener("input", later);
  zone.addEventListener("change", later);
  preview();
})();
