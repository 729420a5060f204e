//! The JSON body of GitHub's REST call that creates a repository security
//! advisory (`POST /repos/{owner}/{repo}/security-advisories`), and the
//! `gh api` command line that sends it.

use serde_json::json;

use super::{Draft, Facts, Missing};

pub fn draft(f: &Facts) -> Result<Draft, Missing> {
    let fixed = f.need_fixed()?;
    let (ecosystem, package) = f.need_package()?;
    let mut notes = Vec::new();
    let range = match &f.introduced {
        Some(i) => format!(">= {i}, < {fixed}"),
        None => format!("< {fixed}"),
    };
    let mut body = json!({
        "summary": f.title.chars().take(1024).collect::<String>(),
        "description": description(f),
        "vulnerabilities": [{
            "package": { "ecosystem": github_ecosystem(ecosystem), "name": package },
            "vulnerable_version_range": range,
            "patched_versions": fixed,
            "vulnerable_functions": [],
        }],
        "cwe_ids": f.cwe,
    });
    // GitHub takes a CVSS vector or a severity, not both.
    match (&f.cvss, f.known_severity()) {
        (Some(cvss), _) => body["cvss_vector_string"] = json!(cvss.vector),
        (None, Some(s)) => body["severity"] = json!(s.as_str()),
        (None, None) => {
            return Err(Missing(format!(
                "no severity: record one with `embargo case assess {} --severity LEVEL [--cvss VECTOR]`",
                f.id
            )));
        }
    }
    if let Some(cve) = &f.cve {
        body["cve_id"] = json!(cve);
    }
    if let Some(name) = &f.credit {
        if is_github_login(name) {
            body["credits"] = json!([{ "login": name, "type": "finder" }]);
        } else {
            notes.push(format!(
                "GitHub credits name a GitHub login, and the reporter's name is not one: the description credits them instead ({})",
                name
            ));
        }
    }
    let (owner_repo, known) = match f.target.repository.as_deref().and_then(github_repo) {
        Some(r) => (r, true),
        None => ("OWNER/REPO".to_string(), false),
    };
    if !known {
        notes.push("[advisory] repository is not a github.com repository: replace OWNER/REPO in the command".into());
    }
    Ok(Draft {
        text: super::osv::pretty(&body),
        notes,
        command: Some(format!(
            "gh api --method POST -H 'Accept: application/vnd.github+json' /repos/{owner_repo}/security-advisories --input FILE"
        )),
    })
}

fn description(f: &Facts) -> String {
    let mut text = f.details_markdown();
    if let Some(name) = f.credit.as_deref().filter(|n| !is_github_login(n)) {
        text.push_str(&format!(
            "\n\n## Credits\n\nReported by {}.",
            super::inert(name)
        ));
    }
    text
}

/// GitHub's names for the ecosystems (`other` for the rest).
fn github_ecosystem(osv: &str) -> &'static str {
    match osv {
        "crates.io" => "rust",
        "npm" => "npm",
        "PyPI" => "pip",
        "Maven" => "maven",
        "NuGet" => "nuget",
        "Packagist" => "composer",
        "Go" => "go",
        "RubyGems" => "rubygems",
        "Hex" => "erlang",
        "Pub" => "pub",
        "GitHub Actions" => "actions",
        "SwiftURL" => "swift",
        _ => "other",
    }
}

fn is_github_login(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `owner/repo` of a `https://github.com/owner/repo` URL.
fn github_repo(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://github.com/")?;
    let mut parts = rest
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    (ok(owner) && ok(repo) && parts.next().is_none()).then(|| format!("{owner}/{repo}"))
}
