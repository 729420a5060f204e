//! Everything the command prints for people: where it goes (data on
//! stdout, messages on stderr), whether colour is used (decided once per
//! stream), the one table renderer, the progress bar and the error line.
//! The library returns data; only this module and the command handlers
//! turn it into text.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeroize::Zeroizing;

pub use embargo::units::human_size;

/// Printed when manifests are opened without a pinned signer.
pub const UNCHECKED_SIGNATURE_WARNING: &str = "embargo: warning: the manifest signature was NOT checked (no --signer given and no intake key in the configuration's state_dir): anyone who can write to the store could have forged this report; pass the intake's signing certificate with --signer FILE (from `embargo keys signing` or /signing-key.asc)";

/// Below this many bytes no progress bar is shown.
const PROGRESS_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// What the streams of this process are connected to, looked at once.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Colour on stdout (tables): a terminal, and `NO_COLOR` unset.
    pub stdout_colour: bool,
    /// Colour on stderr (log lines): a terminal, and `NO_COLOR` unset.
    pub stderr_colour: bool,
    /// stderr is a terminal: progress bars are drawn there.
    pub stderr_terminal: bool,
    /// stdin is a terminal: a person can answer a passphrase prompt.
    pub stdin_terminal: bool,
}

impl Output {
    /// Looks at the streams and at `NO_COLOR`.
    pub fn detect() -> Output {
        let no_colour = std::env::var_os("NO_COLOR").is_some();
        let stdout_terminal = std::io::stdout().is_terminal();
        let stderr_terminal = std::io::stderr().is_terminal();
        Output {
            stdout_colour: stdout_terminal && !no_colour,
            stderr_colour: stderr_terminal && !no_colour,
            stderr_terminal,
            stdin_terminal: std::io::stdin().is_terminal(),
        }
    }

    /// Data on stdout (an ID, a path, a table, JSON), as given.
    pub fn data(&self, text: impl Display) {
        println!("{text}");
    }

    /// Data on stdout without adding a line end (text that has its own).
    pub fn data_raw(&self, text: &str) {
        print!("{text}");
        let _ = std::io::stdout().flush();
    }

    /// A message for the person on stderr: `embargo: MESSAGE`.
    pub fn note(&self, message: impl Display) {
        eprintln!("embargo: {message}");
    }

    /// A line on stderr as given (a warning with its own prefix, a value
    /// to copy).
    pub fn line(&self, text: impl Display) {
        eprintln!("{text}");
    }

    /// The one error line: `embargo: error: WHAT FAILED; WHAT TO DO`.
    pub fn error(&self, message: impl Display) {
        eprintln!("embargo: error: {message}");
    }

    /// A progress bar on stderr for decrypt and fetch: drawn only on a
    /// terminal and for work large enough to wait for.
    pub fn progress(&self) -> Bar {
        Bar {
            bar: ProgressBar::hidden(),
            draw: self.stderr_terminal,
        }
    }

    /// How a locked key's passphrase is asked: on the terminal, when a
    /// person is there; `None` otherwise (scripts get a clear error).
    pub fn passphrase_prompt(&self) -> Option<embargo::reveal::keysource::AskPassphrase> {
        self.stdin_terminal.then_some(ask_passphrase as _)
    }
}

/// Asks on the terminal (never echoed) for the passphrase of `key_file`.
fn ask_passphrase(key_file: &Path, again: bool) -> std::io::Result<Zeroizing<String>> {
    if again {
        eprintln!("embargo: wrong passphrase, try again");
    }
    rpassword::prompt_password(format!(
        "Passphrase for the secret key in {}: ",
        key_file.display()
    ))
    .map(Zeroizing::new)
}

/// Said, and the process ended, when Ctrl-C or SIGTERM stops a decrypt
/// (after the library removed the partial directory).
pub fn interrupted() -> ! {
    eprintln!("embargo: interrupted; nothing was kept");
    std::process::exit(130);
}

/// [`embargo::reveal::Progress`] as an indicatif bar on stderr.
pub struct Bar {
    bar: ProgressBar,
    draw: bool,
}

impl embargo::reveal::Progress for Bar {
    fn start(&self, total: u64) {
        if !self.draw || total < PROGRESS_MIN_BYTES {
            return;
        }
        self.bar.set_length(total);
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            self.bar.set_style(style.progress_chars("=> "));
        }
    }

    fn working_on(&self, what: &str) {
        self.bar.set_message(what.to_owned());
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn rewind(&self, bytes: u64) {
        self.bar
            .set_position(self.bar.position().saturating_sub(bytes));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// One cell of a [`Table`]; `alert` cells are red on a colour terminal.
pub struct Cell {
    pub text: String,
    pub alert: bool,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            alert: false,
        }
    }

    pub fn alert(text: impl Into<String>, alert: bool) -> Cell {
        Cell {
            text: text.into(),
            alert,
        }
    }
}

/// A table with a header, left-aligned columns two spaces apart, and no
/// padding after the last column. Cell text must already be safe for a
/// terminal (see `embargo::reveal::names::one_line`).
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The text of the table, alert cells coloured when `colour`.
    pub fn render(&self, colour: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.text.chars().count());
            }
        }
        let header: Vec<Cell> = self.header.iter().map(|h| Cell::plain(*h)).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                let shown = if cell.alert && colour {
                    format!("\x1b[1;31m{}\x1b[0m", cell.text)
                } else {
                    cell.text.clone()
                };
                if i == last {
                    out.push_str(&shown);
                    out.push('\n');
                } else {
                    let pad = widths[i].saturating_sub(cell.text.chars().count());
                    out.push_str(&shown);
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_only_alerts_are_coloured() {
        let mut t = Table::new(vec!["ID", "DUE", "TITLE"]);
        t.push(vec![
            Cell::plain("A"),
            Cell::alert("late", true),
            Cell::plain("x"),
        ]);
        t.push(vec![
            Cell::plain("BBBB"),
            Cell::plain("-"),
            Cell::plain("y"),
        ]);
        assert_eq!(
            t.render(false),
            "ID    DUE   TITLE\nA     late  x\nBBBB  -     y\n"
        );
        assert_eq!(
            t.render(true).lines().nth(1).unwrap(),
            "A     \x1b[1;31mlate\x1b[0m  x"
        );
    }
}
