//! The personal-detail rules (docs/privacy.md, "What is detected"), on folded text (see
//! `super::fold`): one `char` per code point of the original, ASCII lower case.
//!
//! Numbers are read as *chunks* (maximal runs of digits, an ID's final `x` included) joined
//! into *groups* by short separators (` `, `-`, parentheses), because people type
//! "138 1234 5678" and "(0755)1234567". Every run of whole chunks in a group is tried, longest
//! first, so a number is never cut out of a longer digit run, and a phone number next to an
//! unrelated number in the same group is still found.
//!
//! A cue word ("身份证", "卡号", "微信", a record cue...) just before a number lowers the bar:
//! a mistyped ID number is still an ID number.

use time::{Date, Month};

use super::{Finding, FindingKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    /// Then any ID-shaped number is one, whatever its check digit.
    Id,
    /// Then 15–19 digits are a card, whatever their Luhn digit.
    Bank,
    /// Then 7–8 digits are a landline without its area code.
    Phone,
    /// Then 4–20 letters and digits are a hospital record number.
    Record,
    /// Then a WeChat id (6–20 of `[a-z0-9_-]`, a letter first).
    Wechat,
    /// Then a QQ number (5–11 digits).
    Qq,
}

const ID_CUES: &[&str] = &[
    "身份证",
    "身份證",
    "身份证号",
    "身份号码",
    "证件号",
    "證件號",
    "id",
    "id number",
    "id card",
    "id no",
    "identity card",
    "identity number",
    "resident id",
];

const BANK_CUES: &[&str] = &[
    "银行卡",
    "銀行卡",
    "卡号",
    "卡號",
    "银行账号",
    "账号",
    "帐号",
    "储蓄卡",
    "信用卡",
    "card",
    "card number",
    "card no",
    "bank card",
    "credit card",
    "debit card",
    "account number",
    "bank account",
];

const PHONE_CUES: &[&str] = &[
    "电话",
    "電話",
    "手机",
    "手機",
    "座机",
    "联系方式",
    "tel",
    "phone",
    "telephone",
    "mobile",
    "cell",
    "call me",
];

const WECHAT_CUES: &[&str] = &[
    "微信",
    "微信号",
    "威信",
    "薇信",
    "v信",
    "薇",
    "vx",
    "wx",
    "wechat",
    "weixin",
    "v",
];

const QQ_CUES: &[&str] = &["qq", "qq号", "扣扣", "企鹅号"];

/// What may follow `加` (add) to make "add (me on) WeChat": the contact apps, longest first.
const ADD_TARGETS: &[&str] = &[
    "微信", "威信", "薇信", "v信", "wechat", "weixin", "扣扣", "企鹅", "微", "薇", "vx", "wx",
    "qq", "v", "好友",
];

/// Words between `加` and the app: 加我微信, 加一下您的微信, 加个V, 加主任微信.
const ADD_FILLERS: &[char] = &[
    '我', '你', '您', '的', '个', '個', '一', '下', '他', '她', '咱', '俺', '上', ' ', '主', '任',
    '医', '生', '老', '师', '大', '夫', '专', '家',
];

/// Characters before `加` that make it another word: 参加 (attend), 增加 (increase)...
/// "参加微信直播" is not a solicitation; "添加我的微信" is.
const NOT_ADD_BEFORE: &[char] = &['参', '增', '更', '附', '施', '追', '叠', '外', '强', '递'];

/// Phrases that ask for a private contact without `加`.
const CONTACT_PHRASES: &[&str] = &[
    "微信同号",
    "手机同微信",
    "电话同微信",
    "留个微信",
    "留下微信",
    "留一下微信",
    "留个电话",
    "留个联系方式",
    "留下联系方式",
    "给个微信",
    "私加微信",
    "wechat me",
];

const EN_CONTACT_VERBS: &[&str] = &["add", "message", "contact", "reach", "text", "dm", "ping"];
const EN_CONTACT_WHO: &[&str] = &["me", "us", "you", "him", "her", "my", "your", "the doctor"];
const EN_CONTACT_VIA: &[&str] = &["on", "via", "at", "through", "in", "by"];
const EN_CONTACT_APPS: &[&str] = &["wechat", "weixin", "qq", "whatsapp"];

