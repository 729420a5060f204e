//! `report.md`: a Markdown rendering of a manifest that stays inert in any
//! viewer. Every reporter-controlled value is put in a code span or a fenced
//! code block (whose fence is longer than any run inside it), so nothing
//! becomes a link, an image or raw HTML; control, bidi and zero-width
//! characters are shown as `<U+XXXX>`.

use std::fmt::Write as _;

use zeroize::Zeroizing;

use super::names::is_deceptive;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::config::Policy;
use crate::report::{Credit, Deadlines};
use crate::seal::{Channel, Manifest, Role, SignatureCheck};

/// One extracted attachment: the manifest entry's index and where it went.
#[derive(Clone, Debug)]
pub struct Extracted {
    pub index: usize,
    pub saved_as: String,
}

/// Renders `report.md`. The returned buffer holds plaintext and is wiped on drop.
pub fn report_markdown(
    manifest: &Manifest,
    signature: &SignatureCheck,
    policy: &Policy,
    files: &[Extracted],
) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    let o = &mut *out;
    summary(o, manifest);
    reporter(o, manifest);
    deadlines(o, manifest, policy);
    let r = &manifest.report;
    for (heading, text) in [
        ("Description", &r.description),
        ("Impact", &r.impact),
        ("Steps to reproduce", &r.steps_to_reproduce),
        ("Mitigations", &r.mitigations),
    ] {
        let _ = writeln!(o, "\n## {heading}\n\n{}", block(text));
    }
    attachments(o, manifest, files);
    email(o, manifest);
    seal(o, manifest, signature);
    out
}

/// The title block: ID, title, arrival, severity, CVSS, CWE, versions.
fn summary(o: &mut String, manifest: &Manifest) {
    let r = &manifest.report;
    let _ = writeln!(o, "# Vulnerability report {}\n", manifest.id);
    let _ = writeln!(o, "- **Title:** {}", code(&r.title));
    let _ = writeln!(
        o,
        "- **Received:** {} (via {})",
        code(&manifest.received_at),
        channel(manifest.channel)
    );
    let _ = writeln!(o, "- **Severity:** {}", r.severity);
    match &r.cvss {
        Some(c) => {
            let _ = writeln!(
                o,
                "- **CVSS {}:** {:.1} ({}) {}",
                code(&c.version),
                c.score,
                code(&c.rating),
                code(&c.vector)
            );
        }
        None => {
            let _ = writeln!(o, "- **CVSS:** none given");
        }
    }
    let cwe = if r.cwe.is_empty() {
        "none given".to_string()
    } else {
        r.cwe.iter().map(|c| code(c)).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(o, "- **CWE:** {cwe}");
    let _ = writeln!(o, "- **Affected versions:** {}", code(&r.affected_versions));
    let _ = writeln!(o, "- **Environment:** {}", code(&r.environment));
}

fn reporter(o: &mut String, manifest: &Manifest) {
    let _ = writeln!(o, "\n## Reporter\n");
    let _ = writeln!(o, "- **Name:** {}", code(&manifest.reporter.name));
    let _ = writeln!(o, "- **Email:** {}", code(&manifest.reporter.email));
    let credit = match manifest.reporter.credit {
        Credit::Name => "credit by name",
        Credit::Anonymous => "anonymous (do not name the reporter)",
    };
    let _ = writeln!(o, "- **Credit:** {credit}");
}

fn deadlines(o: &mut String, manifest: &Manifest, policy: &Policy) {
    let _ = writeln!(o, "\n## Deadlines (policy)\n");
    let Some(received) = parse_rfc3339(&manifest.received_at) else {
        let _ = writeln!(
            o,
            "- the received time is unreadable, so no deadline can be computed"
        );
        return;
    };
    let severity = manifest.report.severity;
    let d = Deadlines::for_report(policy, received, severity);
    let _ = writeln!(o, "- **Acknowledge by:** {}", rfc3339(d.acknowledge_by));
    let _ = writeln!(
        o,
        "- **Status update every:** {}",
        policy.status_update_within
    );
    let fix = d
        .fix_by
        .map(rfc3339)
        .unwrap_or_else(|| format!("none for severity {severity}"));
    let _ = writeln!(o, "- **Fix by:** {fix}");
}

fn attachments(o: &mut String, manifest: &Manifest, files: &[Extracted]) {
    let _ = writeln!(o, "\n## Attachments\n");
    if manifest.attachments.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for f in files {
        let Some(a) = manifest.attachments.get(f.index) else {
            continue;
        };
        let _ = writeln!(
            o,
            "- {} ({} bytes, {}, {}), saved as {}\n  - SHA-256 {}",
            code(&a.name),
            a.size,
            code(&a.media_type),
            match a.role {
                Role::Poc => "attached file",
                Role::OriginalMessage => "the original mail message",
            },
            code(&f.saved_as),
            code(&a.sha256)
        );
    }
}

fn email(o: &mut String, manifest: &Manifest) {
    let Some(email) = &manifest.email else {
        return;
    };
    let _ = writeln!(o, "\n## Email\n");
    let _ = writeln!(o, "- **From:** {}", code(&email.from));
    let _ = writeln!(o, "- **Subject:** {}", code(&email.subject));
    let _ = writeln!(o, "- **Date:** {}", code(&email.date));
    let _ = writeln!(o, "- **Message-ID:** {}", code(&email.message_id));
    let _ = writeln!(o, "- **Encryption:** {}", code(&email.encryption));
    for name in &email.attachments {
        let _ = writeln!(o, "- **Attachment inside the message:** {}", code(name));
    }
}

fn seal(o: &mut String, manifest: &Manifest, signature: &SignatureCheck) {
    let _ = writeln!(o, "\n## Seal\n");
    let signed = match signature {
        SignatureCheck::Verified(fpr) => {
            format!("verified: signed by the intake key {}", fpr.to_hex())
        }
        SignatureCheck::NotChecked => {
            "NOT CHECKED (no --signer given): do not trust this content blindly".into()
        }
    };
    let _ = writeln!(o, "- **Manifest signature:** {signed}");
    let _ = writeln!(
        o,
        "- **Signing key (claimed):** {}",
        code(&manifest.signing_key)
    );
    for r in &manifest.recipients {
        let _ = writeln!(o, "- **Sealed to:** {}", code(r));
    }
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Web => "the web form",
        Channel::Api => "the API",
        Channel::Email => "email",
    }
}

