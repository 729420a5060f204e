//! A real SMTP server on loopback: Python's `aiosmtpd` (pip install aiosmtpd)
//! storing every mail it receives in a Maildir; stopped by PID when dropped.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::dovecot::{free_port, stop_child, wait_for_port};

pub struct SmtpSink {
    pub dir: TempDir,
    pub port: u16,
    child: Child,
}

/// One mail as received, with the envelope recipients aiosmtpd adds.
pub struct Received {
    pub rcpt_to: String,
    pub text: String,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed (with `pip install aiosmtpd`)");
        let sink = SmtpSink { dir, port, child };
        wait_for_port(port, "aiosmtpd (pip install aiosmtpd)");
        sink
    }

    /// The `[smtp]` section sending to this server.
    pub fn smtp_config(&self) -> String {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Test Security <security@example.org>\"\n",
            self.port
        )
    }

    /// Every mail received so far.
    pub fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir: PathBuf = self.dir.path().join("maildir").join(sub);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let text = String::from_utf8_lossy(&fs::read(e.path()).unwrap()).into_owned();
                let rcpt_to = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-RcptTo: "))
                    .unwrap_or_default()
                    .to_string();
                out.push(Received { rcpt_to, text });
            }
        }
        out
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
