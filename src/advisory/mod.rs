//! Advisory drafts from a case (`embargo advisory`): the facts of a
//! decrypted report and its verified events, written as an OSV record, a
//! CVE JSON 5.1 CNA container, the body of GitHub's "create a repository
//! security advisory" call, or Markdown for release notes.
//!
//! What the case does not say is named, never invented: the machine formats
//! refuse with what to record (a fixed version, the package), Markdown gets
//! a TODO line. Reporter text is data: JSON carries it as strings, and
//! wherever it lands in Markdown ([`inert`]) it is escaped so that it cannot
//! add a link, an image, HTML or structure.

mod cve;
mod ghsa;
mod markdown;
mod osv;

use std::time::SystemTime;

use crate::case::event::{Event, Kind};
use crate::clock::rfc3339;
use crate::config::AdvisoryTarget;
use crate::report::{CvssScore, Severity};
use crate::seal::Manifest;

/// The formats `embargo advisory --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Osv,
    Cve,
    Ghsa,
    Markdown,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "osv" => Ok(Format::Osv),
            "cve" => Ok(Format::Cve),
            "ghsa" => Ok(Format::Ghsa),
            "markdown" | "md" => Ok(Format::Markdown),
            _ => Err(format!(
                "{s:?} is not a format: use osv, cve, ghsa or markdown"
            )),
        }
    }
}

/// What the draft cannot be made without, and how to supply it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Missing(pub String);

/// What `embargo advisory` was asked for beyond the case.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Put the steps to reproduce (and so the PoC) into the draft.
    pub include_steps: bool,
    /// `--introduced`: the first affected version.
    pub introduced: Option<String>,
    /// `--fixed`: the first fixed version (else the released fix event's).
    pub fixed: Option<String>,
    /// The package (`[advisory]`).
    pub target: AdvisoryTarget,
    /// The disclosure policy's URL, as a reference.
    pub policy_url: Option<String>,
}

/// A draft, and what the maintainer should know about it.
#[derive(Debug)]
pub struct Draft {
    pub text: String,
    /// Lines for stderr: what was assumed, what is left to do.
    pub notes: Vec<String>,
    /// For `ghsa`: the `gh api` call that would send it (with `FILE`
    /// standing for the draft's path).
    pub command: Option<String>,
}

/// Everything a draft says, gathered once from the case.
#[derive(Debug)]
pub struct Facts {
    pub id: String,
    pub title: String,
    pub description: String,
    pub impact: String,
    pub steps: Option<String>,
    pub mitigations: String,
    pub severity: Severity,
    pub cvss: Option<CvssScore>,
    pub cwe: Vec<String>,
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub commit: Option<String>,
    pub ghsa: Option<String>,
    pub cve: Option<String>,
    pub advisory_url: Option<String>,
    /// The reporter's name, only when they chose to be credited by name.
    pub credit: Option<String>,
    /// When the draft was made (RFC 3339).
    pub now: String,
    pub target: AdvisoryTarget,
    pub policy_url: Option<String>,
}

impl Facts {
    /// The facts of report `manifest` and its verified `events` (any order).
    pub fn gather(
        manifest: &Manifest,
        events: &[&Event],
        opts: &Options,
        now: SystemTime,
    ) -> Facts {
        let mut events: Vec<&Event> = events.to_vec();
        events.sort_by(|a, b| (a.time(), &a.event).cmp(&(b.time(), &b.event)));
        let report = &manifest.report;
        let assessed = events
            .iter()
            .rev()
            .find(|e| e.kind == Kind::Assessed)
            .and_then(|e| e.assessment.as_ref());
        let cvss = assessed
            .and_then(|a| a.cvss.as_ref())
            .and_then(|c| CvssScore::parse(&c.vector).ok())
            .or_else(|| report.cvss.clone());
        let cwe = match assessed {
            Some(a) if !a.cwe.is_empty() => a.cwe.clone(),
            _ => report.cwe.clone(),
        };
        let fix = events
            .iter()
            .rev()
            .filter_map(|e| e.fix.as_ref())
            .find(|f| f.released);
        let last = |pick: &dyn Fn(&Event) -> Option<String>| {
            events
                .iter()
                .rev()
                .find_map(|e| pick(e).filter(|s| !s.trim().is_empty()))
        };
        let advisory = |e: &Event| e.advisory.clone();
        let reporter = &manifest.reporter;
        let credit = (reporter.credit == crate::report::Credit::Name
            && !reporter.name.trim().is_empty())
        .then(|| one_line(&reporter.name));
        Facts {
            id: manifest.id.to_string(),
            title: one_line(&report.title),
            description: report.description.clone(),
            impact: report.impact.clone(),
            steps: opts
                .include_steps
                .then(|| report.steps_to_reproduce.clone())
                .filter(|s| !s.trim().is_empty()),
            mitigations: report.mitigations.clone(),
            severity: assessed.map_or(report.severity, |a| a.severity),
            cvss,
            cwe: cwe.into_iter().filter(|c| is_cwe(c)).collect(),
            introduced: opts.introduced.clone(),
            fixed: opts
                .fixed
                .clone()
                .or_else(|| fix.map(|f| f.version.clone())),
            commit: fix
                .and_then(|f| f.commit.clone())
                .or_else(|| last(&|e| e.fix.as_ref().and_then(|f| f.commit.clone())))
                .filter(|c| is_commit(c)),
            ghsa: last(&|e| advisory(e).and_then(|a| a.ghsa)).filter(|g| is_ghsa(g)),
            cve: last(&|e| advisory(e).and_then(|a| a.cve)).filter(|c| is_cve(c)),
            advisory_url: last(&|e| advisory(e).and_then(|a| a.url)).filter(|u| is_web_url(u)),
            credit,
            now: rfc3339(now),
            target: opts.target.clone(),
            policy_url: opts.policy_url.clone().filter(|u| is_web_url(u)),
        }
    }