/// Pattern, folded: a space matches any run of spaces, or none.
#[derive(Debug)]
struct Pattern {
    chars: Vec<char>,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        let folded: String = text.chars().map(super::fold_char).collect();
        Pattern {
            chars: folded
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .collect(),
        }
    }

    /// Where a match at `pos` ends, honouring ASCII word boundaries at both ends (a digit may
    /// follow: "qq12345", "mrn0042").
    fn match_at(&self, t: &[char], pos: usize) -> Option<usize> {
        let first = *self.chars.first()?;
        if first.is_ascii_alphanumeric() && pos > 0 && t[pos - 1].is_ascii_alphanumeric() {
            return None;
        }
        let mut i = pos;
        for &pc in &self.chars {
            if pc == ' ' {
                while t.get(i) == Some(&' ') {
                    i += 1;
                }
                continue;
            }
            if t.get(i) != Some(&pc) {
                return None;
            }
            i += 1;
        }
        let last = self.chars.last().copied().unwrap_or(' ');
        if last.is_ascii_alphabetic() && t.get(i).is_some_and(char::is_ascii_alphabetic) {
            return None;
        }
        Some(i)
    }
}

#[derive(Debug)]
pub(super) struct Detector {
    cues: Vec<(Pattern, Cue)>,
    add_targets: Vec<Pattern>,
    phrases: Vec<Pattern>,
    english: [Vec<Pattern>; 4],
    wxid: Pattern,
    today: Date,
}

/// A span found by one rule, and how sure that rule is when two rules claim the same span.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    kind: FindingKind,
    start: usize,
    end: usize,
    priority: u8,
}

// Exact ties only: the more specific rule names the span.
const P_EMAIL: u8 = 7;
const P_CONTACT: u8 = 6;
const P_ID_CHECKED: u8 = 5;
const P_RECORD: u8 = 4;
const P_ID_CUED: u8 = 3;
const P_BANK: u8 = 2;
const P_PHONE: u8 = 1;
const P_LANDLINE: u8 = 0;

#[derive(Debug, Clone, Copy)]
struct CueHit {
    start: usize,
    end: usize,
    cue: Cue,
}

impl Detector {
    pub(super) fn new(record_cues: &[String], today: Date) -> Detector {
        let mut cues = Vec::new();
        let lists: [(&[&str], Cue); 5] = [
            (ID_CUES, Cue::Id),
            (BANK_CUES, Cue::Bank),
            (PHONE_CUES, Cue::Phone),
            (WECHAT_CUES, Cue::Wechat),
            (QQ_CUES, Cue::Qq),
        ];
        for (list, cue) in lists {
            cues.extend(list.iter().map(|s| (Pattern::new(s), cue)));
        }
        cues.extend(record_cues.iter().map(|s| (Pattern::new(s), Cue::Record)));
        cues.retain(|(p, _)| !p.chars.is_empty());
        // Longest first, so that at one position "身份证号" wins over "身份证".
        cues.sort_by_key(|(p, _)| std::cmp::Reverse(p.chars.len()));
        let add_targets = patterns(ADD_TARGETS);
        Detector {
            cues,
            add_targets,
            phrases: patterns(CONTACT_PHRASES),
            english: [
                patterns(EN_CONTACT_VERBS),
                patterns(EN_CONTACT_WHO),
                patterns(EN_CONTACT_VIA),
                patterns(EN_CONTACT_APPS),
            ],
            wxid: Pattern::new("wxid_"),
            today,
        }
    }

    pub(super) fn findings(&self, t: &[char]) -> Vec<Finding> {
        let hits = self.cue_hits(t);
        let mut found = Vec::new();
        self.numbers(t, &hits, &mut found);
        emails(t, &mut found);
        self.contacts(t, &hits, &mut found);
        records(t, &hits, &mut found);
        resolve(found)
    }

