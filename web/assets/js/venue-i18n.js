// The venue screen's own texts (the shared catalogues hold what the other pages say; these
// are only for the hall). `vt(key, vars)` in the page's language, falling back to the shared
// catalogue for keys not here.
import { currentLang, tIn } from './i18n.js';

const TEXTS = {
  zh: {
    'venue.scan': '扫码提问',
    'venue.scanReplay': '扫码观看回放 · 查看解答',
    'venue.now': '正在回答',
    'venue.top': '大家最关心的问题',
    'venue.empty': '还没有问题。扫码提出您的问题。',
    'venue.votes': '{n} 票',
    'venue.startsIn': '距离开始',
    'venue.startsAt': '{time} 开始',
    'venue.shortly': '专家马上就到',
    'venue.shortlyDetail': '直播即将开始，请稍候。现在就可以扫码提问。',
    'venue.waiting': '等待专家开启摄像头',
    'venue.waitingDetail': '画面会自动出现。',
    'venue.connecting': '正在连接视频…',
    'venue.stalled': '视频中断，正在重新连接…',
    'venue.thanks': '感谢观看！',
    'venue.thanksDetail': '本场直播已结束。',
    'venue.sound': '点击开启声音',
    'venue.reconnecting': '正在重新连接…',
    'venue.notFound': '找不到这场直播',
  },
  en: {
    'venue.scan': 'Scan to ask',
    'venue.scanReplay': 'Scan for the replay and the answers',
    'venue.now': 'Now answering',
    'venue.top': 'Top questions',
    'venue.empty': 'No questions yet. Scan the code to ask yours.',
    'venue.votes_one': '{n} vote',
    'venue.votes_other': '{n} votes',
    'venue.startsIn': 'Starts in',
    'venue.startsAt': 'Starts at {time}',
    'venue.shortly': 'The expert will be here shortly',
    'venue.shortlyDetail': 'The session is about to begin. You can already scan the code and ask.',
    'venue.waiting': "Waiting for the expert's camera",
    'venue.waitingDetail': 'The picture appears by itself.',
    'venue.connecting': 'Connecting to the video…',
    'venue.stalled': 'The video stopped. Reconnecting…',
    'venue.thanks': 'Thank you for watching!',
    'venue.thanksDetail': 'This session has ended.',
    'venue.sound': 'Click to start sound',
    'venue.reconnecting': 'Reconnecting…',
    'venue.notFound': 'Session not found',
  },
};

export const VENUE_TEXTS = TEXTS;

/** A venue text in `lang` (default: the page's), `{name}` filled from `vars`, plural by `vars.n`. */
export function vtIn(lang, key, vars) {
  const cat = TEXTS[lang] || TEXTS.en;
  let s;
  if (vars && typeof vars.n === 'number') {
    const form = new Intl.PluralRules(lang === 'zh' ? 'zh-CN' : 'en').select(vars.n);
    s = cat[`${key}_${form}`] ?? cat[`${key}_other`];
  }
  if (s === undefined) s = cat[key];
  if (s === undefined) return tIn(lang, key, vars);
  return vars ? s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] !== undefined ? String(vars[name]) : m)) : s;
}

export const vt = (key, vars) => vtIn(currentLang(), key, vars);