    /// The fixed version, or what to do about it.
    fn need_fixed(&self) -> Result<&str, Missing> {
        self.fixed.as_deref().ok_or_else(|| {
            Missing(format!(
                "no fixed version: record one with `embargo case fix {} --version VERSION --released` or pass --fixed VERSION",
                self.id
            ))
        })
    }

    /// The affected package's ecosystem and name, or what to set.
    fn need_package(&self) -> Result<(&str, &str), Missing> {
        match (&self.target.ecosystem, &self.target.package) {
            (Some(e), Some(p)) if !e.is_empty() && !p.is_empty() => Ok((e, p)),
            _ => Err(Missing(
                "no affected package: set `ecosystem` and `package` under [advisory] in maintainer.toml (or the intake's configuration)".into(),
            )),
        }
    }

    /// The fix commit's URL, when the repository and the commit are known.
    fn commit_url(&self) -> Option<String> {
        let repo = self
            .target
            .repository
            .as_deref()
            .filter(|r| is_web_url(r))?;
        Some(format!(
            "{}/commit/{}",
            repo.trim_end_matches('/'),
            self.commit.as_ref()?
        ))
    }

    /// The severity deadlines and drafts use, when known.
    fn known_severity(&self) -> Option<Severity> {
        (self.severity != Severity::Unknown).then_some(self.severity)
    }

    /// The report text a draft's details hold, each part under a heading,
    /// escaped for Markdown.
    fn details_markdown(&self) -> String {
        let mut out = String::new();
        let mut part = |heading: &str, text: &str| {
            if !text.trim().is_empty() {
                out.push_str(&format!("## {heading}\n\n{}\n\n", inert(text.trim())));
            }
        };
        part("Description", &self.description);
        part("Impact", &self.impact);
        if let Some(steps) = &self.steps {
            part("Steps to reproduce", steps);
        }
        part("Mitigations", &self.mitigations);
        out.trim_end().to_string()
    }

    /// The same as plain text (for CVE descriptions).
    fn details_plain(&self) -> String {
        let mut out = Vec::new();
        for (heading, text) in [
            ("", self.description.as_str()),
            ("Impact: ", self.impact.as_str()),
            ("Steps to reproduce: ", self.steps.as_deref().unwrap_or("")),
            ("Mitigations: ", self.mitigations.as_str()),
        ] {
            if !text.trim().is_empty() {
                out.push(format!("{heading}{}", text.trim()));
            }
        }
        if out.is_empty() {
            out.push(self.title.clone());
        }
        out.join("\n\n")
    }
}

/// Writes the draft of `facts` in `format`.
pub fn draft(facts: &Facts, format: Format) -> Result<Draft, Missing> {
    match format {
        Format::Osv => osv::draft(facts),
        Format::Cve => cve::draft(facts),
        Format::Ghsa => ghsa::draft(facts),
        Format::Markdown => Ok(markdown::draft(facts)),
    }
}

/// `text` as Markdown that shows exactly that text and does nothing else:
/// every ASCII punctuation character is backslash-escaped (no emphasis,
/// link, image, heading, list, table or HTML can start), `@` is followed
/// by an invisible word joiner (GitHub turns `a@b.example` into a mail
/// link even when escaped), and control and bidirectional formatting
/// characters are shown as `U+XXXX` instead of acting.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '@' => out.push_str("@\u{2060}"),
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&format!("U+{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// One line, without control characters, for titles and names.
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

fn is_cwe(s: &str) -> bool {
    s.strip_prefix("CWE-").is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 5
            && n.bytes().all(|b| b.is_ascii_digit())
            && !n.starts_with('0')
    })
}

fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GHSA-xxxx-xxxx-xxxx` in GitHub's alphabet.
pub fn is_ghsa(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("GHSA-") else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.len() == 3
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b"23456789cfghjmpqrvwx".contains(&b)))
}

/// `CVE-YYYY-NNNN…`.
pub fn is_cve(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts[0] == "CVE"
        && parts[1].len() == 4
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && (4..=19).contains(&parts[2].len())
        && parts[2].bytes().all(|b| b.is_ascii_digit())
}

/// An `https://` or `http://` URL with a host and nothing a JSON or
/// Markdown reader could take for more than a URL.
fn is_web_url(s: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(s) else {
        return false;
    };
    matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && s.len() <= 2048
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_before_a_draft_names_them() {
        assert!(is_ghsa("GHSA-4x5q-2h3v-8m9p"));
        assert!(!is_ghsa("GHSA-4x5q-2h3v-8m9"));
        assert!(!is_ghsa("GHSA-aaaa-bbbb-cccc"));
        assert!(is_cve("CVE-2026-12345"));
        assert!(!is_cve("CVE-26-1"));
        assert!(is_cwe("CWE-78") && !is_cwe("CWE-078") && !is_cwe("CWE-"));
        assert!(is_web_url("https://example.org/a"));
        assert!(!is_web_url("javascript:alert(1)"));
        assert!(!is_web_url("https://example.org/a b"));
    }

    #[test]
    fn inert_text_escapes_every_markdown_trigger() {
        let shown = inert("[x](y) ![i](j) <b> *e* # h\n`c` a@b.example \u{202E}");
        assert!(!shown.contains("[x]"));
        assert!(!shown.contains("<b>"));
        assert!(shown.contains("\\[x\\]\\(y\\)"));
        assert!(shown.contains("U+202E"));
        assert!(!shown.contains('\u{202E}'));
    }
}
