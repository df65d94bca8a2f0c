// Patient page: join once, watch, ask, vote, follow "my questions". The token is kept per
// session in localStorage, so a reload keeps the same identity and questions.
import { $, h, setText, show, setChildren, renderer, toast, stateBlock, charCount, showCount } from './dom.js';
import { t, formatDateTime, formatRelative, formatCountdown } from './i18n.js';
import { api, ApiError, sessionIdFromPath, loadJSON, saveJSON } from './api.js';
import { SessionStore, newestFirst } from './store.js';
import { initChrome, viewersLabel, fatalScreen } from './ui.js';
import { Viewer, seedIceServers } from './video.js';
import { createQuestionNode, updateQuestionNode, renderQuestions, renderAnswering } from './questions.js';
import { connectSession } from './connection.js';
import { errorText } from './errors.js';
import { loadLimits, limit, applyMaxLength } from './limits.js';
import { Screener } from './screen.js';
import { warningText, kindsFound, isPersonal } from './findings.js';
import { loadSite, disclaimer, expertBadge, retentionDays } from './site.js';
import { loadRecording, mountChapters, partPlayer, recordingParts, replaySubline, formatClock } from './replay.js';
import { loadVideos, renderVideos, attachedFor } from './library.js';
import { Outbox } from './outbox.js';

const sid = sessionIdFromPath();
const identityKey = `oncolive.patient.${sid}`;
const draftKey = `oncolive.draft.${sid}`;
const AUDIO_KEY = 'oncolive.audioOnly'; // this phone's choice, for every session

const store = new SessionStore();
let hub = null;
let viewer = null;
let identity = loadJSON(identityKey);
let preview = null;          // the public session object before joining
let tab = 'queue';
let videoState = 'idle';
// questions not acknowledged yet (sent offline, or their reply was lost), kept across reloads
const outbox = new Outbox({ key: `oncolive.outbox.${sid}` });
const inFlight = new Set();  // outbox ids whose `ask` is on the socket now
let audioOnly = loadJSON(AUDIO_KEY) === true;
const QUALITY_KEY = 'oncolive.quality'; // auto, data saver or high, for every session
let quality = ['low', 'high'].includes(loadJSON(QUALITY_KEY)) ? loadJSON(QUALITY_KEY) : 'auto';
// what the page suggests on a weak link: 'saver' (a smaller picture, while the expert sends several),
// then sound only: 'slow' (thin picture) or 'stall' (no picture); null when none
let audioOffer = null;
// HLS: `mode` is 'rtc' (WebRTC, the default), 'start' (watching from the start) or 'fallback'
// (WebRTC cannot connect here: the live HLS playlist, a few seconds behind).
let mode = 'rtc';
let hlsPlayer = null;
let hlsState = 'idle';       // loading, playing, error
let recording = null;        // GET …/recording while live (null until known)
let recordingAsked = 0;
let notPlayingSince = 0;
let replay = null;           // the chapters of the replay view
let replaySession = null;
let replayParts = null;      // { parts, player } of the replay's recording
let replayReady = false;     // the ended session's recording can be watched

// A page that cannot work offers a way on: try again after an error, else the session list.
const fatal = fatalScreen({
  action: (kind) => (kind === 'error'
    ? h('button', { class: 'btn primary', type: 'button', text: t('retry'), onclick: () => location.reload() })
    : h('a', { class: 'btn', href: '/', text: t('nav.allSessions') })),
});
const conn = initChrome({ onLang: () => { renderFrame(); renderJoin(); renderAll(); renderWarning(); fatal.paint(); renderReplay(); } });
const render = renderer(renderAll);

function showOnly(id) {
  for (const s of ['loading', 'fatal', 'join', 'live', 'replay']) show($(`#${s}`), s === id);
}

function fail(kind, title, detail) {
  if (viewer) viewer.stop();
  fatal.set(kind, title, detail);
  showOnly('fatal');
}

async function boot() {
  if (!sid) return fail('error', 'error.notFound');
  if (identity && identity.token) return startLive();
  try {
    const data = await api(`/api/sessions/${encodeURIComponent(sid)}`);
    preview = data.session;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return fail('empty', 'error.notFound', 'error.notFoundDetail');
    return fail('error', err.status === 0 ? 'error.network' : 'error.generic');
  }
  // an ended session's link opens its replay (no joining needed to watch)
  if (preview.state === 'ended') return startReplay(preview);
  document.title = `${preview.title} · OncoLive`;
  renderJoin();
  showOnly('join');
  $('#join-name').value = '';
}

function sessionSubline(s) {
  const parts = [t('session.expert', { name: s.expert_name })];
  if (s.state === 'scheduled' && s.scheduled_start) parts.push(formatDateTime(s.scheduled_start));
  if (s.state === 'live') parts.push(t('state.live'));
  if (s.state === 'ended') parts.push(t('state.ended'));
  return parts.join(' · ');
}

function renderJoin() {
  if (!preview) return;
  setText($('#join-title'), preview.title);
  setText($('#join-sub'), sessionSubline(preview));
  setText($('#join-topic'), preview.topic || '');
  renderBadge($('#join-badge'), preview);
  renderCountdown();
}

