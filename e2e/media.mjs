// Media for the recording and library tests: small files made with Debian's ffmpeg at test time,
// a Range-capable responder for `page.route`, and the probes that tell whether the server has the
// recording / library API (issue 12) yet.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PHONE = { viewport: { width: 360, height: 640 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let dir = null;
/** A temporary directory for this run's media. */
export function mediaDir() {
  if (!dir) dir = mkdtempSync(join(tmpdir(), 'oncolive-media-'));
  return dir;
}

function ffmpeg(args) {
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** An MP4 (H.264 + AAC), `seconds` long: the brief's `testsrc` + `sine` file. */
export function makeMp4(name = 'file.mp4', { seconds = 4, size = '320x240', faststart = true } = {}) {
  const out = join(mediaDir(), name);
  ffmpeg(['-f', 'lavfi', '-i', `testsrc=size=${size}:rate=25`, '-f', 'lavfi', '-i', 'sine',
    '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-g', '50', '-c:a', 'aac', '-t', String(seconds),
    ...(faststart ? ['-movflags', '+faststart'] : []), '-y', out]);
  return out;
}

/** An fMP4 HLS rendition (H.264 + Opus, 4 s segments) in its own directory; returns the directory. */
export function makeHls(name = 'hls', { seconds = 24 } = {}) {
  const out = join(mediaDir(), name);
  execFileSync('mkdir', ['-p', out]);
  ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine',
    '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-profile:v', 'baseline', '-g', '50', '-c:a', 'libopus', '-ar', '48000',
    '-t', String(seconds), '-f', 'hls', '-hls_time', '4', '-hls_segment_type', 'fmp4', '-hls_playlist_type', 'vod',
    '-hls_segment_filename', join(out, 'seg%d.m4s'), '-y', join(out, 'all.m3u8')]);
  return out;
}

/** A text file named like a video (what the server must refuse as not an MP4). */
export function makeFakeMp4(name = 'notes.mp4') {
  const out = join(mediaDir(), name);
  writeFileSync(out, 'This is a text file, not a video.\n'.repeat(200));
  return out;
}

/** Answer a routed request from `file`, honouring `Range` (206) as the server does. */
export async function fulfillFile(route, file, type) {
  const size = statSync(file).size;
  const range = /bytes=(\d*)-(\d*)/.exec(route.request().headers().range || '');
  const body = readFileSync(file);
  const headers = { 'Content-Type': type, 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' };
  if (!range) return route.fulfill({ status: 200, headers: { ...headers, 'Content-Length': String(size) }, body });
  let start = range[1] === '' ? size - Number(range[2]) : Number(range[1]);
  let end = range[1] === '' || range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
  start = Math.max(0, start);
  end = Math.max(start, end);
  return route.fulfill({
    status: 206,
    headers: { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': String(end - start + 1) },
    body: body.subarray(start, end + 1),
  });
}

/** Does the server have the recording and library API? (The old binary answers 404 with no body.) */
export async function hasMediaApi(url) {
  const res = await fetch(`${url}/api/videos`);
  return res.status === 200;
}

export async function setState(server, sid, state, token = server.admin_token) {
  const res = await fetch(`${server.url}/api/sessions/${sid}/state`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ state }),
  });
  if (res.status !== 200) throw new Error(`state ${state}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Visible text in `root` under `min` px, or cut off at the right edge (as web.spec's helpers check). */
export async function tooSmallOrCut(page, min = 14, root = 'body') {
  return page.evaluate(([minPx, sel]) => {
    const out = [];
    const width = document.documentElement.clientWidth;
    const walker = document.createTreeWalker(document.querySelector(sel), NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.textContent.trim();
      const el = n.parentElement;
      if (!text || !el || el.closest('[hidden], script, style, .print-root')) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0 && r.height > 0);
      if (!rects.length) continue;
      const size = parseFloat(getComputedStyle(el).fontSize);
      if (size < minPx - 0.01) out.push(`${size}px: "${text.slice(0, 40)}" (${el.tagName.toLowerCase()}.${el.className})`);
      if (rects.some((r) => r.right > width + 0.5)) out.push(`cut off at ${width}px: "${text.slice(0, 40)}"`);
    }
    return out;
  }, [min, root]);
}

/** Buttons and links in `selector` smaller than 44 px. */
export async function smallTargets(page, selector = 'main') {
  return page.evaluate((sel) => {
    const out = [];
    for (const el of document.querySelectorAll(`${sel} button, ${sel} a, ${sel} input, ${sel} select`)) {
      const r = (el.closest('label') || el).getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.height < 44 || (el.tagName !== 'A' && r.width < 44)) out.push(`${el.tagName}#${el.id}.${el.className} ${Math.round(r.width)}x${Math.round(r.height)} "${(el.textContent || el.value || '').trim().slice(0, 20)}"`);
    }
    return out;
  }, selector);
}
