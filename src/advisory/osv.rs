//! OSV (schema 1.6): what `osv-scanner` and osv.dev read.

use serde_json::{Value, json};

use super::{Draft, Facts, Missing};

pub fn draft(f: &Facts) -> Result<Draft, Missing> {
    let fixed = f.need_fixed()?;
    let (ecosystem, package) = f.need_package()?;
    if !OSV_ECOSYSTEMS.contains(&ecosystem) {
        return Err(Missing(format!(
            "[advisory] ecosystem {ecosystem:?} is not an OSV ecosystem: use one of {}",
            OSV_ECOSYSTEMS.join(", ")
        )));
    }
    let mut notes = Vec::new();
    // The record's own ID: the GHSA or CVE once one is recorded.
    let (id, aliases): (String, Vec<&String>) = match (&f.ghsa, &f.cve) {
        (Some(g), cve) => (g.clone(), cve.iter().collect()),
        (None, Some(c)) => (c.clone(), Vec::new()),
        (None, None) => {
            notes.push(format!(
                "no GHSA or CVE ID yet: the draft's id is x_embargo-{}; record one with `embargo case advisory {} --ghsa ID`",
                f.id, f.id
            ));
            (format!("x_embargo-{}", f.id), Vec::new())
        }
    };
    let introduced = f.introduced.clone().unwrap_or_else(|| {
        notes.push("no introduced version: every version before the fix is listed as affected (introduced \"0\"); pass --introduced VERSION".into());
        "0".into()
    });
    let mut pkg = json!({ "ecosystem": ecosystem, "name": package });
    if let Some(purl) = &f.target.purl {
        pkg["purl"] = json!(purl);
    }
    let mut record = json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": f.now,
        "published": f.now,
        "aliases": aliases,
        "summary": f.title,
        "details": f.details_markdown(),
        "affected": [{
            "package": pkg,
            "ranges": [{ "type": "ECOSYSTEM", "events": [{ "introduced": introduced }, { "fixed": fixed }] }],
        }],
        "references": references(f),
    });
    if let Some(cvss) = &f.cvss {
        let kind = if cvss.version == "4.0" {
            "CVSS_V4"
        } else {
            "CVSS_V3"
        };
        record["severity"] = json!([{ "type": kind, "score": cvss.vector }]);
    }
    if let Some(name) = &f.credit {
        record["credits"] = json!([{ "name": name, "type": "FINDER" }]);
    }
    let mut specific = serde_json::Map::new();
    if !f.cwe.is_empty() {
        specific.insert("cwe_ids".into(), json!(f.cwe));
    }
    if let Some(s) = f.known_severity() {
        specific.insert("severity".into(), json!(s.as_str().to_ascii_uppercase()));
    }
    if !specific.is_empty() {
        record["database_specific"] = Value::Object(specific);
    }
    Ok(Draft {
        text: pretty(&record),
        notes,
        command: None,
    })
}

fn references(f: &Facts) -> Vec<Value> {
    let mut refs = Vec::new();
    if let Some(url) = f.commit_url() {
        refs.push(json!({ "type": "FIX", "url": url }));
    }
    if let Some(url) = &f.advisory_url {
        refs.push(json!({ "type": "ADVISORY", "url": url }));
    }
    if let Some(repo) = f
        .target
        .repository
        .as_deref()
        .filter(|r| super::is_web_url(r))
    {
        refs.push(json!({ "type": "PACKAGE", "url": repo }));
    }
    if let Some(url) = &f.policy_url {
        refs.push(json!({ "type": "WEB", "url": url }));
    }
    refs
}

pub(super) fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// The ecosystems the OSV schema knows (the `ecosystemName` list).
pub const OSV_ECOSYSTEMS: &[&str] = &[
    "AlmaLinux",
    "Alpaquita",
    "Alpine",
    "Android",
    "Azure Linux",
    "BellSoft Hardened Containers",
    "Bioconductor",
    "Bitnami",
    "Chainguard",
    "CleanStart",
    "ConanCenter",
    "CRAN",
    "crates.io",
    "Debian",
    "Docker Hardened Images",
    "Echo",
    "FreeBSD",
    "GHC",
    "GitHub Actions",
    "Go",
    "Hackage",
    "Hex",
    "Julia",
    "Kubernetes",
    "Linux",
    "Mageia",
    "Maven",
    "MinimOS",
    "npm",
    "NuGet",
    "opam",
    "openEuler",
    "openSUSE",
    "OSS-Fuzz",
    "Packagist",
    "Photon OS",
    "Pub",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "Root",
    "RubyGems",
    "SUSE",
    "SwiftURL",
    "TuxCare",
    "Ubuntu",
    "VSCode",
    "Wolfi",
];
