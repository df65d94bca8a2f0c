use std::collections::HashSet;

use super::detect::{check_digit_ok, luhn_ok};
use super::*;

fn kinds(screen: &Screen, text: &str) -> Vec<FindingKind> {
    screen
        .findings(text, &[])
        .into_iter()
        .map(|f| f.kind)
        .collect()
}

/// The text a finding covers, for assertions that read like the input.
fn spans(screen: &Screen, text: &str) -> Vec<(FindingKind, String)> {
    let chars: Vec<char> = text.chars().collect();
    screen
        .findings(text, &[])
        .into_iter()
        .map(|f| (f.kind, chars[f.start..f.end].iter().collect()))
        .collect()
}

fn one(kind: FindingKind, text: &str) -> Vec<(FindingKind, String)> {
    vec![(kind, text.to_owned())]
}

use FindingKind::*;

#[test]
fn resident_id_check_digit_and_birth_date() {
    assert!(check_digit_ok("11010519491231002X"));
    assert!(check_digit_ok("11010519491231002x"));
    assert!(!check_digit_ok("110105194912310021"));
    // Check digit right, date wrong: 30 February, the future, before 1900; region 9.
    assert!(!check_digit_ok("110105199002301231"));
    assert!(!check_digit_ok("110105209901011234"));
    assert!(!check_digit_ok("110105189912311237"));
    assert!(check_digit_ok("110105190001011231"));
    assert!(!check_digit_ok("910105199001011231"));

    let s = Screen::default();
    assert_eq!(kinds(&s, "号码110105199002301231"), vec![]);
    assert_eq!(kinds(&s, "样本 110105209901011234"), vec![]);
    // After a cue, a mistyped number is still somebody's ID.
    assert_eq!(
        spans(&s, "身份证号：110105199002301231"),
        one(IdNumber, "110105199002301231")
    );
    assert_eq!(
        spans(&s, "ID number is 110105194912310021."),
        one(IdNumber, "110105194912310021")
    );
    // 15-digit numbers: YYMMDD must be a date.
    assert_eq!(kinds(&s, "110105491231002"), vec![IdNumber]);
    assert_eq!(kinds(&s, "110105491331002"), vec![]);
}

#[test]
fn bank_cards_need_luhn_unless_cued() {
    assert!(luhn_ok("4111111111111111"));
    assert!(luhn_ok("79927398713"));
    assert!(!luhn_ok("4111111111111112"));
    let s = Screen::default();
    assert_eq!(
        spans(&s, "打款到 6222 0245 3840 1919 谢谢"),
        one(BankCard, "6222 0245 3840 1919")
    );
    assert_eq!(kinds(&s, "订单 6222024538401912"), vec![]);
    assert_eq!(kinds(&s, "卡号 6222024538401912"), vec![BankCard]);
    assert_eq!(kinds(&s, "card no. 6222024538401912"), vec![BankCard]);
    // Too long for a card, even after a cue.
    assert_eq!(kinds(&s, "卡号 62220245384019190001"), vec![]);
}

#[test]
fn mobile_numbers_in_the_ways_people_type_them() {
    let s = Screen::default();
    assert_eq!(spans(&s, "电话13812345678"), one(Phone, "13812345678"));
    assert_eq!(
        spans(&s, "+86 138 1234 5678"),
        one(Phone, "+86 138 1234 5678")
    );
    assert_eq!(
        spans(&s, "拨0086-13812345678"),
        one(Phone, "0086-13812345678")
    );
    assert_eq!(
        spans(&s, "１３８－１２３４－５６７８"),
        one(Phone, "１３８－１２３４－５６７８")
    );
    // Two numbers in one run of spaced digits are two findings.
    assert_eq!(
        spans(&s, "13812345678 13912345678"),
        vec![
            (Phone, "13812345678".to_owned()),
            (Phone, "13912345678".to_owned())
        ]
    );
    // Never cut out of a longer digit run, nor out of a decimal.
    assert_eq!(kinds(&s, "1381234567890"), vec![]);
    assert_eq!(kinds(&s, "813812345678"), vec![]);
    assert_eq!(kinds(&s, "0.13812345678"), vec![]);
    // 12 is no mobile prefix.
    assert_eq!(kinds(&s, "12812345678"), vec![]);
}

