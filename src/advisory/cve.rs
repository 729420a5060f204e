//! A CVE JSON 5.1 CNA published container: what a CNA submits for a CVE
//! record (`cve` tools, CVE Services).

use serde_json::{Value, json};

use super::{Draft, Facts, Missing};

pub fn draft(f: &Facts) -> Result<Draft, Missing> {
    let fixed = f.need_fixed()?;
    let (ecosystem, package) = f.need_package()?;
    let org = f
        .target
        .cna_org_id
        .as_deref()
        .filter(|o| is_uuid4(o))
        .ok_or_else(|| {
            Missing("no CNA organization ID: set `cna_org_id` under [advisory] to your CNA's UUID (a version 4 UUID from the CVE program)".into())
        })?;
    let mut notes = Vec::new();
    let mut product = json!({
        "packageName": package,
        "defaultStatus": "unaffected",
        "versions": [{
            "version": f.introduced.clone().unwrap_or_else(|| {
                notes.push("no introduced version: every version before the fix is listed as affected (from \"0\"); pass --introduced VERSION".into());
                "0".into()
            }),
            "lessThan": fixed,
            "status": "affected",
            "versionType": version_type(ecosystem),
        }],
    });
    match collection_url(ecosystem) {
        Some(url) => product["collectionURL"] = json!(url),
        None => {
            return Err(Missing(format!(
                "the CVE record names a package by its collection, and embargo knows none for ecosystem {ecosystem:?}: use crates.io, npm, PyPI, Go, Maven, NuGet, Packagist, RubyGems, Hex or Pub"
            )));
        }
    }
    if let Some(repo) = f
        .target
        .repository
        .as_deref()
        .filter(|r| super::is_web_url(r))
    {
        product["repo"] = json!(repo);
    }
    let references = references(f);
    if references.is_empty() {
        return Err(Missing(format!(
            "a CVE record needs a reference: record the fix commit (`embargo case fix {} --commit SHA`) and set `repository` under [advisory], or an advisory URL (`embargo case advisory {} --url URL`)",
            f.id, f.id
        )));
    }
    let mut container = json!({
        "providerMetadata": { "orgId": org },
        "title": truncate(&f.title, 256),
        "descriptions": [{ "lang": "en", "value": truncate(&f.details_plain(), 4096) }],
        "affected": [product],
        "references": references,
        "datePublic": f.now,
    });
    if !f.cwe.is_empty() {
        let descriptions: Vec<Value> = f
            .cwe
            .iter()
            .map(|c| json!({ "lang": "en", "type": "CWE", "cweId": c, "description": c }))
            .collect();
        container["problemTypes"] = json!([{ "descriptions": descriptions }]);
    }
    if let Some(cvss) = &f.cvss {
        let key = match cvss.version.as_str() {
            "4.0" => "cvssV4_0",
            "3.0" => "cvssV3_0",
            _ => "cvssV3_1",
        };
        container["metrics"] = json!([{ key: {
            "version": cvss.version,
            "vectorString": cvss.vector,
            "baseScore": cvss.score,
            "baseSeverity": cvss.rating.to_ascii_uppercase(),
        }}]);
    }
    if let Some(name) = &f.credit {
        container["credits"] = json!([{ "lang": "en", "value": name, "type": "finder" }]);
    }
    if f.cve.is_none() {
        notes.push("the container holds no CVE ID: CVE Services adds it when the record is published for a reserved ID".into());
    }
    Ok(Draft {
        text: super::osv::pretty(&container),
        notes,
        command: None,
    })
}

fn references(f: &Facts) -> Vec<Value> {
    let mut refs = Vec::new();
    if let Some(url) = f.commit_url() {
        refs.push(json!({ "url": url, "tags": ["patch"] }));
    }
    if let Some(url) = &f.advisory_url {
        refs.push(json!({ "url": url, "tags": ["vendor-advisory"] }));
    }
    if let Some(url) = &f.policy_url {
        refs.push(json!({ "url": url }));
    }
    refs
}

/// At most `max` characters, cut on a character boundary with an ellipsis.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn collection_url(ecosystem: &str) -> Option<&'static str> {
    Some(match ecosystem {
        "crates.io" => "https://crates.io",
        "npm" => "https://www.npmjs.com",
        "PyPI" => "https://pypi.org",
        "Go" => "https://pkg.go.dev",
        "Maven" => "https://repo.maven.apache.org/maven2",
        "NuGet" => "https://www.nuget.org",
        "Packagist" => "https://packagist.org",
        "RubyGems" => "https://rubygems.org",
        "Hex" => "https://hex.pm",
        "Pub" => "https://pub.dev",
        _ => return None,
    })
}

fn version_type(ecosystem: &str) -> &'static str {
    match ecosystem {
        "crates.io" | "npm" | "Go" | "Hex" | "Pub" | "NuGet" => "semver",
        "Maven" => "maven",
        "PyPI" => "python",
        _ => "custom",
    }
}

fn is_uuid4(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b', 'A', 'B'])
}
