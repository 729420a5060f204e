//! A human-readable draft for release notes or a mailing list. Everything
//! from the report or the case is escaped ([`super::inert`]); what is not
//! known yet is a TODO line.

use super::{Draft, Facts, inert};

pub fn draft(f: &Facts) -> Draft {
    let mut o = format!("# {}\n\n", inert(&f.title));
    let mut todo = Vec::new();
    let severity = match (&f.cvss, f.known_severity()) {
        (Some(c), _) => format!(
            "{} (CVSS {} score {}, {})",
            capital(&c.rating),
            c.version,
            c.score,
            inert(&c.vector)
        ),
        (None, Some(s)) => capital(s.as_str()),
        (None, None) => {
            todo.push(format!(
                "no severity: `embargo case assess {} --severity LEVEL`",
                f.id
            ));
            "unknown".into()
        }
    };
    o.push_str(&format!("- **Severity:** {severity}\n"));
    if !f.cwe.is_empty() {
        o.push_str(&format!("- **Weakness:** {}\n", inert(&f.cwe.join(", "))));
    }
    match (&f.target.ecosystem, &f.target.package) {
        (Some(e), Some(p)) => o.push_str(&format!("- **Package:** {} ({})\n", inert(p), inert(e))),
        _ => {
            todo.push("no affected package: set `ecosystem` and `package` under [advisory]".into())
        }
    }
    match &f.fixed {
        Some(v) => {
            let since = f.introduced.as_deref().map(|i| format!("{} up to ", inert(i))).unwrap_or_default();
            o.push_str(&format!("- **Affected:** {since}versions before {}\n", inert(v)));
            o.push_str(&format!("- **Fixed in:** {}\n", inert(v)));
        }
        None => todo.push(format!(
            "no fixed version: record one with `embargo case fix {} --version VERSION --released` or pass --fixed VERSION",
            f.id
        )),
    }
    let ids: Vec<&str> = f.ghsa.iter().chain(&f.cve).map(String::as_str).collect();
    if ids.is_empty() {
        todo.push(format!(
            "no GHSA or CVE ID: `embargo case advisory {} --ghsa ID --cve ID`",
            f.id
        ));
    } else {
        o.push_str(&format!("- **Identifiers:** {}\n", inert(&ids.join(", "))));
    }
    o.push('\n');
    let details = f.details_markdown();
    if !details.is_empty() {
        o.push_str(
            &details
                .replace("\n## ", "\n### ")
                .replacen("## ", "### ", 1),
        );
        o.push_str("\n\n");
    }
    let refs: Vec<String> = [f.commit_url(), f.advisory_url.clone(), f.policy_url.clone()]
        .into_iter()
        .flatten()
        .collect();
    if !refs.is_empty() {
        o.push_str("### References\n\n");
        for r in refs {
            // Built from checked URLs only: no spaces, quotes or angle brackets.
            o.push_str(&format!("- <{r}>\n"));
        }
        o.push('\n');
    }
    if let Some(name) = &f.credit {
        o.push_str(&format!("### Credits\n\nReported by {}.\n\n", inert(name)));
    }
    for t in todo {
        o.push_str(&format!("> TODO: {t}\n"));
    }
    Draft {
        text: o.trim_end().to_string() + "\n",
        notes: Vec::new(),
        command: None,
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|first| first.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