    /// Leftmost-longest and disjoint: in "ID card no." the cue is "id card" (an ID follows),
    /// not the "card no" inside it.
    fn cue_hits(&self, t: &[char]) -> Vec<CueHit> {
        let mut hits = Vec::new();
        let mut pos = 0;
        while pos < t.len() {
            match self
                .cues
                .iter()
                .find_map(|(p, cue)| p.match_at(t, pos).map(|end| (end, *cue)))
            {
                Some((end, cue)) => {
                    hits.push(CueHit {
                        start: pos,
                        end,
                        cue,
                    });
                    pos = end.max(pos + 1);
                }
                None => pos += 1,
            }
        }
        hits
    }

    fn numbers(&self, t: &[char], hits: &[CueHit], out: &mut Vec<Candidate>) {
        let chunks = chunks(t);
        let mut g = 0;
        while g < chunks.len() {
            let mut h = g + 1;
            while h < chunks.len() && joined(t, &chunks[h - 1], &chunks[h]) {
                h += 1;
            }
            self.group(t, &chunks[g..h], hits, out);
            g = h;
        }
    }

    /// Tries runs of whole chunks, longest first from the left; a run that is a number of
    /// some kind is taken and the search goes on after it.
    fn group(&self, t: &[char], group: &[Chunk], hits: &[CueHit], out: &mut Vec<Candidate>) {
        let mut i = 0;
        'from: while i < group.len() {
            // No number is longer than 22 digits: bounding the run keeps a pasted wall of
            // spaced digits linear instead of cubic.
            let mut last = i + 1;
            let mut digits_so_far = group[i].end - group[i].start;
            while last < group.len() && digits_so_far + group[last].end - group[last].start <= 22 {
                digits_so_far += group[last].end - group[last].start;
                last += 1;
            }
            for j in (i + 1..=last).rev() {
                let run = &group[i..j];
                let digits: String = run.iter().flat_map(|c| t[c.start..c.end].iter()).collect();
                if digits.len() > 22 || !typed_as_one_number(t, run) {
                    continue;
                }
                let mut start = run[0].start;
                if start > 0 && t[start - 1] == '+' {
                    start -= 1;
                }
                let cue = cue_before(t, hits, start);
                if let Some((kind, priority)) = self.classify(&digits, run, t, cue) {
                    if kind == FindingKind::Landline && start > 0 && t[start - 1] == '(' {
                        start -= 1;
                    }
                    out.push(Candidate {
                        kind,
                        start,
                        end: run[run.len() - 1].end,
                        priority,
                    });
                    i = j;
                    continue 'from;
                }
            }
            i += 1;
        }
    }

    fn classify(
        &self,
        d: &str,
        run: &[Chunk],
        t: &[char],
        cue: Option<Cue>,
    ) -> Option<(FindingKind, u8)> {
        let b = d.as_bytes();
        let n = b.len();
        let id_shaped =
            (n == 18 && b[..17].iter().all(u8::is_ascii_digit)) || (n == 15 && !d.contains('x'));
        if d.contains('x') {
            return if n == 18 && self.valid_id18(b) {
                Some((FindingKind::IdNumber, P_ID_CHECKED))
            } else if cue == Some(Cue::Id) && id_shaped {
                Some((FindingKind::IdNumber, P_ID_CUED))
            } else {
                None
            };
        }
        // A 0 in front is how a mobile is dialled from a landline in another city.
        let mobile = match n {
            11 => Some(b),
            12 if d.starts_with('0') => Some(&b[1..]),
            13 if d.starts_with("86") => Some(&b[2..]),
            15 if d.starts_with("0086") => Some(&b[4..]),
            _ => None,
        };
        if mobile.is_some_and(is_mobile) {
            return Some((FindingKind::Phone, P_PHONE));
        }
        if (n == 18 && self.valid_id18(b)) || (n == 15 && self.valid_id15(b)) {
            return Some((FindingKind::IdNumber, P_ID_CHECKED));
        }
        if cue == Some(Cue::Id) && id_shaped {
            return Some((FindingKind::IdNumber, P_ID_CUED));
        }
        if (10..=12).contains(&n) && is_landline(b, run, t) {
            return Some((FindingKind::Landline, P_LANDLINE));
        }
        if cue == Some(Cue::Phone) && (7..=8).contains(&n) && (b'2'..=b'9').contains(&b[0]) {
            return Some((FindingKind::Landline, P_LANDLINE));
        }
        if ((16..=19).contains(&n) && luhn(b)) || (cue == Some(Cue::Bank) && (15..=19).contains(&n))
        {
            return Some((FindingKind::BankCard, P_BANK));
        }
        None
    }

    /// GB 11643-1999: region (first digit 1–8), birth date, sequence, ISO 7064 MOD 11-2.
    fn valid_id18(&self, b: &[u8]) -> bool {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: &[u8; 11] = b"10x98765432";
        if b.len() != 18
            || !b[..17].iter().all(u8::is_ascii_digit)
            || !(b'1'..=b'8').contains(&b[0])
        {
            return false;
        }
        let sum: u32 = b[..17]
            .iter()
            .zip(WEIGHTS)
            .map(|(&c, w)| u32::from(c - b'0') * w)
            .sum();
        let expected = CHECK[(sum % 11) as usize];
        b[17] == expected && self.birth_date(&b[6..10], &b[10..12], &b[12..14])
    }

    /// The 15-digit numbers issued before 1999: region, YYMMDD in the 1900s, sequence.
    fn valid_id15(&self, b: &[u8]) -> bool {
        b.len() == 15
            && b.iter().all(u8::is_ascii_digit)
            && (b'1'..=b'8').contains(&b[0])
            && self.birth_date(&[b'1', b'9', b[6], b[7]], &b[8..10], &b[10..12])
    }

    fn birth_date(&self, y: &[u8], m: &[u8], d: &[u8]) -> bool {
        let (Some(y), Some(m), Some(d)) = (number(y), number(m), number(d)) else {
            return false;
        };
        let Ok(month) = Month::try_from(m as u8) else {
            return false;
        };
        let (Ok(y), Ok(d)) = (i32::try_from(y), u8::try_from(d)) else {
            return false;
        };
        match Date::from_calendar_date(y, month, d) {
            Ok(date) => y >= 1900 && date <= self.today,
            Err(_) => false,
        }
    }

    fn contacts(&self, t: &[char], hits: &[CueHit], out: &mut Vec<Candidate>) {
        for pos in 0..t.len() {
            if let Some((end, app)) = self.add_phrase(t, pos) {
                let id_end = contact_id(t, end, app, true);
                out.push(contact(pos, id_end.map_or(end, |(_, e)| e)));
            } else if let Some(end) = self.phrases.iter().find_map(|p| p.match_at(t, pos)) {
                out.push(contact(pos, end));
            } else if let Some(end) = self.english_add_phrase(t, pos) {
                let id_end = contact_id(t, end, Cue::Wechat, false);
                out.push(contact(pos, id_end.map_or(end, |(_, e)| e)));
            }
            // WeChat's own generated ids need no cue.
            if self.wxid.match_at(t, pos).is_some() {
                let end = id_token_end(t, pos);
                if end - pos >= 9 {
                    out.push(contact(pos, end));
                }
            }
        }
        for hit in hits {
            if matches!(hit.cue, Cue::Wechat | Cue::Qq) {
                // "微信号 zhangsan": the cue itself announces the id.
                let announces = t[hit.end - 1] == '号';
                let Some((start, end)) = contact_id(t, hit.end, hit.cue, announces) else {
                    continue;
                };
                // A lone "V" is WeChat only when it announces an id: "我V:dr_li_88".
                let lone_v = hit.end - hit.start == 1;
                if lone_v && !skip_fillers(t, hit.end).1 {
                    continue;
                }
                out.push(contact(start, end));
            }
        }
    }

    /// "加我微信", "+V", "添加您的QQ": where it ends and which app it names.
    fn add_phrase(&self, t: &[char], pos: usize) -> Option<(usize, Cue)> {
        let c = t[pos];
        if c != '加' && c != '+' {
            return None;
        }
        if pos > 0 && NOT_ADD_BEFORE.contains(&t[pos - 1]) {
            return None;
        }
        let mut i = pos + 1;
        if c == '加' {
            let mut skipped = 0;
            while skipped < 4 && t.get(i).is_some_and(|c| ADD_FILLERS.contains(c)) {
                i += 1;
                skipped += 1;
            }
        }
        // Fillers are optional: "加微信" as well as "加我微信"; try from the longest skip down.
        (pos + 1..=i).rev().find_map(|from| {
            self.add_targets.iter().find_map(|p| {
                let end = p.match_at(t, from)?;
                // "加微" is WeChat, "加微量元素" is not; the same for "加V" and "加vitamin".
                let next = t.get(end).copied();
                if p.chars.len() == 1 && next.is_some_and(|n| is_cjk(n) || n.is_ascii_alphabetic())
                {
                    return None;
                }
                let app = if p.chars.iter().any(|&c| c == 'q' || c == '扣' || c == '企') {
                    Cue::Qq
                } else {
                    Cue::Wechat
                };
                Some((end, app))
            })
        })
    }

    /// "add me on wechat", "can I add you on WeChat", "message me via qq", "add my wechat".
    fn english_add_phrase(&self, t: &[char], pos: usize) -> Option<usize> {
        let [verbs, who, via, apps] = &self.english;
        let word = |list: &[Pattern], at: usize| -> Option<usize> {
            let mut at = at;
            while t.get(at) == Some(&' ') {
                at += 1;
            }
            list.iter().find_map(|w| w.match_at(t, at))
        };
        if t[pos] == ' ' {
            return None;
        }
        let verb = word(verbs, pos)?;
        let after_who = word(who, verb).unwrap_or(verb);
        let after_via = word(via, after_who).unwrap_or(after_who);
        word(apps, after_via)
    }
}

