//! `embargo decrypt`: one report into OUT/<ID>/, verified, all or nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use embargo::reveal;
use embargo::seal::SignatureCheck;

use super::Maintainer;
use crate::cli::RevealOpts;
use crate::output::{self, Output, UNCHECKED_SIGNATURE_WARNING};

pub fn run(target: String, opts: RevealOpts, dir: PathBuf, out: &Output) -> Result<ExitCode> {
    let m = Maintainer::resolve(opts, out)?;
    let args = reveal::DecryptArgs {
        target,
        store: m.store,
        out: dir,
        keys: m.keys,
        signer: m.signer,
        policy: m.policy,
        on_interrupt: output::interrupted,
    };
    let done = reveal::decrypt(&args, &out.progress())?;
    let signature = match &done.signature {
        SignatureCheck::Verified(fpr) => format!("manifest signed by the intake key {fpr}"),
        _ => {
            out.line(UNCHECKED_SIGNATURE_WARNING);
            "manifest signature NOT checked".into()
        }
    };
    out.note(format_args!(
        "report {} decrypted: {} attachment(s) matched the manifest's sizes and SHA-256, {signature}; see report.md",
        done.id,
        done.files.len()
    ));
    out.data(done.dir.display());
    Ok(ExitCode::SUCCESS)
}