#[test]
fn landlines_need_an_area_code_or_a_cue() {
    let s = Screen::default();
    assert_eq!(
        spans(&s, "请打(0755)1234567"),
        one(Landline, "(0755)1234567")
    );
    assert_eq!(spans(&s, "021 6123 4567"), one(Landline, "021 6123 4567"));
    assert_eq!(spans(&s, "010-12345678"), one(Landline, "010-12345678"));
    assert_eq!(spans(&s, "拨013812345678"), one(Phone, "013812345678"));
    // 011 is no area code; typed in parts, the first part must be the area code.
    assert_eq!(kinds(&s, "011-12345678"), vec![]);
    assert_eq!(kinds(&s, "0755-01234567"), vec![]);
    assert_eq!(kinds(&s, "02 16123 4567"), vec![]);
    assert_eq!(kinds(&s, "数字 62345678"), vec![]);
    assert_eq!(kinds(&s, "电话：62345678"), vec![Landline]);
}

#[test]
fn contacts_span_the_id_or_the_solicitation() {
    let s = Screen::default();
    assert_eq!(spans(&s, "微信：zhang_san88"), one(Contact, "zhang_san88"));
    assert_eq!(spans(&s, "QQ号 12345678"), one(Contact, "12345678"));
    assert_eq!(
        spans(&s, "请医生加我微信帮我看CT"),
        one(Contact, "加我微信")
    );
    assert_eq!(
        spans(&s, "加我微信 abc_123"),
        one(Contact, "加我微信 abc_123")
    );
    assert_eq!(
        spans(&s, "add me on WeChat please"),
        one(Contact, "add me on WeChat")
    );
    // A QQ number that looks like a mobile number is the QQ number it is said to be.
    assert_eq!(spans(&s, "qq 13812345678"), one(Contact, "13812345678"));
    // Not solicitations: attending, increasing, microwaves, a name.
    assert_eq!(kinds(&s, "参加微信直播"), vec![]);
    assert_eq!(kinds(&s, "增加微量元素"), vec![]);
    assert_eq!(kinds(&s, "加微波消融"), vec![]);
    assert_eq!(kinds(&s, "张薇医生"), vec![]);
    // Letters only after an English cue need an explicit separator.
    assert_eq!(kinds(&s, "my wechat really works"), vec![]);
    assert_eq!(kinds(&s, "wechat: zhangsan"), vec![Contact]);
    // A lone V needs a separator that announces the id.
    assert_eq!(spans(&s, "我V:dr_li_88"), one(Contact, "dr_li_88"));
    assert_eq!(kinds(&s, "stage v abc123"), vec![]);
}

#[test]
fn record_numbers_follow_the_configured_cues() {
    let s = Screen::default();
    assert_eq!(
        spans(&s, "住院号：ZY2023-0456。"),
        one(RecordNumber, "ZY2023-0456")
    );
    assert_eq!(spans(&s, "住院 ID 88001234"), one(RecordNumber, "88001234"));
    assert_eq!(kinds(&s, "登记号 88001234"), vec![]);
    assert_eq!(kinds(&s, "住院号ab1"), vec![]);

    let config = ScreenConfig {
        record_cues: vec!["登记号".to_owned()],
        ..ScreenConfig::default()
    };
    let s = Screen::new(config).expect("compiles");
    assert_eq!(spans(&s, "登记号 88001234"), one(RecordNumber, "88001234"));
    assert_eq!(kinds(&s, "住院号 88001234"), vec![]);

    let bad = ScreenConfig {
        record_cues: vec!["  ".to_owned()],
        ..ScreenConfig::default()
    };
    assert!(matches!(
        Screen::new(bad),
        Err(ScreenError::RecordCue { .. })
    ));
}

#[test]
fn emails_also_in_full_width() {
    let s = Screen::default();
    assert_eq!(
        spans(&s, "邮箱zhangsan@163.com。"),
        one(Email, "zhangsan@163.com")
    );
    assert_eq!(
        spans(&s, "ｃｈｅｎ＠１２６．ｃｏｍ"),
        one(Email, "ｃｈｅｎ＠１２６．ｃｏｍ")
    );
    assert_eq!(kinds(&s, "a@b"), vec![]);
    assert_eq!(kinds(&s, "@163.com"), vec![]);
    assert_eq!(kinds(&s, "x@y.c1"), vec![]);
}

