//! What people type, checked so that it is what it looks like: no invisible or
//! direction-changing characters, line breaks only where the pages show them, and no patient
//! name that reads as a staff label. Pure functions; `model::checked_*` apply them per field.
//!
//! The rules, per field (docs/protocol.md, "Text"):
//! - Every field refuses control characters (Unicode `Cc`) and format characters (`Cf`: bidi
//!   embeddings, overrides and isolates, zero-width space/joiners, the BOM, soft hyphen...),
//!   with the character's code point, class and position, instead of stripping them: a
//!   question whose meaning changed silently would be worse than an error the client shows.
//! - A tab is a space everywhere (pasted text carries them; they mean nothing on a card).
//! - Multi-line fields (a question, an answer, a topic: the pages show them with
//!   `white-space: pre-wrap`) keep line breaks; `\r\n`, `\r`, U+2028 and U+2029 become `\n`.
//!   Single-line fields (names, titles, reasons) refuse them.
//! - A name also has every run of whitespace made one space, and may not contain a role label.

use std::fmt;

use unicode_general_category::{GeneralCategory, get_general_category};

/// Whether a field may span several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    Single,
    Multi,
}

/// Why a text was refused. The messages are for people and name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} must be {min} to {max} characters, got {got}")]
    Length {
        field: String,
        min: usize,
        max: usize,
        got: usize,
    },
    #[error(
        "{field} contains {class} U+{code:04X} at character {position}; remove it and send again"
    )]
    Forbidden {
        field: String,
        class: CharClass,
        code: u32,
        /// 1-based, in Unicode code points of the text as sent.
        position: usize,
    },
    #[error("{field} may not contain \"{word}\": role labels are reserved for the session's staff")]
    RoleLabel { field: String, word: String },
}

/// The class of a refused character, as the error message names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// A line break in a single-line field.
    LineBreak,
    /// `Cc`, other than tab and the line breaks a field allows.
    Control,
    /// `Cf` characters that reorder text: U+061C, U+200E/F, U+202A–202E, U+2066–2069.
    Bidi,
    /// `Cf` characters with no width: U+200B–200D, U+2060, U+FEFF.
    ZeroWidth,
    /// Any other `Cf` (soft hyphen, interlinear annotations, tags...).
    Format,
}

impl fmt::Display for CharClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CharClass::LineBreak => "a line break (not allowed in this field)",
            CharClass::Control => "a control character (Unicode Cc)",
            CharClass::Bidi => "a bidirectional control character (Unicode Cf)",
            CharClass::ZeroWidth => "a zero-width character (Unicode Cf)",
            CharClass::Format => "an invisible format character (Unicode Cf)",
        })
    }
}

/// Words that label a role in English (as whole words, any case, after folding full-width
/// letters): what the pages call staff, and the titles a patient could use to pass as one.
/// "Dr" is a word here, so "Dr. Wang" and "Dr Wang" are refused while "Drew" is not.
const ROLE_WORDS: [&str; 11] = [
    "admin",
    "administrator",
    "doctor",
    "dr",
    "expert",
    "host",
    "moderator",
    "oncolive",
    "official",
    "physician",
    "staff",
];

/// Role labels in Chinese (simplified and traditional). Chinese has no spaces between words, so
/// these are refused anywhere in a name; none of them is a plausible part of a real name.
const ROLE_LABELS_ZH: [&str; 12] = [
    "专家",
    "專家",
    "主持人",
    "管理员",
    "管理員",
    "医生",
    "醫生",
    "医师",
    "醫師",
    "大夫",
    "官方",
    "客服",
];

/// Trims `raw`, checks its characters for a field of kind `lines`, and checks it has between
/// `min` and `max` characters (Unicode code points, after trimming and the replacements above).
pub fn clean(
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
    lines: Lines,
) -> Result<String, TextError> {
    let text = raw.trim();
    // Positions are reported in the text as sent, so skip what trimming removed.
    let lead = raw.chars().count() - raw.trim_start().chars().count();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        let refuse = |class| TextError::Forbidden {
            field: field.to_owned(),
            class,
            code: u32::from(c),
            position: lead + i + 1,
        };
        match c {
            '\t' => out.push(' '),
            '\r' | '\n' | '\u{2028}' | '\u{2029}' => match lines {
                Lines::Single => return Err(refuse(CharClass::LineBreak)),
                Lines::Multi => {
                    if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                        chars.next();
                    }
                    out.push('\n');
                }
            },
            _ => match class_of(c) {
                Some(class) => return Err(refuse(class)),
                None => out.push(c),
            },
        }
    }
    let got = out.chars().count();
    if got < min || got > max {
        return Err(TextError::Length {
            field: field.to_owned(),
            min,
            max,
            got,
        });
    }
    Ok(out)
}

/// A patient's display name: [`clean`] as a single line, whitespace runs made one space, and
/// no role label (see [`ROLE_WORDS`], [`ROLE_LABELS_ZH`]).
pub fn clean_name(field: &str, raw: &str, max: usize) -> Result<String, TextError> {
    let name = clean(field, raw, 0, max, Lines::Single)?;
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(word) = role_label(&name) {
        return Err(TextError::RoleLabel {
            field: field.to_owned(),
            word,
        });
    }
    Ok(name)
}

/// The role label `name` contains, if any, as it was matched.
fn role_label(name: &str) -> Option<String> {
    let folded: String = name
        .chars()
        .map(fold_width)
        .collect::<String>()
        .to_lowercase();
    if let Some(label) = ROLE_LABELS_ZH.iter().find(|l| folded.contains(*l)) {
        return Some((*label).to_owned());
    }
    folded
        .split(|c: char| !c.is_alphanumeric())
        .find(|word| ROLE_WORDS.contains(word))
        .map(str::to_owned)
}