fn patterns(list: &[&str]) -> Vec<Pattern> {
    let mut out: Vec<Pattern> = list.iter().map(|s| Pattern::new(s)).collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.chars.len()));
    out
}

fn contact(start: usize, end: usize) -> Candidate {
    Candidate {
        kind: FindingKind::Contact,
        start,
        end,
        priority: P_CONTACT,
    }
}

/// The id after a contact cue ending at `from`, past fillers such as "：", "号", "是", "id".
/// A WeChat id of letters only ("zhangsan") is taken after an explicit
/// "：/是/号" or inside a request to add ("加我微信 zhangsan"), not after a bare cue in running
/// text: "微信 version 8.0 看不了" and "my wechat really works" hold no id.
fn contact_id(t: &[char], from: usize, app: Cue, letters_ok: bool) -> Option<(usize, usize)> {
    let (start, explicit) = skip_fillers(t, from);
    let first = *t.get(start)?;
    match app {
        Cue::Qq => {
            let end = digits_end(t, start);
            let len = end - start;
            ((5..=11).contains(&len)
                && first != '0'
                && !t.get(end).is_some_and(|c| c.is_ascii_alphabetic()))
            .then_some((start, end))
        }
        _ => {
            if !first.is_ascii_alphabetic() {
                return None;
            }
            let end = id_token_end(t, start);
            let len = end - start;
            if !(6..=20).contains(&len) || t.get(end).is_some_and(|&c| c == '@') {
                return None;
            }
            let only_letters = t[start..end].iter().all(char::is_ascii_alphabetic);
            (!only_letters || letters_ok || explicit).then_some((start, end))
        }
    }
}