/** The safety frame every view carries: the operator's disclaimer in the reader's language. */
function renderFrame() {
  setText($('#disclaimer'), disclaimer());
  setText($('#consent-text'), t('consent.text', { days: retentionDays() }));
}

function renderBadge(el, s) {
  const profile = s && s.expert_profile;
  const sig = `${JSON.stringify(profile || null)}|${t('badge.verified')}`;
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  setChildren(el, expertBadge(profile));
}

$('#join-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const button = $('#join-btn');
  const error = $('#join-error');
  const name = $('#join-name').value.trim();
  if (Array.from(name).length > limit('name_chars')) {
    setText(error, t('join.nameTooLong'));
    show(error, true);
    return;
  }
  button.disabled = true;
  show(error, false);
  try {
    await join(name);
    startLive();
  } catch (err) {
    let key = 'error.generic';
    if (err.status === 0) key = 'error.network';
    else if (err.status === 410) key = 'session.endedNoJoin';
    else if (err.status === 429) key = 'error.rateLimited';
    else if (err.status === 400) key = 'join.nameInvalid';
    else if (err.status === 404) key = 'error.notFound';
    setText(error, t(key, { s: err.retryAfter || 10 }));
    show(error, true);
  } finally {
    button.disabled = false;
  }
});

async function join(name) {
  const data = await api(`/api/sessions/${encodeURIComponent(sid)}/join`, { method: 'POST', body: name ? { name } : {} });
  identity = { token: data.token, patient_id: data.patient_id, name: data.name || '' };
  // the relay's STUN/TURN servers came with the join: the picture needs no extra round trip
  seedIceServers(`/api/sessions/${encodeURIComponent(sid)}/whep`, data.ice_servers);
  saveJSON(identityKey, identity);
  preview = data.session;
  return identity;
}

function startLive() {
  showOnly('live');
  const video = $('#video');
  // Always start muted (a waiting room is not the place for sudden sound); one tap unmutes.
  viewer = new Viewer({
    sessionId: sid, token: identity.token, video, audioOnly,
    onState: (s) => {
      videoState = s;
      renderStage();
      if (s === 'unsupported' || s === 'error') checkRtc();
    },
  });
  viewer.setPrefer(quality);
  hub = connectSession({
    sid,
    token: identity.token,
    store,
    conn,
    onStatus: (s) => {
      if (s === 'gone' || s === 'revoked') giveUpOutbox(s);
      if (s === 'gone') fail('empty', 'error.notFound', 'error.notFoundDetail');
      // back online (snapshot or resume applied): what was asked meanwhile goes now
      if (s === 'online') flushOutbox();
      render();
    },
    onChange: onStoreChange,
    // A patient token lives 30 days; if it still expires, a new identity is the only way back in.
    onExpired: async () => {
      try {
        const next = await join(identity.name);
        if (viewer) viewer.token = next.token;
        toast(t('join.renewed'));
        return next.token;
      } catch { return null; }
    },
  });
  // Joined a live session: the picture's negotiation starts now, alongside the socket, rather
  // than after the snapshot (a round trip less on a slow link).
  if (preview && preview.state === 'live' && mode === 'rtc') viewer.start();
  renderAll();
  restoreDraft();
}

/**
 * Questions still in the outbox that can never be sent (`reason`: ended, gone, revoked): shown
 * as not sent under "my questions" and dropped from storage, so no later visit tries again.
 */
function giveUpOutbox(reason) {
  if (!outbox.size) return;
  // one that may have reached the server before the end is looked for first
  if (store.loaded) for (const { entry } of outbox.reconcile(store.mine())) if (!inFlight.has(entry.id)) toast(t('ask.arrived'));
  if (outbox.abandon(reason).length) toast(t(`unsent.${reason}`), { bad: true, ms: 8000 });
}

let sawEnd = false;
let sawSnapshot = false;
function onStoreChange(what) {
  const ended = store.session && store.session.state === 'ended';
  if ((what === 'snapshot' || what === 'session') && ended) giveUpOutbox('ended');
  // a returning patient whose session ended meanwhile: the link opens the replay
  if (what === 'snapshot' && !sawSnapshot) {
    sawSnapshot = true;
    if (store.session && store.session.state === 'ended') {
      startReplay(store.session);
      return;
    }
  }
  // the relay has the expert's camera: (re)start playback now rather than at the next retry
  if ((what === 'video' || what === 'snapshot') && store.video === 'live' && viewer) viewer.kick();
  // the recorder starts with the camera: its playlists exist a segment later
  if (what === 'video' && store.video === 'live' && !(recording && recording.hls_all)) setTimeout(() => askRecording(true), 6000);
  if (what === 'snapshot' || what === 'session') {
    syncVideo();
    // once the session is over, what matters is the answers
    if (!sawEnd && store.session && store.session.state === 'ended') {
      sawEnd = true;
      if (tab === 'queue') selectTab('answered');
    }
  }
  // a draft restored before the connection was up is screened once it is
  if (what === 'snapshot' && askText.value.trim()) screener.flush();
  // an ask that may have reached the server shows up among my questions: it arrived
  if (outbox.size && (what === 'snapshot' || what === 'questions')) {
    for (const { entry } of outbox.reconcile(store.mine())) {
      if (!inFlight.has(entry.id)) toast(t('ask.arrived'));
    }
  }
  render();
}

