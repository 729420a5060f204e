//! Shared test harness: temporary GnuPG homes with real gpg-generated keys,
//! an embargo deployment in a temporary directory, and helpers to run the
//! real binary. Every process a test starts is stopped when its guard drops.
#![allow(dead_code)]

pub mod cli;
pub mod dovecot;
pub mod smtp;
pub mod webhook;

#[allow(unused_imports)]
pub use cli::{Decrypt, List};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embargo::clock::Clock;
use embargo::config::Config;
use embargo::keys::{IntakeSecrets, Keyring};
use embargo::seal::{Opener, Sealer, SecretSource};
use embargo::store::FsStore;
use openpgp::cert::prelude::*;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;
use tempfile::TempDir;

/// A `metrics_listen` value on a port the kernel picks (the bound address
/// is read from the log); `listen` asks for port 0 too, and two requests
/// for port 0 never clash.
pub const METRICS_ANY_PORT: &str = "127.0.0.1:0";

/// The `embargo` binary built for these tests.
pub fn embargo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_embargo"))
}

/// An `embargo` command with a clean environment for logs.
pub fn embargo() -> Command {
    let mut cmd = Command::new(embargo_bin());
    // No maintainer profile of the machine running the tests applies.
    cmd.env_remove("EMBARGO_CONFIG")
        .env_remove("EMBARGO_MAINTAINER")
        .env("XDG_CONFIG_HOME", "/nonexistent/embargo-tests")
        .env("EMBARGO_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Key types the tests generate with stock gpg.
#[derive(Clone, Copy, Debug)]
pub enum GpgKeyType {
    /// RSA-4096 primary with an RSA-4096 encryption subkey.
    Rsa4096,
    /// RSA-3072 primary with an RSA-3072 encryption subkey (gpg 2.2's default size).
    Rsa3072,
    /// Ed25519 primary with a Cv25519 encryption subkey.
    Cv25519,
    /// Ed25519 primary only: no encryption subkey.
    SignOnly,
}

/// A temporary GNUPGHOME. Dropping it stops its gpg-agent.
pub struct Gpg {
    pub home: TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        // Short path: gpg-agent's socket path must fit in sun_path.
        let home = tempfile::Builder::new()
            .prefix("eg")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        fs::write(
            home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .unwrap();
        fs::write(
            home.path().join("gpg.conf"),
            "trust-model always\nno-auto-key-retrieve\n",
        )
        .unwrap();
        Gpg { home }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path())
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs gpg with `args`, feeding `stdin`; panics with gpg's stderr on failure.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.try_run(args, stdin);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs gpg and returns its output whatever the status.
    pub fn try_run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("gpg must be installed");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let bytes = bytes.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        child.wait_with_output().unwrap()
    }

    /// Generates a key with stock gpg; returns its fingerprint.
    pub fn gen_key(&self, uid: &str, kind: GpgKeyType, passphrase: &str, expire: &str) -> String {
        let (primary, sub) = match kind {
            GpgKeyType::Rsa4096 => ("rsa4096", Some("rsa4096")),
            GpgKeyType::Rsa3072 => ("rsa3072", Some("rsa3072")),
            GpgKeyType::Cv25519 => ("ed25519", Some("cv25519")),
            GpgKeyType::SignOnly => ("ed25519", None),
        };
        self.run(
            &[
                "--passphrase",
                passphrase,
                "--quick-gen-key",
                uid,
                primary,
                "cert,sign",
                expire,
            ],
            None,
        );
        let fpr = self.fingerprint(uid);
        if let Some(sub) = sub {
            self.run(
                &[
                    "--passphrase",
                    passphrase,
                    "--quick-add-key",
                    &fpr,
                    sub,
                    "encr",
                    expire,
                ],
                None,
            );
        }
        fpr
    }

    /// The primary fingerprint of the key with user ID `uid`.
    pub fn fingerprint(&self, uid: &str) -> String {
        let out = self.run(&["--with-colons", "--list-keys", uid], None);
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    pub fn export_public(&self, fpr: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", fpr], None).stdout
    }

    pub fn export_secret(&self, fpr: &str, passphrase: &str) -> Vec<u8> {
        self.run(
            &[
                "--passphrase",
                passphrase,
                "--armor",
                "--export-secret-keys",
                fpr,
            ],
            None,
        )
        .stdout
    }

    pub fn import(&self, bytes: &[u8]) {
        self.run(&["--import"], Some(bytes));
    }

    /// Revokes key `fpr` with the revocation certificate gpg made for it.
    pub fn revoke(&self, fpr: &str) {
        let rev = fs::read_to_string(
            self.home
                .path()
                .join("openpgp-revocs.d")
                .join(format!("{fpr}.rev")),
        )
        .unwrap();
        // gpg prefixes the armor line with ':' so it is not imported by accident.
        let rev = rev.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        self.import(rev.as_bytes());
    }

    /// Decrypts `file` with gpg; returns (plaintext, status lines).
    pub fn decrypt(&self, file: &Path) -> (Vec<u8>, String) {
        let out = self.try_run(
            &["--status-fd", "2", "--decrypt", file.to_str().unwrap()],
            None,
        );
        let status = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "gpg --decrypt {} failed:\n{status}",
            file.display()
        );
        (out.stdout, status)
    }

    /// gpg's packet dump of `file` (decrypting it if it can).
    pub fn list_packets(&self, file: &Path) -> String {
        let out = self.try_run(&["--list-packets", file.to_str().unwrap()], None);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A certificate made with Sequoia (fast; for tests that need many keys).
pub fn sequoia_key(uid: &str) -> openpgp::Cert {
    CertBuilder::general_purpose(Some(uid))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()
        .unwrap()
        .0
}

pub fn armored_public(cert: &openpgp::Cert) -> Vec<u8> {
    cert.armored().to_vec().unwrap()
}

pub fn armored_secret(cert: &openpgp::Cert) -> Vec<u8> {
    cert.as_tsk().armored().to_vec().unwrap()
}

/// An embargo deployment in a temporary directory: `embargo.toml`, `keys/`,
/// `state/`, `data/` and a private TMPDIR for the processes it runs.
pub struct Site {
    pub dir: TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["keys", "state", "data", "tmp"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let site = Site { dir };
        site.write_config("");
        site
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn config_path(&self) -> PathBuf {
        self.path().join("embargo.toml")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.path().join("keys")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.path().join("data")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.path().join("tmp")
    }
    pub fn reports_dir(&self) -> PathBuf {
        self.store_dir().join("reports")
    }

    /// Writes `embargo.toml` with `extra` appended to the site's paths.
    pub fn write_config(&self, extra: &str) {
        fs::write(self.config_path(), format!("keys_dir = \"keys\"\nstate_dir = \"state\"\nstore = \"data\"\nproject_name = \"Test Project\"\n{extra}\n")).unwrap();
    }

    /// Makes a maintainer token the documented way (`embargo token new
    /// --out FILE`) and returns the quoted hash line for `token_sha256`.
    pub fn maintainer_token(&self, file: &Path) -> String {
        let made = self
            .embargo()
            .args(["token", "new", "--out"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        String::from_utf8_lossy(&made.stderr)
            .lines()
            .last()
            .unwrap()
            .to_string()
    }

    pub fn add_key(&self, name: &str, armored: &[u8]) {
        fs::write(self.keys_dir().join(name), armored).unwrap();
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path()).unwrap()
    }

    /// An `embargo` command run from the site with `-c` added by the caller.
    pub fn embargo(&self) -> Command {
        let mut cmd = embargo();
        cmd.current_dir(self.path()).env("TMPDIR", self.tmp_dir());
        cmd
    }

    /// Opens the intake in-process (keys, secrets, store, sealer).
    /// The sealing station of this site, ready to seal (fails without a usable key).
    pub fn intake(&self) -> embargo::station::Sealing {
        embargo::station::Station::open(
            self.config(),
            Clock::system(),
            embargo::station::Recovery::RemoveStale,
        )
        .unwrap()
        .sealing()
        .unwrap()
    }

    pub fn store(&self) -> FsStore {
        FsStore::open(&self.store_dir()).unwrap()
    }

    pub fn signing_cert(&self) -> openpgp::Cert {
        IntakeSecrets::load_or_create(&self.state_dir(), "Test Project")
            .unwrap()
            .signing_cert()
    }

    /// Committed report IDs, straight from the directory listing.
    pub fn report_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.reports_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Entries left in the staging directory.
    pub fn staging_entries(&self) -> Vec<String> {
        fs::read_dir(self.reports_dir().join(".staging"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A sealer over an explicit set of certificates (library-level tests).
pub fn sealer_for(
    site: &Site,
    certs: Vec<openpgp::Cert>,
    format: embargo::config::MessageFormat,
) -> Sealer {
    let secrets =
        Arc::new(IntakeSecrets::load_or_create(&site.state_dir(), "Test Project").unwrap());
    Sealer::new(
        embargo::keys::Recipients::from_certs(certs),
        secrets,
        format,
        Clock::system(),
    )
}

/// Seals a report with `files` (name, bytes) into `store` through the
/// library, the way every channel does: the one sealing path of the tests
/// (the others choose its body, reporter and sealer).
pub fn seal_files(
    sealer: &Sealer,
    store: &dyn embargo::store::Store,
    channel: embargo::seal::Channel,
    body: embargo::report::ReportBody,
    reporter: embargo::report::Reporter,
    files: &[(&str, &[u8])],
) -> embargo::seal::SealedReport {
    let mut writer = sealer
        .begin(store, embargo::id::ReportId::random(), channel)
        .unwrap();
    for (name, bytes) in files {
        writer
            .add_attachment(
                name,
                "application/octet-stream",
                embargo::seal::Role::Poc,
                &mut &bytes[..],
                u64::MAX,
            )
            .unwrap();
    }
    writer.finish(body, reporter, None).unwrap()
}

/// Seals a report with `files` into the site's store with the site's own
/// intake (its keys and signing key), for tests that only need a report
/// there; the title says how many files it has.
pub fn seal_report(site: &Site, files: &[(&str, &[u8])]) -> embargo::id::ReportId {
    let mut body = embargo::report::ReportBody::default();
    body.title = format!("report with {} files", files.len());
    body.description = "d".into();
    let sealer = site.intake().sealer;
    seal_files(
        &sealer,
        &site.store(),
        embargo::seal::Channel::Api,
        body,
        embargo::report::Reporter::default(),
        files,
    )
    .id
}

/// An opener for secret keys given as TSKs.
pub fn opener(secret: &openpgp::Cert, signer: Option<openpgp::Cert>) -> Opener {
    let bytes = armored_secret(secret);
    Opener::new(SecretSource::from_key_bytes(&bytes, None).unwrap(), signer)
}

/// Loads a keyring from the site's keys dir.
pub fn keyring(site: &Site) -> Keyring {
    Keyring::load(&site.keys_dir(), Clock::system()).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), for large attachments.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every file below `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// A minimal valid input JSON with `extra` fields merged into `report`.
pub fn report_json(title: &str, description: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "report": {"title": title, "description": description, "severity": "high"},
        "reporter": {"name": "R. Searcher", "email": "r@example.org", "credit": "name"}
    }))
    .unwrap()
}

/// Runs `embargo serve -c SITE/embargo.toml` (with `args` before `serve`)
/// expecting it to stop on its own: returns its exit code and stderr. A
/// server still running after `timeout` is killed by PID (also when the
/// test fails) and `None` is returned as the code.
pub fn serve_until_exit(site: &Site, args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut cmd = site.embargo();
    cmd.args(args).args(["serve", "-c"]).arg(site.config_path());
    let mut serve = Spawned::start(&mut cmd);
    let status = wait_exit(&mut serve.child, timeout);
    let _ = serve.child.kill();
    let _ = serve.child.wait();
    serve.logs.wait_ended(Duration::from_secs(10));
    (status.and_then(|s| s.code()), serve.logs.text())
}

/// How often [`wait_until`] checks its condition.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `cond` until it holds; panics naming `what` after `timeout`. Tests
/// wait on the condition they need instead of sleeping a fixed time.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_until_with(what, timeout, cond, String::new);
}

/// [`wait_until`] whose panic also shows `detail()` (a log, a status), as
/// it is when the time runs out.
pub fn wait_until_with(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    detail: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                detail()
            );
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// [`wait_until`] inside a runtime: sleeps with tokio, so tasks on the same
/// (current-thread) runtime keep running while it waits.
pub async fn wait_until_async(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits until `child` exits; its status, or `None` after `timeout` (the
/// child is then left running for the caller to kill).
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let mut status = None;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        status = child.try_wait().ok().flatten();
        if status.is_some() {
            break;
        }
        std::thread::sleep(POLL_EVERY);
    }
    status
}

/// The PIDs of the processes whose parent is `parent` (from /proc).
pub fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = fs::read_to_string(p.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid.parse::<u32>().ok()? == parent).then_some(pid)
        })
        .collect()
}

/// A spawned process (stdout discarded, stderr captured in `logs`), killed
/// by PID when dropped, also when the test fails.
pub struct Spawned {
    /// The process itself.
    pub child: std::process::Child,
    /// Everything it wrote to stderr so far.
    pub logs: Logs,
}

impl Spawned {
    /// Spawns `cmd` with its stderr captured.
    pub fn start(cmd: &mut Command) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let logs = Logs::capture(child.stderr.take().unwrap());
        Spawned { child, logs }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "HUP", "TERM") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its exit status once it exits; panics with its log after `timeout`.
    pub fn exit_within(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
        match wait_exit(&mut self.child, timeout) {
            Some(status) => {
                self.logs.wait_ended(timeout);
                status
            }
            None => panic!(
                "{what}: still running after {timeout:?}; its log:\n{}",
                self.logs.text()
            ),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Log text captured from a child's stderr or a tracing writer, shared with
/// the thread that appends to it; tests search it and wait on it.
#[derive(Clone, Default)]
pub struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    /// Set once the captured stream reached its end.
    ended: Arc<AtomicBool>,
}

impl Logs {
    /// Collects everything `reader` yields (a child's stderr) on a thread.
    pub fn capture(reader: impl std::io::Read + Send + 'static) -> Logs {
        let logs = Logs::default();
        let mut sink = logs.clone();
        std::thread::spawn(move || {
            let mut reader = reader;
            let _ = std::io::copy(&mut reader, &mut sink);
            sink.ended.store(true, Ordering::SeqCst);
        });
        logs
    }

    /// Waits until the captured stream ends (its process exited), so the
    /// text is complete.
    pub fn wait_ended(&self, timeout: Duration) {
        wait_until("the end of a captured log", timeout, || {
            self.ended.load(Ordering::SeqCst)
        });
    }

    /// The bytes so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    /// The text so far (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Whether `needle` occurs so far.
    pub fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }

    /// How many times `needle` occurs so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }

    /// The first complete line holding `needle`, if there is one yet.
    pub fn line_with(&self, needle: &str) -> Option<String> {
        self.text()
            .split_inclusive('\n')
            .find(|l| l.ends_with('\n') && l.contains(needle))
            .map(|l| l.trim_end().to_string())
    }

    /// Waits until `needle` occurs; returns the first complete line holding
    /// it. Panics with the whole log after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let mut found = None;
        wait_until_with(
            &format!("{needle:?} in the log"),
            timeout,
            || {
                found = self.line_with(needle);
                found.is_some()
            },
            || self.text(),
        );
        found.unwrap_or_default()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
