// The ttsfleet playground: submits a job with the key kept in localStorage, polls it until it
// ends, plays its audio while it is made (the WAV stream, through Web Audio) and then the
// whole file. No framework and no build step, so the API can serve it as is.
"use strict";

const KEY_STORAGE = "ttsfleet.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const $ = (id) => document.getElementById(id);

let currentJob = null; // id of the job shown in the Job card
let audioUrl = null; // object URL of the audio shown, revoked when replaced
let live = null; // {jobId, context}: the job being heard while it is made

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// Every call goes through here so that an error reads exactly as the API words it.
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError("network_error", `the API is unreachable (${err.message})`);
  }
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // not JSON: fall back to the status line below
  }
  if (body && body.error) throw new ApiError(body.error.code, body.error.message);
  throw new ApiError(`http_${response.status}`, response.statusText || "request failed");
}

function showError(err) {
  $("error-code").textContent = err.code || "error";
  $("error-message").textContent = err.message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function describeJob(job) {
  const parts = [job.voice, job.format, `${job.sample_rate} Hz`];
  if (job.audio) parts.push(`${job.audio.duration_s.toFixed(2)} s`, formatBytes(job.audio.bytes));
  if (job.started_at && job.finished_at) {
    const ms = Date.parse(job.finished_at) - Date.parse(job.created_at);
    parts.push(`done in ${ms} ms`);
  }
  if (job.progress && !TERMINAL.has(job.status)) {
    const { pieces_done: done, pieces_total: total, audio_s: made } = job.progress;
    parts.push(`piece ${done} of ${total}, ${made.toFixed(1)} s made`);
  }
  if (job.error) parts.push(`${job.error.code}: ${job.error.message}`);
  return parts.join(" · ");
}

function formatBytes(n) {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

function showJob(job) {
  $("job-empty").hidden = true;
  $("job").hidden = false;
  $("job-id").textContent = job.id;
  const status = $("job-status");
  status.textContent = job.status;
  status.dataset.status = job.status;
  $("job-details").textContent = describeJob(job);
  const order = ["queued", "running", "succeeded"];
  const reached = order.indexOf(job.status);
  for (const step of document.querySelectorAll(".steps li")) {
    const index = order.indexOf(step.dataset.step);
    step.classList.toggle("done", reached >= 0 && index <= reached);
    step.classList.toggle("failed", !order.includes(job.status) && index === 2);
    if (index === 2 && !order.includes(job.status)) step.textContent = job.status;
    else if (index === 2) step.textContent = "succeeded";
  }
}

function resetAudio() {
  const player = $("player");
  player.removeAttribute("src");
  player.load();
  $("download").hidden = true;
  if (audioUrl) URL.revokeObjectURL(audioUrl);
  audioUrl = null;
}

// The audio endpoint needs the bearer header, which <audio src> cannot send: fetch a blob.
async function loadAudio(job) {
  const response = await api(job.audio.url);
  const blob = await response.blob();
  if (currentJob !== job.id) return;
  resetAudio();
  audioUrl = URL.createObjectURL(blob);
  $("player").src = audioUrl;
  const link = $("download");
  link.href = audioUrl;
  // Telephony formats are WAV files.
  const extension = { mulaw: "wav", alaw: "wav" }[job.format] || job.format;
  link.download = `${job.id}.${extension}`;
  link.textContent = `Download ${job.format.toUpperCase()} (${formatBytes(blob.size)})`;
  link.hidden = false;
}

// The stream endpoint sends the job's audio while it is made; for every format but mp3 and
// opus it is 16-bit WAV with an open length, so each chunk's samples can be scheduled right
// away, back to back, on an AudioContext (made in the click that submitted, so it may
// play). An mp3 or opus job is played once it is whole.
async function listen(jobId, context) {
  let response = null;
  while (!response) {
    try {
      response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/audio/stream`);
    } catch (err) {
      // No audio yet (a queue ahead of the job) is asked again while the job is being
      // followed; a job that ended without audio is shown by `follow`, not here.
      if (err.code !== "job_not_finished") throw err;
      if (!live || live.jobId !== jobId || TERMINAL.has($("job-status").textContent)) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  const note = $("live");
  if (response.headers.get("content-type") !== "audio/wav" || !response.body) {
    response.body && response.body.cancel();
    return;
  }
  const reader = response.body.getReader();
  let pending = new Uint8Array(0);
  let rate = 0;
  let next = 0;
  let received = 0;
  note.hidden = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done || !live || live.jobId !== jobId) break;
    const joined = new Uint8Array(pending.length + value.length);
    joined.set(pending);
    joined.set(value, pending.length);
    pending = joined;
    if (!rate) {
      if (pending.length < 44) continue;
      rate = new DataView(pending.buffer).getUint32(24, true);
      pending = pending.slice(44);
    }
    const usable = pending.length - (pending.length % 2);
    if (!usable) continue;
    const pcm = new Int16Array(pending.slice(0, usable).buffer);
    pending = pending.slice(usable);
    const buffer = context.createBuffer(1, pcm.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    next = Math.max(next, context.currentTime + 0.05);
    source.start(next);
    next += buffer.duration;
    received += buffer.duration;
    note.dataset.seconds = received.toFixed(3);
    note.textContent = `Playing while it is made: ${received.toFixed(1)} s received.`;
  }
  if (live && live.jobId === jobId && rate) {
    note.textContent = `Heard while it was made: ${received.toFixed(1)} s. The whole file is below.`;
  }
}

function stopListening() {
  if (live) live.context.close();
  live = null;
  $("live").hidden = true;
  delete $("live").dataset.seconds;
}

// Poll quickly at first (a short sentence takes well under a second), then back off.
async function follow(jobId) {
  let delay = 150;
  for (;;) {
    if (currentJob !== jobId) return;
    const job = await (await api(`/v1/jobs/${encodeURIComponent(jobId)}`)).json();
    if (currentJob !== jobId) return;
    showJob(job);
    if (TERMINAL.has(job.status)) {
      if (job.status === "succeeded") await loadAudio(job);
      await refreshRecent();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 1.5, 1000);
  }
}

async function openJob(jobId) {
  clearError();
  stopListening();
  currentJob = jobId;
  resetAudio();
  try {
    await follow(jobId);
  } catch (err) {
    showError(err);
  }
}

async function submitJob(event) {
  event.preventDefault();
  clearError();
  const text = $("text").value;
  const body = {
    text,
    speed: Number($("speed").value),
    format: $("format").value,
    metadata: { source: "playground", preview: text.trim().slice(0, 80) },
  };
  if ($("voice").value) body.voice = $("voice").value;
  if ($("loudness").value !== "") body.loudness_lufs = Number($("loudness").value);
  const button = $("submit");
  button.disabled = true;
  stopListening();
  const context = window.AudioContext ? new AudioContext() : null;
  try {
    const response = await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const job = await response.json();
    currentJob = job.id;
    resetAudio();
    showJob(job);
    refreshRecent().catch(showError);
    if (context && job.format !== "mp3") {
      live = { jobId: job.id, context };
      listen(job.id, context).catch(showError);
    } else if (context) {
      context.close();
    }
    await follow(job.id);
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

async function loadVoices() {
  const voices = await (await api("/v1/voices")).json();
  const select = $("voice");
  const chosen = select.value;
  select.replaceChildren();
  for (const voice of voices) {
    const option = document.createElement("option");
    option.value = voice.id;
    option.textContent = voice.id;
    option.title = `${voice.engine}, ${voice.language}, ${voice.sample_rate} Hz`;
    select.append(option);
  }
  if (chosen) select.value = chosen;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function refreshRecent() {
  const { jobs } = await (await api("/v1/jobs?limit=20")).json();
  const tbody = document.querySelector("#recent tbody");
  tbody.replaceChildren();
  for (const job of jobs) {
    const row = document.createElement("tr");
    row.dataset.jobId = job.id;
    const created = new Date(job.created_at).toLocaleTimeString();
    // Jobs sent from elsewhere carry no preview of their text: show their id, muted.
    const preview = job.metadata && job.metadata.preview;
    const length = job.audio ? `${job.audio.duration_s.toFixed(2)} s` : "–";
    const status = cell(job.status, "status");
    status.dataset.status = job.status;
    const text = preview ? cell(preview, "preview") : cell(job.id, "preview muted");
    row.append(cell(created), text, cell(job.voice), cell(job.format));
    row.append(cell(length, "num"), status);
    const actions = document.createElement("td");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "secondary small";
    open.textContent = "Open";
    open.setAttribute("aria-label", `Open job ${job.id}`);
    open.addEventListener("click", () => openJob(job.id));
    actions.append(open);
    row.append(actions);
    tbody.append(row);
  }
  $("recent").hidden = jobs.length === 0;
  $("recent-empty").hidden = jobs.length > 0;
}

async function useKey() {
  clearError();
  const key = apiKey();
  $("api-key").value = key;
  $("key-state").textContent = key
    ? "Using the saved key."
    : "Paste the key that make up printed, then press Use key.";
  if (!key) {
    $("api-key").focus();
    return;
  }
  try {
    await loadVoices();
    await refreshRecent();
  } catch (err) {
    showError(err);
  }
}

function init() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    useKey();
  });
  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    document.querySelector("#recent tbody").replaceChildren();
    $("recent").hidden = true;
    $("recent-empty").hidden = false;
    useKey();
  });
  $("job-form").addEventListener("submit", submitJob);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("job-form").requestSubmit();
  });
  const speed = $("speed");
  const showSpeed = () => ($("speed-value").textContent = `${Number(speed.value).toFixed(2)}×`);
  speed.addEventListener("input", showSpeed);
  showSpeed();
  $("refresh").addEventListener("click", () => refreshRecent().catch(showError));
  useKey();
}

init();
