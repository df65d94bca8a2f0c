// The replay of an ended session: the recording in a <video>, the answered questions under it
// as chapters. A chapter starts where the expert marked the question "answering" (`at_ms`, media
// time, computed by the server from `answering_at`); tapping it seeks there and plays. While the
// video plays, the chapter being watched is highlighted.
//
// A recording comes in parts when the codec or the picture size changed (most have one). Each
// part is one file whose times are the recording's (a second part starts at, say, 12:04), so
// `at_ms / 1000` is a position in whichever part holds it: the part player loads that part and
// seeks there, and goes on to the next part when one ends.
import { h, setChildren } from './dom.js';
import { t } from './i18n.js';
import { api, ApiError } from './api.js';

/** `GET /api/sessions/{id}/recording`, or null when there is none (404). */
export async function loadRecording(sid) {
  try {
    return await api(`/api/sessions/${encodeURIComponent(sid)}/recording`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** 754000 → "12:34", 3723000 → "1:02:03". */
export function formatClock(ms) {
  const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const s = total % 60;
  const m = Math.floor(total / 60) % 60;
  const hrs = Math.floor(total / 3600);
  const two = (n) => String(n).padStart(2, '0');
  return hrs ? `${hrs}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** Chapters in the order they were answered, without ones that have no place in the video. */
export function sortChapters(chapters) {
  return (Array.isArray(chapters) ? chapters : [])
    .filter((c) => c && Number.isFinite(c.at_ms) && c.at_ms >= 0)
    .slice()
    .sort((a, b) => a.at_ms - b.at_ms);
}

/** Index of the chapter playing at `ms` (the last one started), or -1 before the first. */
export function chapterIndexAt(chapters, ms) {
  let found = -1;
  for (let i = 0; i < chapters.length; i += 1) {
    if (chapters[i].at_ms <= ms + 250) found = i;
    else break;
  }
  return found;
}

/**
 * Fill `list` with one button per chapter and keep the current one highlighted.
 * Returns { paint() } to re-draw after a language change.
 */
export function mountChapters({ video, list, chapters, onSeek, seekTo }) {
  const items = sortChapters(chapters);
  let current = -2;
  const nodes = [];

  function seek(i) {
    const c = items[i];
    if (seekTo) seekTo(c.at_ms, c);
    else seekVideo(video, c.at_ms);
    highlight(i);
    if (onSeek) onSeek(c);
  }

  function highlight(i) {
    if (i === current) return;
    current = i;
    nodes.forEach((node, k) => {
      const on = k === i;
      node.classList.toggle('current', on);
      if (on) node.button.setAttribute('aria-current', 'true');
      else node.button.removeAttribute('aria-current');
      node.now.hidden = !on;
    });
  }

  function paint() {
    setChildren(list, items.map((c, i) => {
      const now = h('span', { class: 'pill chapter-now', text: t('replay.playing'), hidden: true });
      const button = h('button', {
        class: 'chapter', type: 'button', dataset: { at: String(c.at_ms), question: String(c.question) },
        'aria-label': t('replay.jumpTo', { time: formatClock(c.at_ms), text: c.text }),
        onclick: () => seek(i),
      },
      h('span', { class: 'at', text: formatClock(c.at_ms) }),
      h('span', { class: 'ct', text: c.text }),
      now);
      const li = h('li', null, button);
      li.button = button;
      li.now = now;
      nodes[i] = li;
      return li;
    }));
    const was = current;
    current = -2;
    highlight(was === -2 ? -1 : was);
  }

  const update = () => {
    if (video.paused && video.currentTime === 0) return highlight(-1);
    highlight(chapterIndexAt(items, video.currentTime * 1000));
  };
  video.addEventListener('timeupdate', update);
  video.addEventListener('seeked', update);
  paint();
  return { paint, count: items.length, seek };
}

/** Seek `video` to `ms` and play; again once the metadata is in (some players drop an early seek). */
function seekVideo(video, ms) {
  const go = () => {
    video.currentTime = ms / 1000;
    const p = video.play();
    if (p && p.catch) p.catch(() => {});
  };
  go();
  if (video.readyState < 1) video.addEventListener('loadedmetadata', go, { once: true });
}

/** The recording's parts in order; a recording from before parts were listed is one part. */
export function recordingParts(recording) {
  const parts = recording && Array.isArray(recording.parts) ? recording.parts : [];
  const usable = parts.filter((p) => p && typeof p.download === 'string' && Number.isFinite(p.start_ms));
  if (usable.length) return usable.slice().sort((a, b) => a.start_ms - b.start_ms);
  if (!recording || !recording.download) return [];
  return [{ index: 0, download: recording.download, start_ms: 0, duration_ms: recording.duration_ms || 0 }];
}

/** Position in `parts` of the part that holds `ms`: the last one started by then (the first before it). */
export function partIndexAt(parts, ms) {
  let found = 0;
  for (let i = 0; i < parts.length; i += 1) {
    if (parts[i].start_ms <= ms + 250) found = i;
    else break;
  }
  return found;
}

/**
 * Play a recording's `parts` in one <video>, one after another. `seek(ms, index?)` loads the part
 * that holds `ms` (or the one whose `index` the server named) and seeks there; `onPart(i)` is
 * told whenever another part is loaded.
 */
export function partPlayer(video, parts, { onPart } = {}) {
  let current = -1;
  function load(i) {
    const changed = i !== current;
    current = i;
    if (video.getAttribute('src') !== parts[i].download) video.src = parts[i].download;
    if (changed && onPart) onPart(i);
  }
  function seek(ms, index) {
    let i = parts.findIndex((p) => p.index === index);
    if (i < 0) i = partIndexAt(parts, ms);
    load(i);
    seekVideo(video, ms);
  }
  // A property, not a listener: a replay opened again replaces it.
  video.onended = () => {
    if (current + 1 >= parts.length) return;
    load(current + 1);
    seekVideo(video, parts[current].start_ms);
  };
  if (parts.length) load(0);
  return {
    seek,
    select: (i) => { if (parts[i]) { load(i); seekVideo(video, parts[i].start_ms); } },
    get current() { return current; },
    count: parts.length,
  };
}

/** The line under a replay's title: "Recorded Dec 1 · 42:10". */
export function replaySubline(recording, formatDateTime) {
  const parts = [];
  if (recording && recording.started_at) parts.push(t('replay.recorded', { time: formatDateTime(recording.started_at) }));
  if (recording && recording.duration_ms) parts.push(formatClock(recording.duration_ms));
  return parts.join(' · ');
}
