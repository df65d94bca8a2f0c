// Expert console: camera and microphone to WHIP, session state, the approved queue,
// "answering" and "answered" in one tap each.
import { $, h, setText, show, setChildren, renderer, toast, charCount, showCount } from './dom.js';
import { t } from './i18n.js';
import { newestFirst } from './store.js';
import { viewersLabel, confirmAction } from './ui.js';
import { Publisher } from './video.js';
import { startStaff, staffSubline } from './staff.js';
import { createQuestionNode, updateQuestionNode, renderQuestions, renderAnswering } from './questions.js';
import { limit } from './limits.js';
import { expertBadge } from './site.js';

const render = renderer(renderAll);
const staff = startStaff({ role: 'expert', render });

let stream = null;
let pubState = 'idle';
let mediaError = null;
let facing = 'user';
let busyState = false;

const publisher = staff && new Publisher({
  sessionId: staff.sid,
  token: staff.token,
  onState: (s) => { pubState = s; render(); },
});

function stopCamera() {
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  stream = null;
  $('#preview').srcObject = null;
}

// Ended elsewhere (the host, another tab): let go of the camera too.
if (staff) {
  staff.store.subscribe(() => {
    const s = staff.store.session;
    if (s && s.state === 'ended' && (publisher.wanted || stream)) {
      publisher.stop();
      stopCamera();
    }
  });
}

// ---- camera and microphone ----

async function openCamera() {
  if (stream) return stream;
  mediaError = null;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || typeof RTCPeerConnection === 'undefined') {
    // browsers offer the camera only on https:// (or localhost), and need WebRTC
    mediaError = window.isSecureContext === false ? 'media.insecure' : 'media.unsupported';
    render();
    return null;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: facing },
    });
  } catch (err) {
    mediaError = err && err.name === 'NotAllowedError' ? 'media.denied'
      : err && err.name === 'NotFoundError' ? 'media.none' : 'media.failed';
    render();
    return null;
  }
  $('#preview').srcObject = stream;
  $('#preview').play().catch(() => {});
  render();
  return stream;
}

function track(kind) {
  return stream ? stream.getTracks().find((tr) => tr.kind === kind) : null;
}

$('#btn-camera').addEventListener('click', openCamera);

$('#btn-live').addEventListener('click', async () => {
  const session = staff.store.session;
  if (!session || session.state === 'ended') return;
  if (publisher.wanted) {
    if (!confirmAction(t('expert.confirmStop'))) return;
    publisher.stop();
    return;
  }
  const s = await openCamera();
  if (!s) return;
  publisher.start(s);
  if (session.state === 'scheduled') {
    busyState = true;
    render();
    const ack = await staff.send({ type: 'set_state', state: 'live' });
    busyState = false;
    if (ack) toast(t('expert.nowLive'));
    render();
  }
});

$('#btn-mic').addEventListener('click', () => {
  const a = track('audio');
  if (a) a.enabled = !a.enabled;
  render();
});

$('#btn-cam').addEventListener('click', () => {
  const v = track('video');
  if (v) v.enabled = !v.enabled;
  render();
});

$('#btn-switch').addEventListener('click', async () => {
  if (!stream) return;
  const old = track('video');
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  const current = old && old.getSettings ? old.getSettings().deviceId : null;
  let constraints;
  if (devices.length > 1) {
    const i = devices.findIndex((d) => d.deviceId === current);
    constraints = { deviceId: { exact: devices[(i + 1) % devices.length].deviceId } };
  } else {
    facing = facing === 'user' ? 'environment' : 'user';
    constraints = { facingMode: facing };
  }
  let next;
  try {
    const s = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 }, ...constraints } });
    next = s.getVideoTracks()[0];
  } catch {
    toast(t('media.switchFailed'), { bad: true });
    return;
  }
  if (old) next.enabled = old.enabled;
  await publisher.replaceVideoTrack(next);
  if (old) {
    stream.removeTrack(old);
    old.stop();
  }
  stream.addTrack(next);
  $('#preview').srcObject = stream;
  render();
});

$('#btn-end').addEventListener('click', async () => {
  const session = staff.store.session;
  if (!session || session.state === 'ended') return;
  if (!confirmAction(t('expert.confirmEnd'))) return;
  const ack = await staff.send({ type: 'set_state', state: 'ended' });
  if (ack) {
    publisher.stop();
    stopCamera();
    toast(t('expert.ended'));
  }
  render();
});

// Closing the tab by mistake would cut the broadcast: ask first.
window.addEventListener('beforeunload', (e) => {
  if (publisher && publisher.wanted) {
    e.preventDefault();
    e.returnValue = '';
  }
});

// ---- answering ----

const answerText = $('#answer-text');
answerText.addEventListener('input', () => {
  showCount($('#answer-count'), charCount(answerText.value), limit('answer_chars'));
});

$('#btn-answered').addEventListener('click', async () => {
  const q = staff.store.answering();
  if (!q) return;
  const answer = answerText.value.trim();
  if (charCount(answer) > limit('answer_chars')) return;
  const button = $('#btn-answered');
  button.disabled = true;
  const ack = await staff.send(answer ? { type: 'answered', question: q.id, answer } : { type: 'answered', question: q.id });
  button.disabled = false;
  if (ack) {
    answerText.value = '';
    setText($('#answer-count'), '');
  }
});