/// Full-width ASCII (U+FF01–FF5E) as the ASCII it imitates: "ｅｘｐｅｒｔ" is "expert".
fn fold_width(c: char) -> char {
    match u32::from(c) {
        code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// The class of a character no field accepts, or `None` when it is fine.
fn class_of(c: char) -> Option<CharClass> {
    match get_general_category(c) {
        GeneralCategory::Control => Some(CharClass::Control),
        GeneralCategory::Format => Some(match c {
            '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}' => CharClass::Bidi,
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => CharClass::ZeroWidth,
            _ => CharClass::Format,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(r: Result<String, TextError>) -> (CharClass, u32, usize) {
        match r {
            Err(TextError::Forbidden {
                class,
                code,
                position,
                ..
            }) => (class, code, position),
            other => panic!("expected a refused character, got {other:?}"),
        }
    }

    #[test]
    fn invisible_and_reordering_characters_are_refused_with_class_and_position() {
        let single = |s: &str| clean("name", s, 0, 40, Lines::Single);
        assert_eq!(
            forbidden(single("ab\u{202E}cd")),
            (CharClass::Bidi, 0x202E, 3)
        );
        assert_eq!(
            forbidden(single("  a\u{2066}b")),
            (CharClass::Bidi, 0x2066, 4)
        );
        assert_eq!(
            forbidden(single("a\u{200B}b")),
            (CharClass::ZeroWidth, 0x200B, 2)
        );
        assert_eq!(
            forbidden(single("a\u{200D}b")),
            (CharClass::ZeroWidth, 0x200D, 2)
        );
        assert_eq!(
            forbidden(single("\u{FEFF}x")),
            (CharClass::ZeroWidth, 0xFEFF, 1)
        );
        assert_eq!(forbidden(single("a\u{AD}b")), (CharClass::Format, 0xAD, 2));
        assert_eq!(
            forbidden(single("tag\u{E0041}")),
            (CharClass::Format, 0xE0041, 4)
        );
        assert_eq!(forbidden(single("a\u{7}b")), (CharClass::Control, 7, 2));
        assert_eq!(forbidden(single("a\u{85}b")), (CharClass::Control, 0x85, 2));
        assert_eq!(forbidden(single("a\0")), (CharClass::Control, 0, 2));
        let message = single("ab\u{202E}cd").unwrap_err().to_string();
        assert!(
            message.contains("U+202E") && message.contains("character 3"),
            "{message}"
        );
    }

    #[test]
    fn line_breaks_are_kept_only_where_the_pages_show_them() {
        let multi = |s: &str| clean("text", s, 1, 500, Lines::Multi);
        assert_eq!(
            multi("one\r\ntwo\rthree\u{2028}four").as_deref(),
            Ok("one\ntwo\nthree\nfour")
        );
        assert_eq!(multi("a\tb").as_deref(), Ok("a b"));
        assert_eq!(multi("\n  question \n\n").as_deref(), Ok("question"));
        let single = |s: &str| clean("title", s, 1, 200, Lines::Single);
        assert_eq!(forbidden(single("a\nb")), (CharClass::LineBreak, 10, 2));
        assert_eq!(
            forbidden(single("a\u{2029}b")),
            (CharClass::LineBreak, 0x2029, 2)
        );
        // Surrounding line breaks are trimmed like spaces.
        assert_eq!(single("title\n").as_deref(), Ok("title"));
    }

    #[test]
    fn real_text_passes_unchanged() {
        for s in [
            "王丽",
            "Zoë Müller-Lüdenscheidt",
            "محمد",
            "Nguyễn Thị Minh Khai",
            "José 👩🏽",
            "Ørsted-Hansen",
            "O'Brien",
            "Drew Hostetler",
            "Dragoș",
            "Expertise Li",
        ] {
            assert_eq!(clean_name("name", s, 40).as_deref(), Ok(s), "{s}");
        }
    }

    #[test]
    fn names_cannot_carry_a_role_label() {
        for s in [
            "Dr. Wang",
            "dr wang",
            "Wang (expert)",
            "[Moderator] Li",
            "ADMIN",
            "host",
            "Doctor Chen",
            "Chen, M.D. doctor",
            "ｅｘｐｅｒｔ Wang",
            "王专家",
            "张医生",
            "主持人小李",
            "管理员",
            "李醫師",
            "OncoLive staff",
        ] {
            assert!(
                matches!(clean_name("name", s, 40), Err(TextError::RoleLabel { .. })),
                "{s} should be refused"
            );
        }
        let message = clean_name("name", "Wang (expert)", 40)
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"expert\""), "{message}");
    }

    #[test]
    fn names_have_one_space_between_words() {
        assert_eq!(
            clean_name("name", " Li \u{3000}\u{A0} Na\t ", 40).as_deref(),
            Ok("Li Na")
        );
        assert_eq!(clean_name("name", "   ", 40).as_deref(), Ok(""));
    }

    #[test]
    fn lengths_count_code_points_after_cleaning() {
        assert!(clean("t", &"字".repeat(500), 1, 500, Lines::Multi).is_ok());
        assert!(matches!(
            clean("t", &"字".repeat(501), 1, 500, Lines::Multi),
            Err(TextError::Length { got: 501, .. })
        ));
        // "\r\n" is one character once it is a line break.
        assert!(clean("t", &"a\r\n".repeat(250), 1, 500, Lines::Multi).is_ok());
    }
}