/** Start or stop the video with the session state. */
function syncVideo() {
  const s = store.session;
  if (!s || !viewer) return;
  if (s.state === 'live') {
    if (mode === 'rtc') {
      viewer.start();
      viewer.kick();
    }
    askRecording();
  } else if (s.state === 'ended') {
    viewer.stop();
    // someone watching from the start may watch on; the live fallback has nothing more to show
    if (mode === 'fallback') stopHls();
    if (!sawEnd) findReplay();
  }
  renderAttached();
  renderStage();
}

// ---- video stage ----

function renderStage() {
  const s = store.session || preview;
  const video = $('#video');
  let title = '';
  let detail = '';
  let spinning = false;
  const hls = mode !== 'rtc';
  if (!s) {
    title = t('loading');
    spinning = true;
  } else if (hls && (s.state === 'live' || mode === 'start')) {
    if (hlsState === 'error') title = t('hls.error');
    else if (hlsState !== 'playing') {
      title = t('hls.loading');
      spinning = true;
    }
  } else if (s.state === 'scheduled') {
    title = t(startPassed(s) ? 'wait.shortly' : 'video.notStarted');
    detail = startPassed(s) ? t('wait.shortlyDetail')
      : s.scheduled_start ? t('video.startsAt', { time: formatDateTime(s.scheduled_start), rel: formatRelative(s.scheduled_start) }) : '';
  } else if (s.state === 'ended') {
    title = t('video.ended');
    detail = t(replayReady ? 'replay.ready' : 'video.endedDetail');
  } else if (videoState === 'playing') {
    title = audioOnly ? t('audio.title') : '';
    if (audioOnly) detail = t('audio.detail', { name: s.expert_name });
  } else if ((videoState === 'waiting' && store.video !== 'live') || (store.video === 'waiting' && videoState !== 'unsupported')) {
    // the expert has not arrived: a countdown to the announced start, then "shortly"
    title = t(startPassed(s) ? 'wait.shortly' : 'video.waiting');
    detail = t('video.waitingDetail');
    spinning = true;
  } else if (videoState === 'stalled') {
    title = t('video.stalled');
    spinning = true;
  } else if (videoState === 'error') {
    title = t('video.error');
  } else if (videoState === 'unsupported') {
    title = t('video.unsupported');
    detail = t('video.unsupportedDetail');
  } else {
    title = t('video.connecting');
    spinning = true;
  }
  const live = !!s && s.state === 'live';
  const playing = hls ? (live || mode === 'start') && hlsState === 'playing' : live && videoState === 'playing';
  const listening = !hls && audioOnly && live;
  // sound only shows who is speaking, never a black picture
  show($('#v-overlay'), !playing || listening);
  $('#v-overlay').classList.toggle('listening', listening);
  show($('#v-audio'), listening && playing);
  show($('#v-spinner'), spinning);
  setText($('#v-title'), title);
  setText($('#v-detail'), detail);
  renderCountdown();
  show($('#unmute'), playing && video.muted && mode !== 'start');
  show($('#badge-live'), live && mode !== 'start');
  show($('#viewers'), live && store.loaded && mode !== 'start');
  setText($('#viewers'), viewersLabel(store.viewers));

  // the bar under the picture: watch from the start / back to live / the replay, and what HLS means
  const fromStart = live && mode === 'rtc' && !!(recording && recording.hls_all);
  const backToLive = mode === 'start' && live;
  const toReplay = !!s && s.state === 'ended' && replayReady && mode !== 'start';
  const calendar = !!s && s.state === 'scheduled';
  show($('#btn-from-start'), fromStart);
  show($('#btn-back-live'), backToLive);
  show($('#btn-replay'), toReplay);
  show($('#btn-calendar'), calendar);
  if (calendar) $('#btn-calendar').href = calendarUrl();
  const note = mode === 'fallback' && live ? t('hls.behind') : mode === 'start' ? t('hls.fromStartNote') : '';
  setText($('#v-note'), note);
  show($('#v-note'), !!note);
  const offer = live && mode === 'rtc' && !audioOnly && !!audioOffer;
  const offerText = { stall: 'audio.offerStall', slow: 'audio.offerSlow', saver: 'quality.offerSlow' }[audioOffer];
  setText($('#v-offer-text'), offer ? t(offerText) : '');
  show($('#btn-offer-saver'), offer && audioOffer === 'saver');
  show($('#btn-offer-audio'), offer && audioOffer !== 'saver');
  show($('#v-offer'), offer);
  show($('#stage-bar'), fromStart || backToLive || toReplay || calendar || !!note || offer);

  // sound only (WebRTC only) and full screen, under the picture or over it in landscape
  const audioButton = $('#btn-audio');
  show(audioButton, live && mode === 'rtc');
  setText(audioButton, t(audioOnly ? 'audio.back' : 'audio.switch'));
  audioButton.setAttribute('aria-pressed', String(audioOnly));
  const qualitySelect = $('#sel-quality');
  // a choice only where there is one: an expert sending several layers
  show(qualitySelect, live && mode === 'rtc' && !audioOnly && !!viewer && viewer.layerCount > 1);
  qualitySelect.value = quality;
  const fs = $('#btn-fullscreen');
  show(fs, live && (mode !== 'rtc' || !audioOnly));
  setText(fs, t(fullscreenElement() ? 'fs.exit' : 'fs.enter'));
  show($('#stage-controls'), live && mode !== 'start');
}