fn id_token_end(t: &[char], start: usize) -> usize {
    let mut end = start;
    while t
        .get(end)
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        end += 1;
    }
    while end > start && t[end - 1] == '-' {
        end -= 1;
    }
    end
}

fn digits_end(t: &[char], start: usize) -> usize {
    let mut end = start;
    while t.get(end).is_some_and(char::is_ascii_digit) {
        end += 1;
    }
    end
}

/// Skips what people put between a cue and its value: spaces, "：", "#", "号", "是", "为",
/// "number", "no.", "is"; at most 12 characters. Says whether one of them announced the value.
fn skip_fillers(t: &[char], from: usize) -> (usize, bool) {
    const WORDS: &[(&str, bool)] = &[
        ("number", false),
        ("num", false),
        ("no", false),
        ("nr", false),
        ("id", true),
        ("is", false),
        ("account", false),
    ];
    let mut i = from;
    let mut explicit = false;
    while i < t.len() && i - from < 12 {
        match t[i] {
            ' ' | '#' | '=' | ',' | '-' | '(' | ')' | '码' | '碼' | '.' => i += 1,
            ':' | '是' | '为' | '為' | '号' | '號' => {
                explicit = true;
                i += 1;
            }
            c if c.is_ascii_alphabetic() => {
                let mut end = i;
                while t.get(end).is_some_and(char::is_ascii_alphabetic) {
                    end += 1;
                }
                let w: String = t[i..end].iter().collect();
                match WORDS.iter().find(|(name, _)| *name == w) {
                    Some(&(_, announces)) => {
                        explicit |= announces;
                        i = end;
                    }
                    None => break,
                }
            }
            _ => break,
        }
    }
    (i, explicit)
}

