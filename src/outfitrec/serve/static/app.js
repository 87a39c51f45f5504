// outfitrec web page: plain JS against the JSON API of outfitrec.serve.app (no build step).
"use strict";

const state = { user: null, picked: [], info: null };
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function itemImage(item, scale = 3) {
  const img = document.createElement("img");
  img.src = `${item.image}?scale=${scale}`;
  img.alt = `${item.category} ${item.name}`;
  img.title = `#${item.id} ${item.category} (${item.name})`;
  return img;
}

function outfitCard(outfit, rank) {
  const card = document.createElement("div");
  card.className = "outfit";
  const items = document.createElement("div");
  items.className = "items";
  outfit.items.forEach((item) => items.appendChild(itemImage(item)));
  card.appendChild(items);
  const meta = document.createElement("div");
  meta.className = "meta";
  const left = document.createElement("span");
  left.innerHTML = rank === undefined ? "" : `<span class="rank">#${rank}</span> `;
  left.append(outfit.template_name || outfit.items.map((i) => i.category).join(" + "));
  meta.appendChild(left);
  if (outfit.score !== null && outfit.score !== undefined) {
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = outfit.score.toFixed(3);
    meta.appendChild(score);
  }
  card.appendChild(meta);
  return card;
}

function showOutfits(containerId, outfits, ranked) {
  const container = $(containerId);
  container.replaceChildren();
  if (outfits.length === 0) {
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.textContent = "No outfits.";
    container.appendChild(empty);
    return;
  }
  outfits.forEach((o, i) => container.appendChild(outfitCard(o, ranked ? i + 1 : undefined)));
}

async function loadUsers() {
  const page = await api("/api/users?limit=1000");
  const select = $("user-select");
  page.users.forEach((u) => {
    const option = document.createElement("option");
    option.value = u.id;
    option.textContent = `user ${u.name} (${u.n_train} outfits)`;
    select.appendChild(option);
  });
  select.addEventListener("change", () => selectUser(Number(select.value)));
}

async function selectUser(user) {
  state.user = user;
  $("user-select").value = String(user);
  const history = await api(`/api/users/${user}/history`);
  if (state.user !== user) return; // another user was picked meanwhile
  showOutfits("history", history.outfits.slice(0, 24), false);
  $("history").dataset.user = String(user); // whose outfits are shown (tests wait on it)
  await recommend();
}

async function recommend() {
  const user = state.user;
  if (user === null) return;
  const k = Math.max(1, Math.min(50, Number($("k-input").value) || 8));
  setStatus("searching…");
  try {
    const result = await api("/api/recommend", { user, k, diverse: $("diverse-input").checked });
    if (state.user !== user) return; // a stale answer for a previously picked user
    showOutfits("recommendations", result.outfits, true);
    $("recommendations").dataset.user = String(user);
    $("rec-time").textContent = `(${(result.seconds * 1000).toFixed(0)} ms)`;
    setStatus("");
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function loadPicker() {
  const picker = $("picker");
  for (const category of state.info.categories) {
    const page = await api(`/api/items?category=${encodeURIComponent(category)}&limit=40`);
    const row = document.createElement("div");
    row.className = "picker-row";
    const label = document.createElement("span");
    label.className = "cat";
    label.textContent = category;
    const items = document.createElement("div");
    items.className = "picker-items";
    page.items.forEach((item) => {
      const img = itemImage(item, 2);
      img.dataset.item = item.id;
      img.addEventListener("click", () => togglePick(item, img));
      items.appendChild(img);
    });
    row.append(label, items);
    picker.appendChild(row);
  }
}

function togglePick(item, img) {
  const at = state.picked.findIndex((p) => p.id === item.id);
  if (at >= 0) {
    state.picked.splice(at, 1);
    img.classList.remove("selected");
  } else {
    state.picked.push(item);
    img.classList.add("selected");
  }
  renderPicked();
}

function renderPicked() {
  $("picked").replaceChildren(...state.picked.map((item) => itemImage(item, 2)));
  $("complete-button").disabled = state.picked.length === 0;
}

async function complete() {
  if (state.user === null || state.picked.length === 0) return;
  setStatus("completing…");
  try {
    const user = state.user;
    const result = await api("/api/complete", { user, items: state.picked.map((p) => p.id), k: 5 });
    if (state.user !== user) return;
    showOutfits("completions", result.outfits, true);
    setStatus("");
  } catch (err) {
    showOutfits("completions", [], false);
    setStatus(err.message, true);
  }
}

async function main() {
  try {
    state.info = await api("/api/info");
    $("model-info").textContent =
      `${state.info.dataset_name || "dataset"} · ${state.info.n_users} users · ${state.info.n_items} items · ` +
      `${state.info.backend} backend`;
    await loadUsers();
    $("recommend-button").addEventListener("click", recommend);
    $("complete-button").addEventListener("click", complete);
    $("clear-button").addEventListener("click", () => {
      state.picked = [];
      document.querySelectorAll(".picker-items img.selected").forEach((img) => img.classList.remove("selected"));
      renderPicked();
      showOutfits("completions", [], false);
    });
    if (state.info.n_users > 0 && state.user === null) await selectUser(0);
    await loadPicker();
  } catch (err) {
    setStatus(err.message, true);
  }
}

main();