#[test]
fn offsets_are_code_points_of_the_original() {
    let s = Screen::default();
    // Emoji are one code point each, several UTF-8 bytes: offsets must not be bytes.
    let text = "😀👨电话１３８１２３４５６７８，谢谢";
    let found = s.findings(text, &[]);
    assert_eq!(
        found,
        vec![Finding {
            kind: Phone,
            start: 4,
            end: 15
        }]
    );
    assert_eq!(redact(text, &found), "😀👨电话***，谢谢");
}

#[test]
fn redact_masks_personal_details_and_keeps_blocked_words() {
    let s = Screen::default();
    let text = "代购 13812345678 zhangsan@163.com";
    let found = s.findings(text, &[]);
    assert_eq!(
        found.iter().map(|f| f.kind).collect::<Vec<_>>(),
        vec![BlockedWord, Phone, Email]
    );
    assert_eq!(redact(text, &found), "代购 *** ***");
    assert_eq!(redact("", &found), "");
    // Overlapping, reversed, empty and out-of-range spans: no panic, nothing doubled.
    let odd = [
        Finding {
            kind: Phone,
            start: 2,
            end: 5,
        },
        Finding {
            kind: Email,
            start: 1,
            end: 3,
        },
        Finding {
            kind: Email,
            start: 4,
            end: 4,
        },
        Finding {
            kind: Contact,
            start: 8,
            end: 99,
        },
    ];
    assert_eq!(redact("abcdefghij", &odd), "a***fgh***");
}

#[test]
fn blocked_words_whole_words_and_spread_characters() {
    let s = Screen::default();
    assert_eq!(spans(&s, "BUY   NOW!"), one(BlockedWord, "BUY   NOW"));
    assert_eq!(spans(&s, "代 . 购"), one(BlockedWord, "代 . 购"));
    assert_eq!(kinds(&s, "buy nowhere"), vec![]);
    assert_eq!(kinds(&s, "I can't buy. Now what?"), vec![]);
    let session = vec!["ass".to_owned(), "氧气瓶".to_owned()];
    assert_eq!(s.findings("a 5 cm mass", &session), vec![]);
    assert_eq!(
        s.findings("卖氧气瓶", &session),
        vec![Finding {
            kind: BlockedWord,
            start: 1,
            end: 4
        }]
    );
    // A personal detail wins over a blocked word it overlaps.
    let session = vec!["138123".to_owned()];
    assert_eq!(kinds_with(&s, "13812345678", &session), vec![Phone]);
}

fn kinds_with(s: &Screen, text: &str, words: &[String]) -> Vec<FindingKind> {
    s.findings(text, words)
        .into_iter()
        .map(|f| f.kind)
        .collect()
}

#[test]
fn blocked_word_file_replaces_the_defaults() {
    let file = "# ours\n\n  氧气瓶  \nspam link\n#ignored\n";
    let config = ScreenConfig::default()
        .with_blocked_words_file(file)
        .expect("parses");
    assert_eq!(config.blocked_words, vec!["氧气瓶", "spam link"]);
    let s = Screen::new(config).expect("compiles");
    assert_eq!(kinds(&s, "代购"), vec![]);
    assert_eq!(kinds(&s, "SPAM LINK"), vec![BlockedWord]);

    let long = format!("ok\n{}\n", "x".repeat(MAX_WORD_CHARS + 1));
    match ScreenConfig::default().with_blocked_words_file(&long) {
        Err(ScreenError::WordFile { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a line error, got {other:?}"),
    }
    assert!(
        ScreenConfig::default()
            .with_blocked_words_file("---\n")
            .is_err()
    );
    assert!(
        ScreenConfig::default()
            .with_blocked_words_file("# none\n")
            .is_ok_and(|c| c.blocked_words.is_empty())
    );
}

#[test]
fn the_embedded_list_spares_honest_oncology_words() {
    let s = Screen::default();
    for text in [
        "药",
        "治疗",
        "cancer",
        "cure",
        "drug",
        "pills",
        "靶向药",
        "特效药",
        "仿制药",
        "根治术",
        "垃圾食品",
        "我妈的CT",
        "a stupid question",
        "mass",
        "assessment",
    ] {
        assert_eq!(kinds(&s, text), vec![], "{text}");
    }
}

#[test]
fn kinds_have_wire_names() {
    for kind in FindingKind::ALL {
        let json = serde_json::to_string(&kind).expect("serialises");
        assert_eq!(json, format!("\"{}\"", kind.name()));
        assert_eq!(FindingKind::from_name(kind.name()), Some(kind));
        assert_eq!(kind.is_personal(), kind != BlockedWord);
    }
    let f = Finding {
        kind: IdNumber,
        start: 1,
        end: 19,
    };
    assert_eq!(
        serde_json::to_string(&f).expect("serialises"),
        r#"{"kind":"id_number","start":1,"end":19}"#
    );
}

struct Case {
    line: usize,
    expected: HashSet<FindingKind>,
    text: &'static str,
}

fn corpus() -> Vec<Case> {
    include_str!("corpus.tsv")
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let (kinds, text) = l.split_once('\t').expect("kinds<TAB>text");
            let expected = if kinds == "none" {
                HashSet::new()
            } else {
                kinds
                    .split(',')
                    .map(|k| FindingKind::from_name(k).unwrap_or_else(|| panic!("kind {k}")))
                    .collect()
            };
            Case {
                line: i + 1,
                expected,
                text,
            }
        })
        .collect()
}

