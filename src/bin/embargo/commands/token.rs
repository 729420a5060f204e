//! `embargo token new`: a fetch token for a maintainer, and the hash the
//! intake keeps.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow};

use embargo::reveal;

use crate::output::Output;

pub fn new(file: Option<&Path>, out: &Output) -> Result<ExitCode> {
    let token = reveal::new_token();
    match file {
        Some(path) => {
            reveal::token::write_token_file(path, &token.token).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow!(
                        "{} already exists: `token new` never overwrites a file; choose another --out or remove it first",
                        path.display()
                    )
                } else {
                    anyhow!(
                        "cannot create the token file {}: {e}; check that its directory exists and is writable",
                        path.display()
                    )
                }
            })?;
            out.note(format_args!(
                "wrote the new fetch token to {} (mode 0600): the maintainer uses it with `embargo fetch --token-file`",
                path.display()
            ));
        }
        None => {
            out.data(token.token.as_str());
            out.note(
                "the new fetch token is on stdout: the maintainer keeps it in a file only they can read (chmod 600) for `embargo fetch --token-file`",
            );
        }
    }
    out.note(
        "on the intake, add this entry to the token_sha256 list in [maintainers] of embargo.toml, keeping the entries already there:",
    );
    out.line(token.list_entry());
    Ok(ExitCode::SUCCESS)
}
