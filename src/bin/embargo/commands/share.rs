//! `embargo case share`: gives a new maintainer the existing reports and
//! events of the local store by adding session keys for their certificate
//! to every part and event. The session keys are opened with the
//! maintainer's key file or through gpg (gpg-agent, smartcards).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use sequoia_openpgp as openpgp;

use embargo::id::ReportId;
use embargo::reveal;
use embargo::reveal::names::one_line;
use embargo::store;

use super::Maintainer;
use crate::output::Output;

/// `case share`: wraps each part's and event's session key to `cert` too.
pub fn run(
    ids: &[String],
    all: bool,
    cert: &Path,
    opts: &crate::cli::RevealOpts,
    out: &Output,
) -> Result<ExitCode> {
    use embargo::seal::share::{add_recipient, only_headers_added};
    use openpgp::parse::Parse;
    let m = Maintainer::resolve(opts.clone(), out)?;
    let root = reveal::store_root(m.store.as_deref(), None)?;
    let store = store::open(&root)?;
    // A key file, or gpg (gpg-agent, smartcards) shown each part's head.
    let source = m.keys.open()?;
    let bytes = std::fs::read(cert)
        .map_err(|e| anyhow!("cannot read the certificate {}: {e}", cert.display()))?;
    let newcomer = openpgp::Cert::from_bytes(&bytes)
        .map_err(|e| anyhow!("{} is not an OpenPGP certificate: {e}", cert.display()))?
        .strip_secret_key_material();
    let ids: Vec<ReportId> = if all {
        store.list()?
    } else {
        ids.iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| anyhow!("{} is not a report ID", one_line(s, 40)))
            })
            .collect::<Result<_>>()?
    };
    let (mut parts, mut reports) = (0usize, 0usize);
    for id in &ids {
        let names: Vec<String> = store
            .parts(id)?
            .into_iter()
            .chain(store.events(id)?)
            .map(|p| p.name)
            .collect();
        let mut changed = false;
        for name in names {
            let mut reader = if embargo::store::is_event_name(&name) {
                store.open_event(id, &name)?
            } else {
                store.open_part(id, &name)?
            };
            let mut before = Vec::new();
            reader.read_to_end(&mut before)?;
            if let Some(after) = add_recipient(&before, &source, &newcomer)? {
                store.replace_part(id, &name, &after, &only_headers_added)?;
                parts += 1;
                changed = true;
            }
        }
        reports += usize::from(changed);
    }
    out.note(format_args!(
        "shared {parts} part(s) of {reports} report(s) with {}; `embargo fetch` sends them to the intake, and add the certificate to the intake's keys_dir for new reports",
        newcomer.fingerprint()
    ));
    Ok(ExitCode::SUCCESS)
}
