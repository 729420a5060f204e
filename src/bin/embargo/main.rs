//! The `embargo` command: parses arguments, sets up logging, runs one
//! command handler and maps its outcome to an exit code.
//!
//! - `cli`: the arguments (clap); `commands/`: one short handler each;
//! - `output`: what is printed and how; `error`: exit codes and the error line;
//! - `logs`: the log subscriber on stderr.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod error;
mod logs;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let out = output::Output::detect();
    logs::init(&cli, &out);
    match commands::run(cli, &out) {
        Ok(code) => code,
        Err(e) => {
            out.error(error::describe(&e));
            error::exit_code(&e)
        }
    }
}