// ---- waiting for the start: countdown, "shortly", add to calendar ----

function startPassed(s) {
  const at = s && Date.parse(s.scheduled_start);
  return Number.isFinite(at) && Date.now() >= at;
}

function calendarUrl() {
  return `/api/sessions/${encodeURIComponent(sid)}/calendar.ics`;
}

/** The countdown on the stage and on the join card, while the expert is still to come. */
function renderCountdown() {
  const s = store.session || preview;
  const at = s && Date.parse(s.scheduled_start);
  // the expert is still to come (not: on camera, and the picture is not getting through)
  const waiting = !!s && (s.state === 'scheduled' || (s.state === 'live' && mode === 'rtc' && videoState !== 'playing' && store.video !== 'live'));
  const ahead = waiting && Number.isFinite(at) && at > Date.now();
  const text = ahead ? t('wait.startsIn', { time: formatCountdown(at - Date.now(), formatRelative(s.scheduled_start)) }) : '';
  for (const id of ['#v-countdown', '#join-countdown']) {
    const el = $(id);
    setText(el, text);
    show(el, ahead);
  }
  const joinCal = $('#join-calendar');
  const calendar = !!s && s.state === 'scheduled';
  show(joinCal, calendar);
  if (calendar) joinCal.href = calendarUrl();
}
setInterval(() => {
  const s = store.session || preview;
  if (!s || s.state === 'ended') return;
  const before = startPassed(s);
  renderCountdown();
  // the moment the start passes, the words change too
  if (before !== startPassed(s)) renderStage();
}, 1000);

// ---- sound only, and full screen ----

/** Switch the subscription (a new WHEP offer); the hub and every question stay as they are. */
function setAudioOnly(on) {
  audioOnly = on;
  audioOffer = null;
  notPlayingSince = 0;
  saveJSON(AUDIO_KEY, on ? true : null);
  const video = $('#video');
  // the tap is the gesture that lets sound play: a listener wants to hear
  if (on && video.muted) {
    video.muted = false;
    const p = video.play();
    if (p && p.catch) p.catch(() => {});
  }
  if (viewer) viewer.setAudioOnly(on);
  renderStage();
}
$('#btn-audio').addEventListener('click', () => setAudioOnly(!audioOnly));
// picture quality: the relay sends the layer asked for, on the same connection
function setQuality(choice) {
  quality = choice;
  saveJSON(QUALITY_KEY, quality === 'auto' ? null : quality);
  if (viewer) viewer.setPrefer(quality);
  if (audioOffer === 'saver') audioOffer = null;
  renderStage();
}
$('#sel-quality').addEventListener('change', (e) => setQuality(e.target.value));
$('#btn-offer-audio').addEventListener('click', () => setAudioOnly(true));
$('#btn-offer-saver').addEventListener('click', () => setQuality('low'));

/** Is this a weak link? The browser's own estimate, or the picture arriving thin and slow. */
function weakLink() {
  const c = navigator.connection;
  if (c && (c.saveData || /(^|-)2g$/.test(c.effectiveType || '') || (c.downlink > 0 && c.downlink < 0.3))) return true;
  const q = viewer && viewer.quality;
  return videoState === 'playing' && !!q && q.kbps !== null && q.kbps < 120 && q.fps < 5;
}

function fullscreenElement() {
  return document.fullscreenElement || document.webkitFullscreenElement || null;
}

function toggleFullscreen() {
  if (fullscreenElement()) {
    const exit = document.exitFullscreen || document.webkitExitFullscreen;
    if (exit) Promise.resolve(exit.call(document)).catch(() => {});
    return;
  }
  const player = $('#player');
  const video = $('#video');
  // iOS Safari and some in-app browsers (WeChat) only put the video element itself full screen
  const videoOnly = () => { if (video.webkitEnterFullscreen) video.webkitEnterFullscreen(); };
  const request = player.requestFullscreen || player.webkitRequestFullscreen;
  if (!request) return videoOnly();
  Promise.resolve(request.call(player)).then(() => {
    // a phone held upright still shows the picture sideways-wide
    try { screen.orientation.lock('landscape').catch(() => {}); } catch { /* not offered */ }
  }).catch(videoOnly);
}
$('#btn-fullscreen').addEventListener('click', toggleFullscreen);
// turned sideways while watching: the picture comes into view, filling the screen (app.css)
if (window.matchMedia) {
  const sideways = window.matchMedia('(orientation: landscape) and (max-height: 520px)');
  const onTurn = () => {
    if (sideways.matches && !$('#live').hidden) $('#player').scrollIntoView({ block: 'start' });
  };
  if (sideways.addEventListener) sideways.addEventListener('change', onTurn);
  else if (sideways.addListener) sideways.addListener(onTurn);
}
for (const ev of ['fullscreenchange', 'webkitfullscreenchange']) document.addEventListener(ev, renderStage);

