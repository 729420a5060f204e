//! Safe file names for the untrusted names reporters give their files.
//!
//! A name is cleaned of everything that hides, reorders or breaks text
//! (controls, Unicode format characters, line and paragraph separators,
//! bidi controls, tag characters, variation selectors and other default
//! ignorable code points), normalized to NFC, and made unique by its
//! compatibility-folded, case-folded form, so `café` (NFC), `café` (NFD)
//! and `CAFÉ` never become three files that look the same.

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;

/// Longest sanitized name, in bytes: well under `NAME_MAX` (255) so that a
/// uniqueness suffix always fits.
pub const MAX_NAME_BYTES: usize = 120;
/// Longest extension kept when a name is shortened.
const MAX_EXTENSION_BYTES: usize = 16;

/// Names the decrypted directory uses itself.
pub const RESERVED: &[&str] = &["report.md", "manifest.json"];

/// Whether `c` reorders, hides or breaks text: bidirectional controls,
/// zero-width and other Unicode format (Cf) characters, line and paragraph
/// separators, tag characters, variation selectors and the other default
/// ignorable code points. Any of them could make `evil.exe` look like
/// `exe.live`, or two different names look the same.
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        // Format characters (general category Cf), Unicode 16.
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{0890}'..='\u{0891}' | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1345F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        // Tag characters and the rest of their block (E0000–E0FFF is default ignorable).
        | '\u{E0000}'..='\u{E0FFF}'
        // Line and paragraph separators (Zl, Zp).
        | '\u{2028}' | '\u{2029}'
        // Variation selectors, Mongolian free variation selectors.
        | '\u{FE00}'..='\u{FE0F}' | '\u{180B}'..='\u{180F}'
        // Other default ignorable code points: combining grapheme joiner,
        // Hangul fillers, Khmer inherent vowels, reserved noncharacters.
        | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{3164}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        // Private use code points render as anything (or nothing).
        | '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{10FFFF}')
}

/// Whether `c` is white space other than a plain space (no-break, ideographic,
/// em spaces…), which a name shows as a space.
fn is_other_space(c: char) -> bool {
    c != ' ' && c.is_whitespace()
}

/// Turns one untrusted name into a single harmless path component, in
/// NFC: no separators, no `..`, no leading dot or dash, no control, format,
/// bidi, separator, tag or variation characters, at most
/// [`MAX_NAME_BYTES`], never empty.
pub fn sanitize(name: &str, fallback: &str) -> String {
    let mut s = String::with_capacity(name.len().min(MAX_NAME_BYTES * 4));
    // Cleaned before normalizing (an ignorable between a letter and its
    // accent would keep them apart), normalized before the checks below
    // (NFC never brings back what was removed).
    let cleaned: String = name
        .chars()
        .take(MAX_NAME_BYTES * 8)
        .filter(|&c| !c.is_control() && !is_deceptive(c))
        .map(|c| if is_other_space(c) { ' ' } else { c })
        .collect();
    for c in cleaned.nfc() {
        if c.is_control() || is_deceptive(c) {
            continue;
        }
        let c = if c == '/' || c == '\\' { '_' } else { c };
        // ".." means nothing without separators, but is never kept anyway.
        if c == '.' && s.ends_with('.') {
            continue;
        }
        s.push(c);
        if s.len() > MAX_NAME_BYTES * 8 {
            break;
        }
    }
    let trimmed = s
        .trim()
        .trim_start_matches(['.', '-', '_', ' '])
        .trim_end_matches(['.', ' ']);
    let shortened = shorten(trimmed, MAX_NAME_BYTES);
    if shortened.is_empty() {
        fallback.to_string()
    } else {
        shortened
    }
}

/// Cuts `name` to `max` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXTENSION_BYTES + 1 => name.split_at(i),
        _ => (name, ""),
    };
    let mut cut = max.saturating_sub(ext.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", stem[..cut].trim_end_matches(['.', ' ']))
}

/// The form two names are compared in: compatibility-normalized and case
/// folded, so names that only differ by composition, width or case (and
/// would look alike, or be one file on a folding filesystem) collide.
fn fold(name: &str) -> String {
    name.nfkd()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect()
}

/// Hands out unique names (compared normalized and case-folded, for
/// filesystems that fold case or normalization) by adding `-2`, `-3`…
/// before the extension.
#[derive(Debug)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl Default for UniqueNames {
    fn default() -> Self {
        UniqueNames {
            taken: RESERVED.iter().map(|n| fold(n)).collect(),
        }
    }
}