/// The cue that ends closest before `start`, if nothing but fillers (record, phone and
/// contact cues) or a few non-digit words (ID and card cues, whose numbers have a strong
/// shape: "身份证上的号码 11010519..." ) stand between.
fn cue_before(t: &[char], hits: &[CueHit], start: usize) -> Option<Cue> {
    let hit = hits
        .iter()
        .filter(|h| h.end <= start)
        .max_by_key(|h| (h.end, std::cmp::Reverse(h.start)))?;
    let gap = &t[hit.end..start];
    let ok = match hit.cue {
        Cue::Id | Cue::Bank => {
            gap.len() <= 12
                && !gap
                    .iter()
                    .any(|c| c.is_ascii_digit() || matches!(c, '\n' | '。' | '!' | '?' | ';'))
        }
        _ => skip_fillers(t, hit.end).0 == start,
    };
    ok.then_some(hit.cue)
}

/// Hospital record numbers: a configured cue, fillers, then 4–20 letters, digits and inner
/// dashes holding at least 3 digits ("ZY2023-0456", "00123456").
fn records(t: &[char], hits: &[CueHit], out: &mut Vec<Candidate>) {
    for hit in hits.iter().filter(|h| h.cue == Cue::Record) {
        let (start, _) = skip_fillers(t, hit.end);
        let mut end = start;
        while t
            .get(end)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == '-')
        {
            end += 1;
        }
        while end > start && t[end - 1] == '-' {
            end -= 1;
        }
        let token = &t[start..end];
        let digit_count = token.iter().filter(|c| c.is_ascii_digit()).count();
        if (4..=20).contains(&token.len()) && digit_count >= 3 {
            out.push(Candidate {
                kind: FindingKind::RecordNumber,
                start,
                end,
                priority: P_RECORD,
            });
        }
    }
}

/// `local@domain.tld`, ASCII (after folding: "ｚｈａｎｇ＠１６３．ｃｏｍ" too).
fn emails(t: &[char], out: &mut Vec<Candidate>) {
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    for at in (0..t.len()).filter(|&i| t[i] == '@') {
        let mut start = at;
        while start > 0 && local(t[start - 1]) {
            start -= 1;
        }
        while start < at && !t[start].is_ascii_alphanumeric() {
            start += 1;
        }
        let mut end = at + 1;
        while end < t.len() && domain(t[end]) {
            end += 1;
        }
        while end > at + 1 && !t[end - 1].is_ascii_alphanumeric() {
            end -= 1;
        }
        let host: String = t[at + 1..end].iter().collect();
        let labels: Vec<&str> = host.split('.').collect();
        let tld = labels.last().copied().unwrap_or("");
        let ok = start < at
            && labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty())
            && tld.len() >= 2
            && tld.chars().all(|c| c.is_ascii_alphabetic());
        if ok {
            out.push(Candidate {
                kind: FindingKind::Email,
                start,
                end,
                priority: P_EMAIL,
            });
        }
    }
}