// ---- watching over HLS: from the start, and the fallback when WebRTC cannot connect ----

/** The recording's URLs while live (asked again at most every 20 s until there is one). */
async function askRecording(force = false) {
  if (recording && !force) return recording;
  if (!force && Date.now() - recordingAsked < 20000) return recording;
  recordingAsked = Date.now();
  try {
    recording = await loadRecording(sid);
  } catch { /* not now */ }
  renderStage();
  return recording;
}

async function startHls(kind) {
  const rec = await askRecording(true);
  const url = rec && (kind === 'start' ? rec.hls_all : rec.hls);
  if (!url) {
    if (kind === 'start') toast(t('hls.unavailable'), { bad: true });
    return false;
  }
  stopHls();
  mode = kind;
  hlsState = 'loading';
  viewer.stop();
  const video = $('#video');
  video.srcObject = null;
  video.controls = kind === 'start';
  renderStage();
  try {
    const { HlsPlayer } = await import('./hls-player.js');
    if (mode !== kind) return false;
    hlsPlayer = new HlsPlayer(video, {
      mime: rec.mime,
      onError: () => { hlsState = 'error'; renderStage(); },
    });
    await hlsPlayer.load(url, { from: kind === 'start' ? 'start' : 'live' });
  } catch {
    hlsState = 'error';
    renderStage();
    return false;
  }
  playVideo(video);
  return true;
}

function playVideo(video) {
  const p = video.play();
  if (p && p.catch) {
    p.catch(() => {
      if (!video.muted) {
        video.muted = true;
        video.play().catch(() => {});
      }
    });
  }
}

function stopHls() {
  if (hlsPlayer) hlsPlayer.destroy();
  hlsPlayer = null;
  hlsState = 'idle';
  const video = $('#video');
  video.controls = false;
  mode = 'rtc';
}

function backToLive() {
  stopHls();
  notPlayingSince = 0;
  const s = store.session;
  if (s && s.state === 'live') {
    viewer.start();
    viewer.kick();
  }
  renderStage();
}

/**
 * WebRTC cannot play here: no WebRTC at all, a refusal, or the expert's camera is on the relay
 * and still nothing has played for 20 s (a network that blocks the media). Then the live HLS
 * playlist, which is ordinary HTTP, a few seconds behind.
 */
async function maybeFallback() {
  const s = store.session;
  if (mode !== 'rtc' || !s || s.state !== 'live') return;
  const rec = await askRecording();
  if (!rec || !rec.hls || mode !== 'rtc') return;
  await startHls('fallback');
}

function checkRtc() {
  const s = store.session;
  if (s && s.state === 'live' && !(recording && recording.hls_all)) askRecording();
  if (mode !== 'rtc' || !s || s.state !== 'live') { notPlayingSince = 0; return; }
  if (videoState === 'unsupported' || videoState === 'error') { maybeFallback(); return; }
  if (store.video === 'live' && videoState !== 'playing') {
    if (!notPlayingSince) notPlayingSince = Date.now();
    else if (Date.now() - notPlayingSince > 20000 && !audioOnly) maybeFallback();
  } else notPlayingSince = 0;
  // the expert is on camera and the picture does not come, or comes thin: offer sound only
  const before = audioOffer;
  if (audioOnly) audioOffer = null;
  else if (notPlayingSince && Date.now() - notPlayingSince > 6000) audioOffer = 'stall';
  // a slow link: the smallest picture first where there is one, sound only after that
  else if (weakLink()) audioOffer = quality !== 'low' && viewer && viewer.layerCount > 1 ? 'saver' : 'slow';
  else if (videoState === 'playing') audioOffer = null;
  if (before !== audioOffer) renderStage();
}
setInterval(checkRtc, 2000);

{
  const video = $('#video');
  video.addEventListener('playing', () => { if (mode !== 'rtc') { hlsState = 'playing'; renderStage(); } });
  video.addEventListener('waiting', () => { if (mode !== 'rtc' && hlsState !== 'error') { hlsState = 'loading'; renderStage(); } });
}
$('#btn-from-start').addEventListener('click', () => startHls('start'));
$('#btn-back-live').addEventListener('click', backToLive);
$('#btn-replay').addEventListener('click', () => {
  stopHls();
  startReplay(store.session);
});

// ---- the replay (an ended session) ----

/** After the end, look for the recording a few times (the server closes it within seconds). */
async function findReplay(tries = 4) {
  for (let i = 0; i < tries && !replayReady; i += 1) {
    try {
      const rec = await loadRecording(sid);
      if (rec && rec.download) {
        replayReady = true;
        renderStage();
        return;
      }
    } catch { /* try again */ }
    await new Promise((r) => setTimeout(r, 3000));
  }
}