impl UniqueNames {
    /// A sanitized name for `raw` not given out before.
    pub fn name_for(&mut self, raw: &str, fallback: &str) -> String {
        let base = sanitize(raw, fallback);
        if self.taken.insert(fold(&base)) {
            return base;
        }
        let (stem, ext) = match base.rfind('.') {
            Some(i) if i > 0 => base.split_at(i),
            _ => (base.as_str(), ""),
        };
        for n in 2.. {
            let suffix = format!("-{n}{ext}");
            let candidate = format!(
                "{}{suffix}",
                shorten(stem, MAX_NAME_BYTES.saturating_sub(suffix.len()))
            );
            if self.taken.insert(fold(&candidate)) {
                return candidate;
            }
        }
        unreachable!("an unbounded counter always finds a free name")
    }
}

/// One line of untrusted text for a terminal: no control or bidi characters, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\t' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .filter(|c| !c.is_control() && !is_deceptive(*c))
        .collect();
    if clean.chars().count() > max {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_lines_are_plain_and_short() {
        assert_eq!(super::one_line("a\u{202E}b\x1b[31mc\nd", 50), "ab[31mc d");
        assert_eq!(super::one_line("abcdef", 4), "abc…");
    }

    use super::*;

    #[test]
    fn hostile_names_become_one_plain_component() {
        for (raw, want) in [
            ("../../etc/passwd", "etc_passwd"),
            ("/etc/shadow", "etc_shadow"),
            ("..", "f"),
            (".bashrc", "bashrc"),
            ("a\0b", "ab"),
            ("evil\u{202E}gpj.exe", "evilgpj.exe"),
            ("-rf", "rf"),
            ("C:\\x\\y.txt", "C:_x_y.txt"),
            ("", "f"),
            ("\u{2066}\u{200F}", "f"),
            ("poc.py", "poc.py"),
        ] {
            assert_eq!(sanitize(raw, "f"), want, "{raw:?}");
        }
        let long = format!("{}.tar.gz", "é".repeat(300));
        let s = sanitize(&long, "f");
        assert!(s.len() <= MAX_NAME_BYTES && s.ends_with(".gz"), "{s}");
    }

    #[test]
    fn invisible_separating_and_look_alike_characters_are_removed_or_normalized() {
        for (raw, want) in [
            ("a\u{2028}b.txt", "ab.txt"),
            ("a\u{2029}b.txt", "ab.txt"),
            ("poc\u{E0041}\u{E0042}\u{E007F}.py", "poc.py"),
            ("evil\u{FE0F}.exe", "evil.exe"),
            ("x\u{E0100}y", "xy"),
            ("a\u{180E}b\u{061C}c\u{2061}d\u{FFF9}e", "abcde"),
            ("a\u{034F}b\u{3164}c\u{115F}d", "abcd"),
            ("a\u{F8FF}b\u{10FFFD}c", "abc"),
            ("no\u{00A0}break\u{3000}space", "no break space"),
            // NFD input comes out NFC.
            ("cafe\u{0301}.txt", "caf\u{00E9}.txt"),
            // An ignorable between a letter and its accent does not keep them apart.
            ("cafe\u{200B}\u{0301}", "caf\u{00E9}"),
            ("\u{E0001}\u{2028}", "f"),
        ] {
            assert_eq!(sanitize(raw, "f"), want, "{raw:?}");
        }
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let out = sanitize(&format!("a{c}b"), "f");
            assert!(
                !out.chars().any(|o| o.is_control() || is_deceptive(o)),
                "U+{:04X} left {out:?}",
                c as u32
            );
        }
    }

    #[test]
    fn look_alike_names_are_made_unique() {
        let mut names = UniqueNames::default();
        assert_eq!(names.name_for("caf\u{00E9}.txt", "f"), "caf\u{00E9}.txt");
        assert_eq!(names.name_for("cafe\u{0301}.txt", "f"), "caf\u{00E9}-2.txt");
        assert_eq!(names.name_for("CAF\u{00C9}.TXT", "f"), "CAF\u{00C9}-3.TXT");
        assert_eq!(
            names.name_for("caf\u{00E9}\u{2028}.txt", "f"),
            "caf\u{00E9}-4.txt"
        );
        // Full-width letters fold to the same name.
        assert_eq!(names.name_for("\u{FF41}.txt", "f"), "\u{FF41}.txt");
        assert_eq!(names.name_for("a.txt", "f"), "a-2.txt");
        assert_eq!(names.name_for("REPORT.MD", "f"), "REPORT-2.MD");
    }

    #[test]
    fn names_are_unique_and_reserved_names_are_kept_free() {
        let mut names = UniqueNames::default();
        assert_eq!(names.name_for("report.md", "f"), "report-2.md");
        assert_eq!(names.name_for("a.txt", "f"), "a.txt");
        assert_eq!(names.name_for("A.txt", "f"), "A-2.txt");
        assert_eq!(names.name_for("a.txt", "f"), "a-3.txt");
        let long = "x".repeat(500);
        let first = names.name_for(&long, "f");
        let second = names.name_for(&long, "f");
        assert_ne!(first, second);
        assert!(second.len() <= MAX_NAME_BYTES);
    }
}
