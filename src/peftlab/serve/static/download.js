// Downloads with progress (Export): the file is streamed (fetch + ReadableStream) and its progress
// shown against its Content-Length, then saved under the server's file name. Sizes in binary units
// (KiB, MiB: 1024 bytes each), as file managers show them. The file is held in the page until it
// is whole, so a file over IN_PAGE_LIMIT goes to the browser's own download (and its progress).
"use strict";

const IN_PAGE_LIMIT = 2 * 1024 ** 3;

function fmtFileSize(b) {
  if (b === null || b === undefined) return "–";
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return i ? `${b.toFixed(1)} ${units[i]}` : `${b} bytes`;
}

function fileNameOf(res, fallback) {
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(res.headers.get("Content-Disposition") || "");
  return m ? decodeURIComponent(m[1]) : fallback;
}

// Download `path` into the browser's downloads, showing its progress in `box`; resolves to the bytes received.
async function downloadWithProgress(path, fallbackName, box) {
  box.classList.remove("hidden");
  box.innerHTML = `<progress class="dl-bar" value="0" max="1"></progress> <span class="dl-status small">asking the server for the file…</span>`;
  const bar = box.querySelector("progress"), status = box.querySelector(".dl-status");
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) {
    let msg = res.statusText;
    try { msg = (await res.json()).detail || msg; } catch (e) { /* not JSON */ }
    box.innerHTML = `<span class="bad small">The download failed: ${esc(msg)}</span>`;
    throw new ApiError(res.status, msg);
  }
  const total = Number(res.headers.get("Content-Length")) || 0;
  const name = fileNameOf(res, fallbackName);
  if (total > IN_PAGE_LIMIT) {
    await res.body.cancel();
    await download(path);
    box.innerHTML = `<span class="small">${esc(name)} (${fmtFileSize(total)}): the browser's downloads show its progress.</span>`;
    return total;
  }
  bar.max = total || 1;
  const reader = res.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    bar.value = total ? got : 0;
    status.textContent = total ? `${fmtFileSize(got)} of ${fmtFileSize(total)} (${Math.floor((100 * got) / total)}%)`
      : `${fmtFileSize(got)} so far`;
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob(chunks, { type: res.headers.get("Content-Type") || "application/zip" }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  bar.max = 1; bar.value = 1;
  status.textContent = `Downloaded ${name} (${fmtFileSize(got)}).`;
  box.dataset.done = String(got);
  return got;
}