async function startReplay(session) {
  replaySession = session;
  if (viewer) viewer.stop();
  stopHls();
  document.title = `${session.title} · OncoLive`;
  showOnly('replay');
  renderReplayHead();
  let rec;
  try {
    rec = await loadRecording(sid);
  } catch (err) {
    setChildren($('#r-empty'), stateBlock('error', t(err.status === 0 ? 'error.network' : 'error.generic'), '',
      h('button', { class: 'btn primary', type: 'button', text: t('retry'), onclick: () => startReplay(session) })));
    show($('#r-empty'), true);
    return;
  }
  const video = $('#r-video');
  show($('#r-empty'), !rec);
  show(video.parentElement, !!rec);
  show($('#r-pill'), !!rec);
  replay = null;
  replayParts = null;
  if (!rec) {
    renderReplayEmpty();
  } else {
    const parts = recordingParts(rec);
    const player = partPlayer(video, parts, { onPart: () => renderParts() });
    replayParts = { parts, player };
    renderParts();
    replay = mountChapters({
      video, list: $('#r-chapters'), chapters: rec.chapters,
      seekTo: (ms, c) => player.seek(ms, c.part),
      onSeek: () => {
        const stage = video.parentElement;
        if (stage.scrollIntoView) stage.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      },
    });
    show($('#r-chapters-box'), replay.count > 0);
  }
  replaySession.recording = rec;
  renderReplayHead();
  renderAttached();
}

/** With several parts, one button per part under the video ("Part 2 · 12:04"), the current one marked. */
function renderParts() {
  const box = $('#r-parts');
  const many = !!replayParts && replayParts.parts.length > 1;
  show(box, many);
  if (!many) return setChildren(box, []);
  const { parts, player } = replayParts;
  setChildren(box, parts.map((p, i) => h('button', {
    class: 'btn part', type: 'button', dataset: { part: String(p.index) },
    'aria-current': i === player.current ? 'true' : null,
    text: t('replay.part', { n: i + 1, time: formatClock(p.start_ms) }),
    onclick: () => player.select(i),
  })));
}

function renderReplayEmpty() {
  setChildren($('#r-empty'), stateBlock('empty', t('replay.none'), t('replay.noneDetail')));
}

function renderReplayHead() {
  const s = replaySession;
  if (!s) return;
  setText($('#r-title'), s.title);
  const rec = s.recording;
  setText($('#r-sub'), [t('session.expert', { name: s.expert_name }), rec ? replaySubline(rec, formatDateTime) : t('state.ended')].filter(Boolean).join(' · '));
  renderBadge($('#r-badge'), s);
}

function renderReplay() {
  if (!replaySession) return;
  renderReplayHead();
  if (replay) replay.paint();
  else if (replaySession.recording === null) renderReplayEmpty();
  renderParts();
  renderAttached();
}

// ---- videos from the library attached to the session: "watch before" / "watch after" ----

let library = null;
let libraryAsked = false;
async function renderAttached() {
  const s = replaySession || store.session || preview;
  const box = $(replaySession ? '#r-videos' : '#p-videos');
  if (!s || !Array.isArray(s.videos) || !s.videos.length) { show(box, false); return; }
  if (!library) {
    if (libraryAsked) return;
    libraryAsked = true;
    try { library = await loadVideos(); } catch { libraryAsked = false; return; }
  }
  const items = attachedFor(s, library);
  show(box, items.length > 0);
  if (!items.length) return;
  let list = box.querySelector('ul');
  let title = box.querySelector('h2');
  if (!list) {
    title = h('h2');
    list = h('ul', { class: 'lib-list' });
    box.append(title, list);
  }
  setText(title, t(s.state === 'ended' ? 'lib.watchAfter' : 'lib.watchBefore'));
  renderVideos(list, items);
}

$('#unmute').addEventListener('click', () => {
  const video = $('#video');
  video.muted = false;
  const p = video.play();
  if (p && p.catch) p.catch(() => {});
  renderStage();
});
$('#video').addEventListener('volumechange', renderStage);

// ---- ask box ----

const askText = $('#ask-text');

function restoreDraft() {
  const draft = loadJSON(draftKey);
  if (draft && !askText.value) askText.value = draft;
  updateCounter();
  if (askText.value) screener.input(askText.value);
}

let draftTimer = null;
function saveDraft(text) {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(() => saveJSON(draftKey, text ? text : null), 300);
}

function updateCounter() {
  const n = charCount(askText.value);
  const max = limit('question_chars');
  showCount($('#ask-count'), n, max);
  const consenting = store.needsConsent();
  show($('#consent'), consenting);
  show($('#ask-muted'), !!(store.you && store.you.muted));
  // offline, the question is kept and sent when the socket is back
  $('#ask-btn').disabled = n === 0 || n > max || !hub || askText.dataset.busy === '1'
    || (consenting && !$('#consent-box').checked);
}

// While the patient types, the server's detector says what it would hide; nothing is stored.
let screened = null; // { text, findings, redacted } for the box as it is, or null
const screener = new Screener({
  request: async (text) => {
    if (!hub || !hub.online) return null;
    return hub.request({ type: 'screen', text });
  },
  onResult: (result) => {
    screened = result;
    renderWarning();
  },
});

function renderWarning() {
  const warn = $('#ask-warn');
  // The last answer stays while the patient types on: a warning that blinks at every key is not read.
  let text = screened ? warningText(screened.findings) : '';
  // In a session whose questions show at once, one with a finding waits for a moderator.
  const post = store.session && store.session.moderation === 'post';
  if (text && post && !kindsFound(screened.findings).includes('blocked_word')) text += ` ${t('warn.heldPost')}`;
  setText(warn, text);
  show(warn, !!text);
  warn.classList.toggle('personal', !!screened && kindsFound(screened.findings).some(isPersonal));
}