function queueItem() {
  const node = createQuestionNode({ votes: true, actions: true });
  const answering = h('button', { class: 'btn primary small', type: 'button', dataset: { act: 'answering' } });
  const answered = h('button', { class: 'btn small', type: 'button', dataset: { act: 'answered' } });
  // The expert may see at a glance that a question needs a visit, not a broadcast answer.
  const clinic = h('button', { class: 'btn small triage-btn clinic', type: 'button', dataset: { act: 'triage', tag: 'clinic' } });
  const urgent = h('button', { class: 'btn small triage-btn urgent', type: 'button', dataset: { act: 'triage', tag: 'urgent' } });
  node.refs.actions.append(answering, answered, clinic, urgent);
  Object.assign(node.refs, { answering, answered, clinic, urgent });
  node.refs.actions.addEventListener('click', async (e) => {
    const button = e.target.closest('button');
    if (!button) return;
    const id = Number(node.dataset.id);
    const q = staff.store.questions.get(id);
    button.disabled = true;
    if (button.dataset.act === 'triage') {
      const tag = button.dataset.tag;
      await staff.send({ type: 'triage', question: id, tag: q && q.triage === tag ? null : tag });
    } else {
      await staff.send({ type: button.dataset.act, question: id });
    }
    button.disabled = false;
  });
  return node;
}

function updateQueueItem(node, q) {
  updateQuestionNode(node, q, { store: staff.store });
  setText(node.refs.answering, t('expert.answerNow'));
  setText(node.refs.answered, t('expert.markAnsweredShort'));
  for (const tag of ['clinic', 'urgent']) {
    setText(node.refs[tag], t(`triage.${tag}`));
    node.refs[tag].setAttribute('aria-pressed', String(q.triage === tag));
  }
  show(node.refs.answering, q.status === 'approved');
  const ended = staff.store.session && staff.store.session.state === 'ended';
  node.refs.answering.disabled = ended;
  node.refs.answered.disabled = ended;
}

// ---- render ----

/** What patients see of the expert: the badge once the host verified the profile. */
function renderBadgePreview(profile) {
  const el = $('#badge');
  const sig = `${JSON.stringify(profile || null)}|${t('badge.verified')}`;
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  setChildren(el, expertBadge(profile) || h('p', { class: 'small', text: t(profile ? 'expert.badgeUnverified' : 'expert.badgeNone') }));
}

function renderAll() {
  if (!staff) return;
  const { store } = staff;
  const s = store.session;
  if (!s) return;
  document.title = `${t('expert.title')} · ${s.title}`;
  setText($('#s-title'), s.title);
  setText($('#s-sub'), staffSubline(s));
  renderBadgePreview(s.expert_profile);

  const ended = s.state === 'ended';
  const publishing = publisher.wanted;
  const live = $('#btn-live');
  setText(live, publishing ? t('expert.stopVideo') : s.state === 'scheduled' ? t('expert.goLive') : t('expert.resumeVideo'));
  live.className = publishing ? 'btn' : 'btn live';
  live.disabled = ended || busyState;
  show($('#btn-camera'), !stream && !ended);
  const a = track('audio');
  const v = track('video');
  const mic = $('#btn-mic');
  const cam = $('#btn-cam');
  mic.disabled = !a;
  cam.disabled = !v;
  $('#btn-switch').disabled = !v;
  mic.setAttribute('aria-pressed', String(!!a && !a.enabled));
  cam.setAttribute('aria-pressed', String(!!v && !v.enabled));
  setText(mic, a && !a.enabled ? t('expert.unmuteMic') : t('expert.muteMic'));
  setText(cam, v && !v.enabled ? t('expert.cameraOn') : t('expert.cameraOff'));
  $('#btn-end').disabled = ended;

  let status = mediaError ? t(mediaError) : t(`pub.${pubState}`);
  const err = publisher.lastError;
  if (pubState === 'reconnecting' && err) {
    status = [0, 404, 502, 503, 504].includes(err.status) ? t('pub.unreachable') : `${status} (${err.status})`;
  }
  setText($('#pub-status'), status);
  setText($('#state-line'), t(`state.${s.state}`));

  // preview overlay
  let title = '';
  let detail = '';
  if (ended) title = t('video.ended');
  else if (!stream) { title = t('expert.cameraIsOff'); detail = t('expert.cameraHint'); }
  else if (v && !v.enabled) title = t('expert.cameraPaused');
  show($('#p-overlay'), !!title);
  setText($('#p-title'), title);
  setText($('#p-detail'), detail);
  show($('#badge-live'), pubState === 'live' && s.state === 'live');
  setText($('#viewers'), viewersLabel(store.viewers));

  const queue = store.queue();
  const answered = store.byStatus('answered', newestFirst);
  setText($('#stat-viewers'), store.viewers);
  setText($('#stat-queue'), queue.length);
  setText($('#stat-pending'), store.count('pending'));
  setText($('#stat-answered'), answered.length);
  setText($('#count-answered'), answered.length);

  const now = store.answering();
  renderAnswering(now);
  if (now) $('#btn-answered').disabled = ended;

  const waiting = queue.filter((q) => q.status !== 'answering');
  renderQuestions($('#queue'), waiting, queueItem, updateQueueItem, t('empty.expertQueue'));
  renderQuestions($('#answered'), answered, () => createQuestionNode(), (node, q) => updateQuestionNode(node, q, { store }), t('empty.answered'));
}
