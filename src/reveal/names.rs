//! Safe file names for the untrusted names reporters give their files.

use std::collections::HashSet;

/// Longest sanitized name, in bytes: well under `NAME_MAX` (255) so that a
/// uniqueness suffix always fits.
pub const MAX_NAME_BYTES: usize = 120;
/// Longest extension kept when a name is shortened.
const MAX_EXTENSION_BYTES: usize = 16;

/// Names the decrypted directory uses itself.
pub const RESERVED: &[&str] = &["report.md", "manifest.json"];

/// Whether `c` reorders or hides text (bidirectional controls, zero-width
/// characters), which could make `evil.exe` look like `exe.live`.
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// Turns one untrusted name into a single harmless path component: no
/// separators, no `..`, no leading dot or dash, no control, bidi or
/// zero-width characters, at most [`MAX_NAME_BYTES`], never empty.
pub fn sanitize(name: &str, fallback: &str) -> String {
    let mut s = String::with_capacity(name.len().min(MAX_NAME_BYTES * 4));
    for c in name.chars() {
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

/// Hands out unique names (compared case-insensitively, for filesystems
/// that fold case) by adding `-2`, `-3`… before the extension.
#[derive(Debug)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl Default for UniqueNames {
    fn default() -> Self {
        UniqueNames {
            taken: RESERVED.iter().map(|n| n.to_string()).collect(),
        }
    }
}

impl UniqueNames {
    /// A sanitized name for `raw` not given out before.
    pub fn name_for(&mut self, raw: &str, fallback: &str) -> String {
        let base = sanitize(raw, fallback);
        if self.taken.insert(base.to_lowercase()) {
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
            if self.taken.insert(candidate.to_lowercase()) {
                return candidate;
            }
        }
        unreachable!("an unbounded counter always finds a free name")
    }
}

#[cfg(test)]
mod tests {
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