/// Shows a character that must not reach a viewer as such.
fn visible(c: char, out: &mut String) {
    let _ = write!(out, "<U+{:04X}>", c as u32);
}

/// An inline code span holding `s` on one line, inert in any renderer.
pub fn code(s: &str) -> String {
    let mut clean = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => clean.push(' '),
            c if c.is_control() || is_deceptive(c) => visible(c, &mut clean),
            c => clean.push(c),
        }
    }
    if clean.trim().is_empty() {
        return "*(empty)*".into();
    }
    let ticks = "`".repeat(longest_run(&clean, '`') + 1);
    // CommonMark strips one space on each side, so the padding keeps a
    // value that starts or ends with a backtick intact.
    format!("{ticks} {clean} {ticks}")
}

/// A fenced code block holding the lines of `s`, inert in any renderer.
pub fn block(s: &str) -> String {
    let mut clean = String::with_capacity(s.len());
    for c in s.replace("\r\n", "\n").chars() {
        match c {
            '\n' | '\t' => clean.push(c),
            c if c.is_control() || is_deceptive(c) => visible(c, &mut clean),
            c => clean.push(c),
        }
    }
    if clean.trim().is_empty() {
        return "*(empty)*".into();
    }
    let fence = "~".repeat(longest_run(&clean, '~').max(2) + 1);
    let body = clean.trim_end_matches('\n');
    format!("{fence}text\n{body}\n{fence}")
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_and_blocks_cannot_be_escaped() {
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("x\u{202E}y\0"), "` x<U+202E>y<U+0000> `");
        let b = block("~~~~\n</code><script>");
        assert!(
            b.starts_with("~~~~~text\n") && b.ends_with("\n~~~~~"),
            "{b}"
        );
        assert_eq!(block(""), "*(empty)*");
    }
}