/// Case level: a positive is right when exactly its kinds are found, a negative when nothing
/// is (a blocked word on an honest question is a false hold too).
#[test]
fn corpus_precision_and_recall() {
    let s = Screen::default();
    let cases = corpus();
    let positives = cases
        .iter()
        .filter(|c| c.expected.iter().any(|k| k.is_personal()))
        .count();
    let negatives = cases.iter().filter(|c| c.expected.is_empty()).count();
    assert!(positives >= 160, "{positives} positive cases");
    assert!(negatives >= 160, "{negatives} negative cases");

    let (mut flagged, mut right_flagged, mut right_positive) = (0, 0, 0);
    let mut per_kind: Vec<(FindingKind, usize, usize)> =
        FindingKind::ALL.iter().map(|&k| (k, 0, 0)).collect();
    let mut wrong = Vec::new();
    for case in &cases {
        let found: HashSet<FindingKind> = kinds(&s, case.text).into_iter().collect();
        let right = found == case.expected;
        if !found.is_empty() {
            flagged += 1;
            if right {
                right_flagged += 1;
            }
        }
        if !case.expected.is_empty() && right {
            right_positive += 1;
        }
        for (kind, expected, hit) in &mut per_kind {
            if case.expected.contains(kind) {
                *expected += 1;
                if found.contains(kind) {
                    *hit += 1;
                }
            }
        }
        if !right {
            wrong.push(format!(
                "  line {}: expected {}, found {}: {}",
                case.line,
                names(&case.expected),
                names(&found),
                case.text
            ));
        }
    }
    let all_positive = cases.len() - negatives;
    let precision = right_flagged as f64 / flagged as f64;
    let recall = right_positive as f64 / all_positive as f64;
    println!(
        "corpus: {} cases ({positives} with personal details, {} blocked words only, {negatives} negative)",
        cases.len(),
        all_positive - positives
    );
    println!(
        "precision {precision:.3} ({right_flagged}/{flagged} flagged cases right), recall {recall:.3} ({right_positive}/{all_positive})"
    );
    for (kind, expected, hit) in per_kind {
        println!("  {:<13} {hit}/{expected}", kind.name());
    }
    println!("wrong cases: {}\n{}", wrong.len(), wrong.join("\n"));
    assert!(precision >= 0.97, "precision {precision:.3}");
    assert!(recall >= 0.95, "recall {recall:.3}");
}

/// Every prefix and suffix of every corpus line (cut at any code point): no panic, findings
/// inside the text, sorted and disjoint.
#[test]
fn findings_are_sorted_disjoint_and_in_range_on_any_cut() {
    let s = Screen::default();
    let session = vec!["代购".to_owned(), "x".to_owned()];
    for case in corpus() {
        let chars: Vec<char> = case.text.chars().collect();
        for cut in 0..=chars.len() {
            for part in [&chars[..cut], &chars[cut..]] {
                let text: String = part.iter().collect();
                let found = s.findings(&text, &session);
                let mut last_end = 0;
                for f in &found {
                    assert!(f.start < f.end && f.end <= part.len(), "{f:?} in {text}");
                    assert!(f.start >= last_end, "overlap {found:?} in {text}");
                    last_end = f.end;
                }
                let redacted = redact(&text, &found);
                if found.iter().all(|f| !f.kind.is_personal()) {
                    assert_eq!(redacted, text);
                }
            }
        }
    }
}