askText.addEventListener('input', () => {
  updateCounter();
  saveDraft(askText.value);
  screener.input(askText.value);
  renderWarning();
});
$('#consent-box').addEventListener('change', () => {
  updateCounter();
  if ($('#consent-box').checked) flushOutbox();
});

/** Record the patient's consent once; true when it is on record. */
async function consent() {
  if (!store.needsConsent()) return true;
  const ack = await hub.request({ type: 'consent' });
  store.setConsent(ack.consented_at || new Date().toISOString());
  return true;
}

$('#ask').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = askText.value.trim();
  const n = charCount(text);
  if (n === 0 || n > limit('question_chars')) return;
  // Every question goes through the outbox: kept in localStorage until the server acknowledges
  // it, so being offline, a lost reply or a reload never loses it nor sends it twice.
  // the tick is the patient's, given now; the consent request goes out with the question
  const entry = outbox.add(text, { consented: $('#consent-box').checked || (!!store.you && !store.needsConsent()) });
  askText.value = '';
  saveDraft('');
  screener.input('');
  screened = null;
  renderWarning();
  selectTab('mine');
  render();
  if (!hub || !hub.online) {
    toast(t('ask.queued'), { ms: 6000 });
    return;
  }
  sendEntry(entry.id, true);
});

/** Put a question back in the box (it was refused): the patient can change it and send again. */
function giveBack(text) {
  if (!askText.value.trim()) {
    askText.value = text;
    saveDraft(text);
    screener.input(text);
  }
  updateCounter();
}

/**
 * Send one outbox entry. Returns 'sent', 'dropped' (refused for good), 'kept' (may have
 * arrived: checked after reconnecting) or 'wait' (try again later). `fresh`: just typed.
 */
async function sendEntry(id, fresh = false) {
  const entry = outbox.get(id);
  if (!entry || inFlight.has(id)) return 'wait';
  if (store.needsConsent() && !$('#consent-box').checked && !entry.consented) {
    // nothing is sent without the patient's own tick
    show($('#consent'), true);
    if (fresh) toast(t('err.consent_required'), { bad: true, ms: 6000 });
    return 'wait';
  }
  inFlight.add(id);
  try {
    try {
      await consent();
    } catch (err) {
      if (!err.uncertain && err.code !== 'not_connected' && err.code !== 'offline') toast(errorText(err), { bad: true });
      return 'wait';
    }
    // from here the server may have it: a reload or a reconnect looks before sending again
    outbox.markSending(id, store.mineIds);
    render();
    const ack = await hub.request({ type: 'ask', text: entry.text });
    outbox.remove(id);
    const post = store.session && store.session.moderation === 'post';
    const held = !!(ack && ack.question && ack.question.status === 'pending');
    if (!fresh) toast(t('ask.flushed'));
    else toast(!post ? t('ask.sentPre') : held ? t('ask.sentHeld') : t('ask.sentPost'));
    return 'sent';
  } catch (err) {
    if (err.code === 'not_connected' || err.code === 'offline') {
      outbox.requeue(id);
      if (fresh) toast(t('ask.queued'), { ms: 6000 });
      return 'wait';
    }
    if (err.uncertain) {
      // kept as "sending": found in the state after reconnecting, or sent again then
      toast(t(err.code === 'unavailable' ? 'ask.unavailable' : 'ask.uncertain'), { ms: 6000 });
      // the socket may stay up (a busy store, a lost reply): look again in a moment
      if (err.code !== 'disconnected') setTimeout(flushOutbox, 3000);
      return 'kept';
    }
    if (err.code === 'rate_limited') {
      outbox.requeue(id);
      const ms = err.retryAfterMs || 10000;
      toast(t('ask.rateLimited', { s: Math.ceil(ms / 1000) }), { bad: true, ms: 6000 });
      setTimeout(flushOutbox, ms + 200);
      return 'wait';
    }
    outbox.remove(id);
    giveBack(entry.text);
    if (err.code === 'consent_required') {
      // the server has no consent on record (it was removed): ask again, plainly
      store.setConsent(null);
      $('#consent-box').checked = false;
      toast(t('err.consent_required'), { bad: true, ms: 6000 });
    } else if (err.code === 'muted') {
      store.setMuted(true);
      toast(t('err.muted'), { bad: true, ms: 8000 });
    } else {
      toast(errorText(err), { bad: true });
    }
    return 'dropped';
  } finally {
    inFlight.delete(id);
    render();
  }
}

/**
 * Send what waits in the outbox, once the socket is up. An entry that may already be stored is
 * looked for first: the `pong` of a ping sent now comes after every event the resume replays
 * (docs/protocol.md), so the state is complete when it arrives.
 */
