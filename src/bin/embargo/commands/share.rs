//! `embargo case share`: gives a new maintainer the existing reports,
//! events and follow-up files of the local store by adding session keys
//! for their certificate to every part, event and file. The session keys
//! are opened with the maintainer's key file or through gpg (gpg-agent,
//! smartcards), and only the head of a part is read: the encrypted data,
//! up to an attachment's full size, is copied by the store and never loaded.

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use sequoia_openpgp as openpgp;

use embargo::id::ReportId;
use embargo::reveal;
use embargo::reveal::names::one_line;
use embargo::seal::SecretSource;
use embargo::seal::share::{check_added, keys_to_add, read_head};
use embargo::store::{self, Store};

use super::Maintainer;
use crate::output::Output;

/// `case share`: wraps each part's, event's and file's session key to `cert` too.
pub fn run(
    ids: &[String],
    all: bool,
    cert: &Path,
    opts: &crate::cli::RevealOpts,
    out: &Output,
) -> Result<ExitCode> {
    let m = Maintainer::resolve(opts.clone(), out)?;
    let root = reveal::store_root(m.store.as_deref(), None)?;
    let store = store::open(&root)?;
    // A key file, or gpg (gpg-agent, smartcards) shown each part's head.
    let source = m.keys.open()?;
    let newcomer = read_cert(cert)?;
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
        let files = store
            .files(id)?
            .into_iter()
            .map(|f| store::file_part(&f.name));
        let names: Vec<String> = store
            .parts(id)?
            .into_iter()
            .chain(store.events(id)?)
            .map(|p| p.name)
            .chain(files)
            .collect();
        let mut changed = false;
        for name in names {
            if share_part(store.as_ref(), id, &name, &source, &newcomer)
                .with_context(|| format!("cannot share {name} of report {id}"))?
            {
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

/// The new maintainer's certificate, without any secret key material.
fn read_cert(path: &Path) -> Result<openpgp::Cert> {
    use openpgp::parse::Parse;
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow!("cannot read the certificate {}: {e}", path.display()))?;
    Ok(openpgp::Cert::from_bytes(&bytes)
        .map_err(|e| anyhow!("{} is not an OpenPGP certificate: {e}", path.display()))?
        .strip_secret_key_material())
}

/// Adds session keys for `new` to part, event or file (`files/NAME`)
/// `name` of report `id`, reading only its head; `false` when it had them
/// already. The store inserts them before the encrypted data, which it
/// copies unchanged, and only if the part still has the length it had
/// when its head was read.
fn share_part(
    store: &dyn Store,
    id: &ReportId,
    name: &str,
    source: &SecretSource,
    new: &openpgp::Cert,
) -> Result<bool> {
    let mut reader = if store::is_event_name(name) {
        store.open_event(id, name)?
    } else if let Some(file) = store::file_of_part(name) {
        store.open_file(id, file)?
    } else {
        store.open_part(id, name)?
    };
    let len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let head = read_head(&mut reader)?;
    drop(reader);
    let Some(added) = keys_to_add(&head, source, new)? else {
        return Ok(false);
    };
    // What the intake checks before it inserts the same keys.
    check_added(&added.keys)?;
    store.insert_into_part(id, name, len, added.offset, &added.keys)?;
    Ok(true)
}