/// Earliest start first, then the longest, then the more specific rule; the rest dropped.
fn resolve(mut found: Vec<Candidate>) -> Vec<Finding> {
    found.sort_by_key(|c| {
        (
            c.start,
            std::cmp::Reverse(c.end),
            std::cmp::Reverse(c.priority),
        )
    });
    let mut out: Vec<Finding> = Vec::new();
    for c in found {
        if out.last().is_none_or(|last| last.end <= c.start) {
            out.push(Finding {
                kind: c.kind,
                start: c.start,
                end: c.end,
            });
        }
    }
    out
}

#[derive(Debug)]
struct Chunk {
    start: usize,
    end: usize,
    has_x: bool,
}

/// Runs of digits, the final `x` of an ID included; a run that is part of a decimal
/// ("12.5", "0.13812345678") is none.
fn chunks(t: &[char]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if !t[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            i += 1;
        }
        let mut has_x = false;
        if t.get(i) == Some(&'x') && !t.get(i + 1).is_some_and(char::is_ascii_alphanumeric) {
            has_x = true;
            i += 1;
        }
        let decimal_before = start >= 2 && t[start - 1] == '.' && t[start - 2].is_ascii_digit();
        let decimal_after =
            t.get(i) == Some(&'.') && t.get(i + 1).is_some_and(char::is_ascii_digit);
        if !decimal_before && !decimal_after {
            out.push(Chunk {
                start,
                end: i,
                has_x,
            });
        }
    }
    out
}

/// Whether a run of chunks reads as one number typed in parts ("138 1234 5678", "+86 138...",
/// "6222 0261 4610 0330 765") rather than a list of small numbers ("11 12 13 14 15"): no part
/// shorter than 3 digits, except a leading country code, unless every part is one digit
/// (spelled out to get past a filter: "1 3 8 1 2 3 4 5 6 7 8").
fn typed_as_one_number(t: &[char], run: &[Chunk]) -> bool {
    if run.len() == 1 {
        return true;
    }
    let len = |c: &Chunk| c.end - c.start;
    if run.iter().all(|c| len(c) == 1) {
        return true;
    }
    let first: String = t[run[0].start..run[0].end].iter().collect();
    let rest = if first == "86" || first == "0086" {
        &run[1..]
    } else {
        run
    };
    rest.iter().all(|c| len(c) >= 3)
}

/// Whether two chunks are parts of one typed number: one to three of ` `, `-`, `(`, `)`.
fn joined(t: &[char], a: &Chunk, b: &Chunk) -> bool {
    let gap = &t[a.end..b.start];
    !a.has_x
        && (1..=3).contains(&gap.len())
        && gap.iter().all(|c| matches!(c, ' ' | '-' | '(' | ')'))
}

/// 11 digits, 1[3-9]: every mainland mobile range; carriers' prefixes move with portability.
fn is_mobile(b: &[u8]) -> bool {
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
}

/// 0 + area code + a 7–8 digit local number not starting with 0. Area codes: 010, 02x, and four
/// digits 03xx–09xx. Typed in parts, the first part must be the area code.
fn is_landline(b: &[u8], run: &[Chunk], t: &[char]) -> bool {
    if b[0] != b'0' {
        return false;
    }
    let area = match b[1] {
        b'1' if b[2] == b'0' => 3,
        b'2' => 3,
        b'3'..=b'9' => 4,
        _ => return false,
    };
    let local = &b[area..];
    if !(7..=8).contains(&local.len()) || local[0] == b'0' {
        return false;
    }
    run.len() == 1 || (run[0].end - run[0].start == area && t[run[0].start] == '0')
}

fn luhn(b: &[u8]) -> bool {
    let sum: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn number(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// CJK ideographs (the Unified blocks and Extension A), where a one-character abbreviation
/// such as 微 would be the start of another word.
fn is_cjk(c: char) -> bool {
    matches!(u32::from(c), 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

#[cfg(test)]
pub(super) fn check_digit_ok(id: &str) -> bool {
    let d = Detector::new(&[], super::today());
    let folded: String = id.chars().map(super::fold_char).collect();
    d.valid_id18(folded.as_bytes())
}

#[cfg(test)]
pub(super) fn luhn_ok(digits: &str) -> bool {
    luhn(digits.as_bytes())
}