let flushing = false;
async function flushOutbox() {
  if (flushing || !hub || !hub.online || !outbox.size) return;
  if (store.session && store.session.state === 'ended') return;
  flushing = true;
  try {
    if (outbox.items.some((e) => e.state === 'sending' && !inFlight.has(e.id))) await hub.request({ type: 'ping' });
    for (const { entry } of outbox.reconcile(store.mine())) if (!inFlight.has(entry.id)) toast(t('ask.arrived'));
    for (const entry of [...outbox.items]) {
      if (!hub.online) break;
      const result = await sendEntry(entry.id);
      if (result !== 'sent' && result !== 'dropped') break;
    }
  } catch { /* offline again: the next "online" sends them */ } finally {
    flushing = false;
    render();
  }
}

// ---- tabs and lists ----

function selectTab(name) {
  tab = name;
  for (const n of ['queue', 'mine', 'answered']) {
    $(`#tab-${n}`).setAttribute('aria-selected', String(n === name));
    show($(`#panel-${n}`), n === name);
  }
}
for (const n of ['queue', 'mine', 'answered']) $(`#tab-${n}`).addEventListener('click', () => selectTab(n));

function voteButton() {
  const n = h('span', { class: 'n' });
  const button = h('button', { class: 'vote', type: 'button' }, h('span', { class: 'arrow', 'aria-hidden': 'true', text: '▲' }), n);
  button.refs = { n };
  button.addEventListener('click', () => toggleVote(Number(button.dataset.id)));
  return button;
}

async function toggleVote(id) {
  if (!hub || !hub.online) {
    toast(t('err.not_connected'), { bad: true });
    return;
  }
  const voted = store.myVotes.has(id);
  store.setVoted(id, !voted);
  try {
    const ack = await hub.request({ type: voted ? 'unvote' : 'vote', question: id });
    if (typeof ack.voted === 'boolean') store.setVoted(id, ack.voted);
  } catch (err) {
    if (!err.uncertain) store.setVoted(id, voted);
    toast(errorText(err), { bad: true });
  }
}

function queueItem() {
  const node = createQuestionNode({ lead: voteButton() });
  node.refs.vote = node.firstChild;
  return node;
}

function updateQueueItem(node, q) {
  // The public list shows what everyone sees (the author's own words are in "my questions").
  updateQuestionNode(node, q, { store, mine: true });
  const button = node.refs.vote;
  const voted = store.myVotes.has(q.id);
  const ended = store.session && store.session.state === 'ended';
  button.dataset.id = String(q.id);
  button.setAttribute('aria-pressed', String(voted));
  button.setAttribute('aria-label', t(voted ? 'vote.remove' : 'vote.add', { n: q.votes }));
  button.disabled = ended;
  setText(button.refs.n, q.votes);
}

function plainItem() {
  return createQuestionNode();
}

/** One of my questions; those still in the outbox say so ("waiting for the network"). */
function updateMineItem(node, q) {
  updateQuestionNode(node, q, { store, status: true, author: true });
  node.classList.toggle('local', !!q.local);
}

function countedItem() {
  return createQuestionNode({ votes: true });
}

function renderAll() {
  if (!hub) return;
  const s = store.session || preview;
  if (s) {
    document.title = `${s.title} · OncoLive`;
    setText($('#s-title'), s.title);
    setText($('#s-sub'), sessionSubline(s));
    renderBadge($('#s-badge'), s);
  }
  renderStage();

  renderAnswering(store.answering());

  const ended = s && s.state === 'ended';
  show($('#ask'), !ended);
  show($('#ask-closed'), !!ended);
  if (ended) setChildren($('#ask-closed'), t('ask.closed'));
  setText($('#ask-hint'), s && s.moderation === 'post' ? t('ask.hintPost') : t('ask.hintPre'));
  updateCounter();

  const waiting = outbox.asQuestions(identity && identity.name ? identity.name : null);
  if (!store.loaded) {
    const loading = stateBlock('loading', t('loading'));
    for (const id of ['queue', 'mine', 'answered']) {
      const list = $(`#${id}`);
      // questions kept from before a reload show at once, even before the socket is up
      if (id === 'mine' && waiting.length) renderQuestions(list, waiting, plainItem, updateMineItem, '');
      else if (!list.firstChild) setChildren(list, h('li', null, loading.cloneNode(true)));
    }
    setText($('#count-mine'), waiting.length || 0);
    return;
  }

  const queue = store.queue();
  const mine = [...waiting.reverse(), ...store.mine()];
  const answered = store.byStatus('answered', newestFirst);
  setText($('#count-queue'), queue.length);
  setText($('#count-mine'), mine.length);
  setText($('#count-answered'), answered.length);
  renderQuestions($('#queue'), queue, queueItem, updateQueueItem, t('empty.queue'));
  renderQuestions($('#mine'), mine, plainItem, updateMineItem, t('empty.mine'));
  renderQuestions($('#answered'), answered, countedItem, (node, q) => updateQuestionNode(node, q, { store }), t('empty.answered'));
}

// The limits set the ask counter and the name's maxlength; without them the server's reply decides.
loadSite().then(() => { renderFrame(); render(); });
renderFrame();
loadLimits().then(() => {
  applyMaxLength($('#join-name'), 'name_chars');
  updateCounter();
});
boot();
// Keep "in 3 minutes" and the like fresh.
setInterval(() => { if (store.session && store.session.state === 'scheduled') renderStage(); }, 30000);
