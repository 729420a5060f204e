//! A real SMTP server on loopback: Python's `aiosmtpd` (pip install aiosmtpd)
//! storing every mail it receives in a Maildir, on a socket bound by the
//! test and handed over; stopped by PID when dropped.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::dovecot::stop_child;

/// aiosmtpd with its Maildir handler (as `python3 -m aiosmtpd -n -c
/// aiosmtpd.handlers.Mailbox DIR` runs it), serving the listening socket
/// it gets as stdin.
const SERVE_ON_STDIN: &str = r#"
import asyncio, socket, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

async def main():
    sock = socket.socket(fileno=0)
    handler = Mailbox(sys.argv[1])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=None, enable_SMTPUTF8=False), sock=sock
    )
    await server.serve_forever()

asyncio.run(main())
"#;

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
    /// Starts aiosmtpd on a listener bound here (port 0) and handed over
    /// as its stdin, so no other process can take the port in between.
    pub fn start() -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SERVE_ON_STDIN)
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 must be installed (with `pip install aiosmtpd`)");
        let logs = super::Logs::capture(child.stderr.take().unwrap());
        let mut sink = SmtpSink { dir, port, child };
        // The kernel queues connections at once; the greeting proves that
        // aiosmtpd (which may be missing) is the one answering.
        if !sink.greets() {
            stop_child(&mut sink.child);
            logs.wait_ended(Duration::from_secs(5));
            panic!(
                "aiosmtpd did not answer (pip install aiosmtpd):\n{}",
                logs.text()
            );
        }
        sink
    }

    /// Whether the server sends its SMTP greeting.
    fn greets(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        line.starts_with("220 ")
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
