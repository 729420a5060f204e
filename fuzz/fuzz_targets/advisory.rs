//! Advisory drafts from hostile report text: every format either refuses
//! with a message or writes JSON that parses and Markdown whose every
//! punctuation character from the report is escaped; never a panic.
#![no_main]

use embargo::advisory::{Facts, Format, draft, inert};
use embargo::config::AdvisoryTarget;
use embargo::report::Severity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let shown = inert(&text);
    assert!(all_escaped(&shown), "markup survived");
    let parts: Vec<&str> = text.splitn(4, '\u{1}').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("").to_string();
    let facts = Facts {
        id: "K7Q3M-2XDA9-TF4BC-1ZP0R".into(),
        title: part(0),
        description: part(1),
        impact: part(2),
        steps: Some(part(3)),
        mitigations: part(1),
        severity: Severity::High,
        cvss: None,
        cwe: vec!["CWE-78".into()],
        introduced: Some(part(2)).filter(|s| !s.is_empty()),
        fixed: Some(part(3)).filter(|s| !s.is_empty()),
        commit: None,
        ghsa: None,
        cve: None,
        advisory_url: None,
        credit: Some(part(0)).filter(|s| !s.is_empty()),
        now: "2026-12-01T00:00:00Z".into(),
        target: AdvisoryTarget {
            ecosystem: Some("crates.io".into()),
            package: Some(part(2)).filter(|s| !s.is_empty()),
            cna_org_id: Some("8254265b-2729-46b6-b9e3-3dfca2d5bfca".into()),
            ..AdvisoryTarget::default()
        },
        policy_url: None,
    };
    for format in [Format::Osv, Format::Cve, Format::Ghsa, Format::Markdown] {
        if let Ok(d) = draft(&facts, format) {
            if format != Format::Markdown {
                let v: serde_json::Value = serde_json::from_str(&d.text).expect("a draft parses");
                let again: serde_json::Value =
                    serde_json::from_str(&v.to_string()).expect("a draft round-trips");
                assert!(again == v);
            }
        }
    }
});

/// Every ASCII punctuation character in `shown` is backslash-escaped (the
/// `+` of a `U+XXXX` shown for a control character, and `@`, aside).
fn all_escaped(shown: &str) -> bool {
    // `@` is followed by a word joiner instead (GitHub links escaped ones).
    let shown = shown.replace("@\u{2060}", "");
    let mut chars = shown.chars();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
            prev = ' ';
            continue;
        }
        if c.is_ascii_punctuation() && !(c == '+' && prev == 'U') {
            return false;
        }
        prev = c;
    }
    true
}
