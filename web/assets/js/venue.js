// The venue screen: a hall of a county hospital projects the broadcast. It joins as an anonymous
// patient (it shows only what any patient sees), never asks or votes, and has nothing to touch:
// the video large, the QR code and link to ask from phones, the question being answered, the
// top questions and the disclaimer. Reconnects are the shared modules' (Hub resume, Viewer retry).
import { $, h, setText, show, setChildren } from './dom.js';
import { t, currentLang, setLang, formatTime } from './i18n.js';
import { api, ApiError, sessionIdFromPath, loadJSON, saveJSON } from './api.js';
import { SessionStore, queueOrder } from './store.js';
import { Viewer } from './video.js';
import { connectSession } from './connection.js';
import { loadSite, disclaimer } from './site.js';
import { vt } from './venue-i18n.js';

const TOP_MAX = 5;
const sid = sessionIdFromPath();
// Not the patient page's key: a kiosk that also opened the patient page keeps both identities apart.
const identityKey = `oncolive.venue.${sid}`;

// ?lang=zh|en, else the browser's (zh for zh-*): not a language a patient once chose on this machine.
function pickLang() {
  const asked = new URLSearchParams(location.search).get('lang');
  if (asked === 'zh' || asked === 'en') return asked;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const l of wanted) {
    const code = String(l).toLowerCase();
    if (code.startsWith('zh')) return 'zh';
    if (code.startsWith('en')) return 'en';
  }
  return 'en';
}
{
  const lang = pickLang();
  if (lang !== currentLang()) {
    // setLang remembers the choice for the other pages; the venue's is only for this screen
    let saved = null;
    try { saved = localStorage.getItem('oncolive.lang'); } catch { /* blocked */ }
    setLang(lang);
    try {
      if (saved === null) localStorage.removeItem('oncolive.lang');
      else localStorage.setItem('oncolive.lang', saved);
    } catch { /* blocked */ }
  }
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

const store = new SessionStore();
const video = $('#video');
let session = null;       // from the join / GET before the snapshot, then the store's
let identity = loadJSON(identityKey, 'session');
let viewer = null;
let hub = null;
let hubStatus = 'connecting';
let videoState = 'idle';
let soundRefused = false;
let fatal = null;

const conn = {
  set(s) { hubStatus = s; paint(); },
  onRetry() { /* nothing to touch: the hub retries by itself */ },
};

async function join() {
  const data = await api(`/api/sessions/${encodeURIComponent(sid)}/join`, { method: 'POST', body: {} });
  identity = { token: data.token };
  saveJSON(identityKey, identity, 'session');
  session = data.session;
  return data.token;
}

async function boot() {
  if (!sid) return failWith('venue.notFound');
  try {
    const data = await api(`/api/sessions/${encodeURIComponent(sid)}`);
    session = data.session;
    if (data.video) store.video = data.video;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return failWith('venue.notFound');
    setTimeout(boot, 5000); // the hall's network is not up yet: try again by itself
    return;
  }
  paint();
  if (session.state === 'ended') return; // nothing to join: the thank-you screen and the replay's QR
  if (!identity || !identity.token) {
    try { await join(); } catch (err) {
      if (err.status === 410) { session = { ...session, state: 'ended' }; paint(); return; }
      setTimeout(boot, err.retryAfter ? err.retryAfter * 1000 : 5000);
      return;
    }
  }
  start();
}

function failWith(key) {
  fatal = key;
  paint();
}

function start() {
  viewer = new Viewer({
    sessionId: sid, token: identity.token, video,
    onState: (s) => { videoState = s; paint(); },
  });
  hub = connectSession({
    sid, token: identity.token, store, conn,
    onStatus: (s) => { if (s === 'gone') failWith('venue.notFound'); },
    onChange: (what) => {
      if (store.session) session = store.session;
      if ((what === 'video' || what === 'snapshot') && store.video === 'live' && viewer) viewer.kick();
      if (what === 'snapshot' || what === 'session') syncVideo();
      paint();
    },
    // a patient token lives 30 days; should it expire during a long day, join again
    onExpired: async () => {
      try {
        const token = await join();
        if (viewer) viewer.token = token;
        return token;
      } catch { return null; }
    },
  });
  syncVideo();
}

function syncVideo() {
  if (!viewer || !session) return;
  if (session.state === 'live') { viewer.start(); viewer.kick(); }
  else if (session.state === 'ended') viewer.stop();
}

// ---- sound: unmuted autoplay needs a gesture, unless the kiosk's browser allows it ----

video.muted = false;
function noteMuted() {
  // Viewer.play() falls back to muted playback when sound is refused
  if (video.muted && !soundRefused) { soundRefused = true; paint(); }
}
video.addEventListener('volumechange', noteMuted);
video.addEventListener('playing', noteMuted);
function startSound() {
  video.muted = false;
  const p = video.play();
  soundRefused = false;
  if (p && p.catch) p.catch(() => { video.muted = true; video.play().catch(() => {}); });
  paint();
}
$('#sound').addEventListener('click', startSound);
document.addEventListener('keydown', () => { if (soundRefused) startSound(); });

// ---- painting ----

const two = (n) => String(n).padStart(2, '0');
function countdown(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const clock = hh || d ? `${hh}:${two(mm)}:${two(ss)}` : `${two(mm)}:${two(ss)}`;
  return d ? `${d}${currentLang() === 'zh' ? ' 天 ' : 'd '}${clock}` : clock;
}

function expertLine(s) {
  const p = s.expert_profile;
  const verified = p && p.verified === true;
  const name = verified && p.name ? p.name : s.expert_name;
  const parts = [name];
  if (verified) {
    if (p.title) parts.push(p.title);
    const where = [p.hospital, p.department].filter(Boolean).join(' ');
    if (where) parts.push(where);
  }
  // the badge first: a long hospital name is what the line clamp cuts, never the badge
  return [verified ? h('span', { class: 'v-verified', text: `✓ ${t('badge.verified')}` }) : null,
    h('span', { text: parts.join(' · ') })];
}

function paintStage(s) {
  let title = '';
  let detail = '';
  let count = '';
  let spin = false;
  let replay = false;
  const playing = s && s.state === 'live' && videoState === 'playing';
  if (fatal) title = vt(fatal);
  else if (!s) { title = t('loading'); spin = true; }
  else if (s.state === 'scheduled') {
    const at = Date.parse(s.scheduled_start);
    if (Number.isFinite(at) && at > Date.now()) {
      title = vt('venue.startsIn');
      count = countdown(at - Date.now());
      detail = vt('venue.startsAt', { time: formatTime(s.scheduled_start) });
    } else {
      title = vt('venue.shortly');
      detail = vt('venue.shortlyDetail');
    }
  } else if (s.state === 'ended') {
    title = vt('venue.thanks');
    detail = vt('venue.thanksDetail');
    replay = true;
  } else if (playing) {
    title = '';
  } else if (videoState === 'waiting' || store.video === 'waiting') {
    title = vt('venue.waiting');
    detail = vt('venue.waitingDetail');
    spin = true;
  } else if (videoState === 'stalled') {
    title = vt('venue.stalled');
    spin = true;
  } else {
    title = vt('venue.connecting');
    spin = true;
  }
  const stage = $('#stage');
  stage.dataset.state = fatal ? 'error' : !s ? 'loading' : s.state === 'live' ? (playing ? 'playing' : 'waiting') : s.state;
  show($('#overlay'), !playing);
  show($('#spinner'), spin);
  setText($('#o-title'), title);
  setText($('#o-count'), count);
  show($('#o-count'), !!count);
  setText($('#o-detail'), detail);
  show($('#replay'), replay);
  show($('#sound'), playing && soundRefused && video.muted);
  setText($('#sound'), `🔊 ${vt('venue.sound')}`);
  document.body.classList.toggle('ended', !!s && s.state === 'ended');
}

function questionItem(q) {
  return h('li', { class: 'v-q', dataset: { id: String(q.id) } },
    h('span', { class: 'v-q-votes', text: vt('venue.votes', { n: q.votes }) }),
    h('span', { class: 'v-q-text', text: q.text }));
}

/** Up to TOP_MAX approved questions, as many as fit the column without a scrollbar (at least one). */
function paintTop() {
  const list = $('#top');
  const top = store.list((q) => q.status === 'approved', queueOrder).slice(0, TOP_MAX);
  const box = $('#top-box');
  // the box's height changes with the screen, the answering question's lines and the disclaimer's
  const sig = JSON.stringify([top.map((q) => [q.id, q.votes, q.text]), currentLang(), box.clientWidth, box.clientHeight]);
  // "scan to ask" only while asking is possible
  const s = store.session || session;
  show($('#top-empty'), store.loaded && top.length === 0 && !(s && s.state === 'ended'));
  if (list.dataset.sig === sig) return;
  list.dataset.sig = sig;
  setChildren(list, top.map(questionItem));
  const items = Array.from(list.children);
  for (let i = items.length - 1; i > 0 && box.scrollHeight > box.clientHeight + 1; i -= 1) items[i].remove();
}

function paint() {
  const s = store.session || session;
  if (s) {
    document.title = `${s.title} · OncoLive`;
    setText($('#title'), s.title);
    const sig = JSON.stringify([s.expert_name, s.expert_profile, currentLang()]);
    const ex = $('#expert');
    if (ex.dataset.sig !== sig) { ex.dataset.sig = sig; setChildren(ex, expertLine(s)); }
  }
  const live = !!s && s.state === 'live';
  setText($('#live'), t('live'));
  show($('#live'), live);
  const down = hub && hubStatus !== 'online' && hubStatus !== 'connecting' && store.loaded;
  show($('#conn'), !!down);
  setText($('#conn'), vt('venue.reconnecting'));
  paintStage(s);

  const q = store.answering();
  show($('#now'), !!q);
  setText($('#now-label'), vt('venue.now'));
  if (q) setText($('#now-text'), q.text);
  setText($('#top-label'), vt('venue.top'));
  setText($('#top-empty'), vt('venue.empty'));
  paintTop();
  setText($('#scan'), '扫码提问 / Scan to ask');
  setText($('#replay-scan'), vt('venue.scanReplay'));
  setText($('#disclaimer'), disclaimer());
}

// The link the QR code holds, written out for a phone that cannot scan. The QR code is drawn
// from the server's public URL, which can differ from the address the kiosk opened (a hall
// machine on the hospital's network, a proxy): the public endpoint that states that link is
// the calendar file (its URL property), so the text is the code's own link, minus the scheme.
function showLink(url) {
  const short = url.replace(/^https?:\/\//, '');
  setText($('#link'), short);
  $('#qr').alt = short;
  $('#replay-qr').alt = short;
}
async function publicLink() {
  try {
    const res = await fetch(`/api/sessions/${encodeURIComponent(sid)}/calendar.ics`);
    if (!res.ok) return null;
    // unfold (RFC 5545 §3.1) before reading the one URL line
    const ics = (await res.text()).replace(/\r?\n[ \t]/g, '');
    const m = /^URL:(\S+)$/m.exec(ics);
    return m ? m[1] : null;
  } catch { return null; }
}
if (sid) {
  const src = `/api/sessions/${encodeURIComponent(sid)}/qr.svg`;
  $('#qr').src = src;
  $('#replay-qr').src = src;
  showLink(`${location.origin}/s/${sid}`);
  publicLink().then((url) => { if (url) { showLink(url); paint(); } });
}

loadSite().then(paint);
addEventListener('resize', paint);
new ResizeObserver(paintTop).observe($('#top-box'));
// the countdown ticks; "the expert will be here shortly" comes when the start time passes
setInterval(() => { if ((store.session || session) && (store.session || session).state === 'scheduled') paintStage(store.session || session); }, 1000);
paint();
boot();
