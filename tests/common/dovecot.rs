//! A real Dovecot IMAP server (Debian `dovecot-imapd`) in a temporary
//! directory, listening on a free loopback port with a Maildir and a static
//! password; stopped by PID when dropped. `Imap` is a tiny raw IMAP client
//! for test setup and inspection (the product uses async-imap).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const USER: &str = "intake";
pub const PASSWORD: &str = "imap-test-password";
const DOVECOT: &str = "/usr/sbin/dovecot";

/// A running Dovecot; `stop`/`start` keep its Maildir.
pub struct Dovecot {
    pub dir: TempDir,
    pub port: u16,
    /// The implicit-TLS port, when started with [`Dovecot::start_tls`].
    pub tls_port: Option<u16>,
    extra: String,
    child: Option<Child>,
}

/// A TCP port on 127.0.0.1 that was free when this returned, for Dovecot,
/// which cannot be handed a bound socket: it retries with another port if
/// this one is taken by then (see [`Dovecot::start_with`]).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Stops `child` with SIGTERM, then SIGKILL if it lingers.
pub fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if super::wait_exit(child, Duration::from_secs(5)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether Dovecot's log says its port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::start_with("", false)
    }

    /// With TLS (STARTTLS on `port`, implicit TLS on `tls_port`) using a
    /// fresh self-signed certificate for 127.0.0.1, which no client trusts.
    pub fn start_tls() -> Dovecot {
        Dovecot::start_with("", true)
    }

    /// With `extra` lines appended to the configuration.
    pub fn start_with(extra: &str, tls: bool) -> Dovecot {
        assert!(
            Path::new(DOVECOT).exists(),
            "{DOVECOT} is missing: install Debian's dovecot-imapd (apt-get install -y dovecot-imapd)"
        );
        let dir = tempfile::Builder::new()
            .prefix("dc")
            .tempdir_in("/tmp")
            .unwrap();
        // Mail processes run as the `dovecot` user: it must reach the Maildir.
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        for sub in ["run", "state", "mail", "home"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let ok = Command::new("chown")
            .args(["-R", "dovecot:dovecot"])
            .arg(dir.path().join("mail"))
            .arg(dir.path().join("home"))
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "chown to the dovecot user failed (are the tests running as root?)"
        );
        if tls {
            let ok = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl must be installed");
            assert!(ok.success(), "openssl req failed");
        }
        let mut d = Dovecot {
            dir,
            port: 0,
            tls_port: None,
            extra: extra.to_string(),
            child: None,
        };
        // The ports are picked, not handed over: another process may take
        // one first, so a start that finds it taken tries fresh ones.
        for _ in 0..10 {
            d.port = free_port();
            d.tls_port = tls.then(free_port);
            d.write_config();
            if d.try_start() {
                return d;
            }
        }
        panic!("dovecot found its port taken ten times:\n{}", d.log());
    }

    /// Starts Dovecot on the configured ports; false if a port was taken
    /// (it then exited), panics on any other failure.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none());
        let log_before = self.log().len();
        let mut child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = super::Logs::capture(child.stderr.take().unwrap());
        // Someone else may listen on a taken port: only Dovecot's own
        // "starting up" (logged once its listeners are bound) counts.
        let mut exited = false;
        super::wait_until("dovecot to start or fail", Duration::from_secs(20), || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || self.log_since(log_before).contains("starting up")
        });
        let up = !exited && listening(self.port) && self.tls_port.is_none_or(listening);
        if up {
            self.child = Some(child);
            return true;
        }
        stop_child(&mut child);
        stderr.wait_ended(Duration::from_secs(5));
        let log = format!("{}{}", self.log_since(log_before), stderr.text());
        assert!(port_taken(&log), "dovecot did not start:\n{log}");
        false
    }

    fn write_config(&self) {
        let p = self.dir.path().display();
        let port = self.port;
        let (ssl, imaps_port) = match self.tls_port {
            Some(tls_port) => (
                format!("yes\nssl_cert = <{p}/cert.pem\nssl_key = <{p}/key.pem"),
                tls_port,
            ),
            None => ("no".to_string(), 0),
        };
        let extra = &self.extra;
        let conf = format!(
            r#"protocols = imap
listen = 127.0.0.1
base_dir = {p}/run
state_dir = {p}/state
log_path = {p}/dovecot.log
ssl = {ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{p}/mail
verbose_proctitle = yes
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={p}/home
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
{extra}
"#
        );
        fs::write(self.dir.path().join("dovecot.conf"), conf).unwrap();
    }

    /// Starts the server (again) on the same port and Maildir. Clients
    /// know this port, so a conflict is waited out rather than dodged.
    pub fn start_again(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.try_start() {
            assert!(
                Instant::now() < deadline,
                "port {} stayed taken:\n{}",
                self.port,
                self.log()
            );
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
            // A restart needs the port closed and the master's pid file gone.
            let pid_file = self.dir.path().join("run").join("master.pid");
            super::wait_until(
                "dovecot to release its port",
                Duration::from_secs(10),
                || !listening(self.port) && !pid_file.exists(),
            );
        }
    }

    /// How many IMAP sessions of this server are in IDLE right now (seen in
    /// their process titles, which `verbose_proctitle` keeps current).
    pub fn idle_sessions(&self) -> usize {
        let Some(master) = self.child.as_ref().map(Child::id) else {
            return 0;
        };
        super::child_pids(master)
            .into_iter()
            .filter(|pid| {
                let title = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&title).contains(" IDLE]")
            })
            .count()
    }

    /// The Maildir of INBOX.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The log written after its first `offset` bytes.
    fn log_since(&self, offset: usize) -> String {
        self.log().get(offset..).unwrap_or_default().to_string()
    }

    /// Stops Dovecot, deletes its UID list and indexes (so UIDVALIDITY
    /// changes and every message gets a new UID), and starts it again.
    pub fn reset_uidvalidity(&mut self) {
        self.stop();
        for entry in fs::read_dir(self.maildir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("dovecot") {
                fs::remove_file(&path).unwrap();
            }
        }
        self.start_again();
    }

    /// The `[mailbox]` section for this server, with the password file
    /// written into `site_dir`.
    pub fn mailbox_config(&self, site_dir: &Path, extra: &str) -> String {
        fs::write(site_dir.join("imap-password"), format!("{PASSWORD}\n")).unwrap();
        format!(
            "[mailbox]\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{USER}\"\npassword_file = \"imap-password\"\nfolder = \"INBOX\"\npoll_interval = \"1s\"\n{extra}\n",
            self.port
        )
    }

    /// A raw client, logged in, with INBOX selected.
    pub fn client(&self) -> Imap {
        let mut imap = Imap::connect(self.port);
        imap.ok(&format!("LOGIN {USER} {PASSWORD}"));
        imap.ok("SELECT INBOX");
        imap
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // Not `stop`: a panic here, while a failed test unwinds, would abort.
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// A minimal raw IMAP client for tests.
pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    pub fn connect(port: u16) -> Imap {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut greeting = String::new();
        reader.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        Imap {
            reader,
            writer: stream,
            tag: 0,
        }
    }

    /// Reads one response line, with any literals it announces inlined.
    fn read_response_line(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "IMAP connection closed");
            out.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let trimmed = text.trim_end();
            if let Some(n) = trimmed
                .strip_suffix('}')
                .and_then(|s| s.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut literal = vec![0u8; n];
                self.reader.read_exact(&mut literal).unwrap();
                out.extend_from_slice(&literal);
                continue;
            }
            return out;
        }
    }

    /// Sends `cmd` (and `literal` after the continuation); returns the
    /// untagged responses and the tagged status line.
    pub fn command(&mut self, cmd: &str, literal: Option<&[u8]>) -> (Vec<Vec<u8>>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        if let Some(bytes) = literal {
            let cont = self.read_response_line();
            assert!(
                cont.starts_with(b"+"),
                "no continuation: {}",
                String::from_utf8_lossy(&cont)
            );
            self.writer.write_all(bytes).unwrap();
            self.writer.write_all(b"\r\n").unwrap();
        }
        let mut untagged = Vec::new();
        loop {
            let line = self.read_response_line();
            if line.starts_with(format!("{tag} ").as_bytes()) {
                return (
                    untagged,
                    String::from_utf8_lossy(&line).trim_end().to_string(),
                );
            }
            untagged.push(line);
        }
    }

    pub fn ok(&mut self, cmd: &str) -> Vec<Vec<u8>> {
        let (untagged, status) = self.command(cmd, None);
        assert!(
            status.split_whitespace().nth(1) == Some("OK"),
            "{cmd}: {status}"
        );
        untagged
    }

    /// APPENDs `raw` to INBOX; returns its UID.
    pub fn append(&mut self, raw: &[u8]) -> u32 {
        let (_, status) = self.command(&format!("APPEND INBOX {{{}}}", raw.len()), Some(raw));
        assert!(status.contains(" OK "), "APPEND: {status}");
        // t1 OK [APPENDUID <validity> <uid>] ...
        status
            .split("APPENDUID ")
            .nth(1)
            .and_then(|s| s.split(&[' ', ']'][..]).nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// UIDs in INBOX (after a NOOP to see other clients' changes).
    pub fn uids(&mut self) -> Vec<u32> {
        self.ok("NOOP");
        let mut uids = Vec::new();
        for line in self.ok("UID SEARCH ALL") {
            let text = String::from_utf8_lossy(&line);
            if let Some(rest) = text.strip_prefix("* SEARCH") {
                uids.extend(
                    rest.split_whitespace()
                        .filter_map(|n| n.parse::<u32>().ok()),
                );
            }
        }
        uids.sort();
        uids
    }

    /// The FLAGS of message `uid`.
    pub fn flags(&mut self, uid: u32) -> String {
        let lines = self.ok(&format!("UID FETCH {uid} (FLAGS)"));
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .find(|l| l.contains("FLAGS"))
            .unwrap_or_default()
    }

    /// The raw bytes of message `uid` as the server serves them (PEEK: not marked seen).
    pub fn body(&mut self, uid: u32) -> Vec<u8> {
        let lines = self.ok(&format!("UID FETCH {uid} (BODY.PEEK[])"));
        let line = lines
            .into_iter()
            .find(|l| l.starts_with(b"* ") && l.windows(5).any(|w| w == b"BODY["))
            .unwrap();
        let open = line.windows(2).position(|w| w == b"}\r").unwrap();
        let start_n = line[..open].iter().rposition(|&b| b == b'{').unwrap();
        let n: usize = String::from_utf8_lossy(&line[start_n + 1..open])
            .parse()
            .unwrap();
        line[open + 3..open + 3 + n].to_vec()
    }

    pub fn uidvalidity(&mut self) -> u32 {
        let lines = self.ok("STATUS INBOX (UIDVALIDITY)");
        let text = String::from_utf8_lossy(&lines[0]).into_owned();
        text.split("UIDVALIDITY ")
            .nth(1)
            .unwrap()
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap()
    }
}
