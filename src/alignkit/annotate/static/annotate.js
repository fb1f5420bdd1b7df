// alignkit annotate: keyboard shortcuts for the task page. Plain JavaScript, no dependencies; every form
// also works without it (radio buttons, a ranking text box, buttons).
(function () {
  "use strict";
  const form = document.getElementById("task");
  if (!form) return;
  const task = form.dataset.task;
  const k = parseInt(form.dataset.k, 10);
  const responses = Array.from(form.querySelectorAll(".response"));
  const ranking = document.getElementById("ranking");
  let current = 1; // the response that rating keys apply to

  function submit(buttonId) {
    const button = document.getElementById(buttonId);
    if (form.requestSubmit) form.requestSubmit(button); else button.click();
  }

  function choose(value) {
    const radio = form.querySelector('input[name="choice"][value="' + value + '"]');
    radio.checked = true;
    responses.forEach(function (box, i) {
      box.classList.toggle("chosen", (value === "A" && i === 0) || (value === "B" && i === 1) || value === "tie");
    });
  }

  function rankedNumbers() {
    return ranking.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function showRanks() {
    const numbers = rankedNumbers();
    responses.forEach(function (box) {
      let badge = box.querySelector(".rank");
      const place = numbers.indexOf(box.dataset.response);
      if (place < 0) { if (badge) badge.remove(); box.classList.remove("chosen"); return; }
      if (!badge) { badge = document.createElement("span"); badge.className = "rank"; box.prepend(badge); }
      badge.textContent = String(place + 1);
      box.classList.add("chosen");
    });
  }

  function rank(number) {
    const numbers = rankedNumbers();
    if (numbers.indexOf(String(number)) >= 0) return;
    numbers.push(String(number));
    // The last response left over needs no key press.
    if (numbers.length === k - 1) {
      for (let n = 1; n <= k; n++) if (numbers.indexOf(String(n)) < 0) numbers.push(String(n));
    }
    ranking.value = numbers.join(",");
    showRanks();
  }

  function focusResponse(number) {
    current = Math.min(Math.max(number, 1), k);
    responses.forEach(function (box, i) { box.classList.toggle("current", i + 1 === current); });
  }

  function rate(value) {
    const radio = form.querySelector('input[name="rating_' + current + '"][value="' + value + '"]');
    radio.checked = true;
    if (current < k) focusResponse(current + 1);
  }

  if (task === "rating") focusResponse(1);
  if (ranking) ranking.addEventListener("input", showRanks);

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    const typing = target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text") ||
                   target.tagName === "SELECT";
    if (event.ctrlKey || event.metaKey || event.altKey) {
      if (typing && event.key === "Enter") { event.preventDefault(); submit("submit"); }
      return;
    }
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    const key = event.key;
    let handled = true;
    if (key === "Enter") submit("submit");
    else if (key === "s") submit("skip");
    else if (key === "r") form.querySelector("textarea[name=reason]").focus();
    else if (key === "g") { const d = document.querySelector("details.guidelines"); d.open = !d.open; }
    else if (task === "pairwise" && ({a: "A", b: "B", t: "tie", x: "both_bad"})[key]) {
      choose(({a: "A", b: "B", t: "tie", x: "both_bad"})[key]);
    } else if (task === "ranking" && /^[1-9]$/.test(key) && parseInt(key, 10) <= k) rank(parseInt(key, 10));
    else if (task === "ranking" && key === "Backspace") {
      ranking.value = rankedNumbers().slice(0, -1).join(",");
      showRanks();
    } else if (task === "rating" && /^[1-7]$/.test(key)) rate(key);
    else if (task === "rating" && (key === "ArrowRight" || key === "ArrowDown")) focusResponse(current + 1);
    else if (task === "rating" && (key === "ArrowLeft" || key === "ArrowUp")) focusResponse(current - 1);
    else handled = false;
    if (handled) event.preventDefault();
  });
})();