#[test]
fn defaults_compile() {
    let config = ScreenConfig::default();
    assert!(config.blocked_words.len() > 100);
    assert!(config.record_cues.iter().any(|c| c == "住院号"));
    Screen::new(config).expect("the defaults compile");
}

fn names(set: &HashSet<FindingKind>) -> String {
    let mut names: Vec<&str> = set.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

/// Codes, lists and app names next to cue words: found by probing, kept so they stay clean.
#[test]
fn tricky_non_details_are_not_flagged() {
    let s = Screen::default();
    for t in [
        "rs1234567 SNP",
        "NM_000546.6 突变",
        "时间 13:45:00",
        "2023-2024 年",
        "PMID: 12345678",
        "DOI 10.1056/NEJMoa2034577",
        "身份证 已带",
        "电话 打了 3 次",
        "QQ 空间 12 条",
        "V 期",
        "Stage IV, PS 1",
        "医生@张主任 你好",
        "@all 大家好",
        "1,234,567 元",
        "手机 1 部",
        "tel 12",
        "卡号 1234",
        "ID 12345678",
        "wechat pay 100 元",
        "微信 100 元红包",
        "英文名 Vivian",
        "微信 version 8.0 看不了",
        "微信里 someone 说",
        "微信公众号 OncoLive",
        "电话 2024 年 3 月",
        "用 iPhone 13 Pro 看",
        "Python 3.11",
        "2000-01-01 出生",
        "1949年10月1日",
        "13:00-14:00 直播",
        "门诊时间 8:00-12:00",
        "CEA 5.0-10.0",
        "肿瘤 3*4*5 cm",
        "11 12 13 14 15 16 17 18 19 20 21",
        "血压 120 80 心率 90",
        "第 18 天",
        "kg 60 65 70 68",
        "微信读书 app",
        "QQ浏览器",
        "扣扣子",
        "vx 版本",
        "Wechat Moments",
        "5201314",
        "参考值 0-5",
        "HER2 (3+)",
        "(2019) 12 号文件",
        "010 号房间",
        "病理号 见报告",
        "住院号码还没给我",
        "MRN unknown",
        "patient id card",
        "加一下 维生素",
        "微 创手术",
        "+微创",
        "+ v",
        "我的id是 123",
        "ID: ab12",
        "qq 0123456",
    ] {
        assert_eq!(spans(&s, t), vec![], "{t}");
    }
}

/// A wall of spaced digits or cue words is read in one pass, not tried in every combination
/// (a `screen` request may carry any text); the count is checked, not the time.
#[test]
fn adversarial_texts_still_work() {
    let s = Screen::default();
    // 200 mobile numbers spelled digit by digit, and a group of 2,000 one-digit parts.
    let digits = "1 3 8 0 0 1 3 8 0 0 0，".repeat(200);
    assert_eq!(s.findings(&"7 ".repeat(2000), &[]), vec![]);
    let found = s.findings(&digits, &[]);
    assert_eq!(found.len(), 200);
    assert!(
        found
            .iter()
            .all(|f| f.kind == Phone && f.end - f.start == 21)
    );
    let cues = "微信：".repeat(1000);
    assert_eq!(s.findings(&cues, &[]), vec![]);
    let adds = "加我微信".repeat(500);
    assert_eq!(s.findings(&adds, &[]).len(), 500);
    let ats = "a@".repeat(2000);
    assert_eq!(s.findings(&ats, &[]), vec![]);
}

/// A measurement, not a check: `cargo test --release -p oncolive-server --lib
/// screen::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run with --release"]
fn speed() {
    let s = Screen::default();
    let cases = corpus();
    let long: String = cases.iter().map(|c| c.text).collect::<Vec<_>>().join("。");
    let long: String = long.chars().take(1000).collect();
    let rounds = 200;
    let started = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        for case in &cases {
            n += s.findings(case.text, &[]).len();
        }
    }
    let per_line = started.elapsed() / (rounds * cases.len() as u32);
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        n += s.findings(&long, &[]).len();
    }
    let per_long = started.elapsed() / rounds;
    println!("{per_line:?} per corpus line, {per_long:?} per 1000-character text ({n} findings)");
}
