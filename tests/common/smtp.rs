//! A real SMTP server on loopback: Python's `aiosmtpd` (pip install aiosmtpd)
//! storing every mail it receives in a Maildir; stopped by PID when dropped.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::dovecot::{free_port, listens_or_exits, port_taken, stop_child};

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
    /// Starts aiosmtpd on a picked port, trying another one if it was
    /// taken before aiosmtpd could bind it.
    pub fn start() -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..10 {
            let port = free_port();
            let mut child = SmtpSink::spawn(&dir, port);
            let logs = super::Logs::capture(child.stderr.take().unwrap());
            if listens_or_exits(&mut child, port, "aiosmtpd (pip install aiosmtpd)") {
                return SmtpSink { dir, port, child };
            }
            stop_child(&mut child);
            logs.wait_ended(std::time::Duration::from_secs(5));
            assert!(
                port_taken(&logs.text()),
                "aiosmtpd did not start (pip install aiosmtpd):\n{}",
                logs.text()
            );
        }
        panic!("aiosmtpd found its port taken ten times");
    }

    fn spawn(dir: &TempDir, port: u16) -> Child {
        Command::new("python3")
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
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 must be installed (with `pip install aiosmtpd`)")
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
