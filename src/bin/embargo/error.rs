//! The one mapping from a failed command to its exit code and error line:
//! 2 when the command line asked for something that cannot be done (clap
//! exits 2 itself for what it catches), 1 when the work failed.

use std::fmt;
use std::process::ExitCode;

use embargo::reveal;
use embargo::station::StationError;

/// A usage error found by a command handler rather than by clap (a value
/// clap cannot check, such as `--now`).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Exit code 1: the work failed.
pub const FAILURE: u8 = 1;
/// Exit code 2: the command line asked for something that cannot be done.
pub const USAGE: u8 = 2;

/// The exit code for `e`, from the first cause that says what kind it is.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    let usage = e.chain().any(|cause| {
        cause.is::<Usage>()
            || cause
                .downcast_ref::<reveal::Error>()
                .is_some_and(|r| matches!(r, reveal::Error::Usage(_)))
            || cause
                .downcast_ref::<StationError>()
                .is_some_and(StationError::is_usage)
    });
    ExitCode::from(if usage { USAGE } else { FAILURE })
}

/// The error's text: the outermost message, then each cause it does not
/// already spell out (library messages often include their source).
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(io).context("cannot read x: gone");
        assert_eq!(describe(&e), "cannot read x: gone");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(io).context("cannot read x");
        assert_eq!(describe(&e), "cannot read x: gone");
    }

    #[test]
    fn usage_errors_exit_2_wherever_they_are_in_the_chain() {
        let e = anyhow::Error::new(reveal::Error::Usage("no store".into()));
        assert_eq!(exit_code(&e), ExitCode::from(USAGE));
        let e = anyhow::Error::new(StationError::TooManyAttachments { given: 3, limit: 2 })
            .context("seal");
        assert_eq!(exit_code(&e), ExitCode::from(USAGE));
        let e = anyhow::anyhow!("disk full");
        assert_eq!(exit_code(&e), ExitCode::from(FAILURE));
    }
}
