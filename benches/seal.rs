//! `cargo bench --bench seal`: seals one large random attachment to three
//! Cv25519 certificates with the real `embargo seal` binary (compat and
//! rfc9580) and with `gpg --encrypt --compress-algo none` on the same file
//! and keys, and prints throughput and peak RSS. Figures, not assertions.
//!
//! `EMBARGO_BENCH_MIB` sets the size (default 1024; 0 skips this part).
//!
//! First it seals `EMBARGO_BENCH_SMALL` (default 300) small reports (the
//! report text and one 1 KiB attachment: two parts) in process, through
//! the library and the filesystem store (fsync included), and prints
//! reports/s for each format, into the store and into a null store (the
//! sealing work alone).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use openpgp::cert::prelude::*;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

/// Runs `cmd` under GNU time; returns (seconds, peak RSS in MiB).
fn measure(cmd: Command) -> (f64, f64) {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("BENCH %e %M")
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed
        .output()
        .expect("GNU time (/usr/bin/time) is needed for peak RSS");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "benchmark command failed:\n{stderr}");
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("BENCH "))
        .expect("time output");
    let mut f = line.split_whitespace().skip(1);
    let secs: f64 = f.next().unwrap().parse().unwrap();
    let kib: f64 = f.next().unwrap().parse().unwrap();
    (secs, kib / 1024.0)
}

fn write_random(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// A store that drops what it is given: the sealing cost without the disk.
struct NullStore;
struct NullStaging(embargo::id::ReportId);
struct NullSink;

impl Write for NullSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl embargo::store::PartSink for NullSink {
    fn finish(self: Box<Self>) -> Result<u64, embargo::store::StoreError> {
        Ok(0)
    }
}

impl embargo::store::Staging for NullStaging {
    fn id(&self) -> &embargo::id::ReportId {
        &self.0
    }
    fn create_part(
        &mut self,
        _: &str,
    ) -> Result<Box<dyn embargo::store::PartSink>, embargo::store::StoreError> {
        Ok(Box::new(NullSink))
    }
    fn add_event(&mut self, _: &str, _: &[u8]) -> Result<(), embargo::store::StoreError> {
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<(), embargo::store::StoreError> {
        Ok(())
    }
}

impl embargo::store::Store for NullStore {
    fn stage(
        &self,
        id: &embargo::id::ReportId,
    ) -> Result<Box<dyn embargo::store::Staging>, embargo::store::StoreError> {
        Ok(Box::new(NullStaging(id.clone())))
    }
    fn contains(&self, _: &embargo::id::ReportId) -> Result<bool, embargo::store::StoreError> {
        Ok(false)
    }
    fn list(&self) -> Result<Vec<embargo::id::ReportId>, embargo::store::StoreError> {
        Ok(Vec::new())
    }
    fn parts(
        &self,
        id: &embargo::id::ReportId,
    ) -> Result<Vec<embargo::store::PartInfo>, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn open_part(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
    ) -> Result<Box<dyn embargo::store::PartReader>, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn remove(&self, _: &embargo::id::ReportId) -> Result<(), embargo::store::StoreError> {
        Ok(())
    }
    fn check_writable(&self) -> Result<(), embargo::store::StoreError> {
        Ok(())
    }
    fn remove_stale_staging(&self) -> Result<usize, embargo::store::StoreError> {
        Ok(0)
    }
    fn arrived_at(&self, _: &embargo::id::ReportId) -> Option<std::time::SystemTime> {
        None
    }
    fn status(
        &self,
        _: &embargo::id::ReportId,
    ) -> Result<Option<Vec<u8>>, embargo::store::StoreError> {
        Ok(None)
    }
    fn set_status(
        &self,
        id: &embargo::id::ReportId,
        _: &[u8],
        _: &dyn Fn(Option<&[u8]>) -> bool,
    ) -> Result<bool, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn add_event(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
        _: &[u8],
    ) -> Result<bool, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn events(
        &self,
        _: &embargo::id::ReportId,
    ) -> Result<Vec<embargo::store::PartInfo>, embargo::store::StoreError> {
        Ok(Vec::new())
    }
    fn open_event(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
    ) -> Result<Box<dyn embargo::store::PartReader>, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn create_file(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
    ) -> Result<Box<dyn embargo::store::PartSink>, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn files(
        &self,
        _: &embargo::id::ReportId,
    ) -> Result<Vec<embargo::store::PartInfo>, embargo::store::StoreError> {
        Ok(Vec::new())
    }
    fn open_file(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
    ) -> Result<Box<dyn embargo::store::PartReader>, embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn replace_part(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
        _: &[u8],
        _: &dyn Fn(&[u8], &[u8]) -> bool,
    ) -> Result<(), embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
    fn insert_into_part(
        &self,
        id: &embargo::id::ReportId,
        _: &str,
        _: u64,
        _: u64,
        _: &[u8],
    ) -> Result<(), embargo::store::StoreError> {
        Err(embargo::store::StoreError::NotFound(id.clone()))
    }
}

/// Seals `n` small reports to `certs` in process, into the filesystem
/// store (`disk`) or nowhere; returns reports/s.
fn small_reports(dir: &Path, certs: &[openpgp::Cert], format: &str, n: usize, disk: bool) -> f64 {
    use embargo::config::{Limits, MessageFormat};
    use embargo::seal::{Channel, Role, Sealer};
    let root = dir.join(format!("small-{format}"));
    let secrets = std::sync::Arc::new(
        embargo::keys::IntakeSecrets::load_or_create(&root.join("state"), "bench").unwrap(),
    );
    let fs_store = embargo::store::FsStore::open(&root.join("data")).unwrap();
    let store: &dyn embargo::store::Store = if disk { &fs_store } else { &NullStore };
    let format = match format {
        "compat" => MessageFormat::Compat,
        _ => MessageFormat::Rfc9580,
    };
    let sealer = Sealer::new(
        embargo::keys::Recipients::from_certs(certs.to_vec()),
        secrets,
        format,
        embargo::clock::Clock::system(),
    );
    let raw = embargo::report::RawReport::from_json(
        br#"{"report":{"title":"bench","description":"a small report"}}"#,
    )
    .unwrap();
    let (body, reporter) = raw.validate(&Limits::default()).unwrap();
    let poc = vec![b'x'; 1024];
    let started = std::time::Instant::now();
    for _ in 0..n {
        let mut w = sealer
            .begin(store, embargo::id::ReportId::random(), Channel::Api)
            .unwrap();
        w.add_attachment("poc.txt", "text/plain", Role::Poc, &mut &poc[..], u64::MAX)
            .unwrap();
        w.finish(body.clone(), reporter.clone(), None).unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let mib: usize = std::env::var("EMBARGO_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let small: usize = std::env::var("EMBARGO_BENCH_SMALL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let embargo = env!("CARGO_BIN_EXE_embargo");
    let work = tempfile::Builder::new()
        .prefix("embargo-bench")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = work.path();
    let gnupghome = dir.join("gnupg");
    fs::create_dir(&gnupghome).unwrap();
    fs::set_permissions(
        &gnupghome,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    fs::create_dir(dir.join("keys")).unwrap();

    // Three Cv25519 certificates that advertise SEIPDv2, known to both tools.
    let mut fingerprints = Vec::new();
    let mut certs = Vec::new();
    for i in 0..3 {
        let (cert, _) = CertBuilder::general_purpose(Some(format!("bench {i} <b{i}@example.org>")))
            .set_cipher_suite(CipherSuite::Cv25519)
            .generate()
            .unwrap();
        let armored = cert.armored().to_vec().unwrap();
        fs::write(dir.join("keys").join(format!("k{i}.asc")), &armored).unwrap();
        let mut import = Command::new("gpg")
            .env("GNUPGHOME", &gnupghome)
            .args(["--batch", "--quiet", "--import"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        import.stdin.take().unwrap().write_all(&armored).unwrap();
        assert!(import.wait().unwrap().success());
        fingerprints.push(cert.fingerprint().to_hex());
        certs.push(cert);
    }
    if small > 0 {
        println!(
            "\nSmall reports (text + one 1 KiB attachment) to 3 Cv25519 certificates, in process:"
        );
        for format in ["compat", "rfc9580"] {
            let disk = small_reports(dir, &certs, format, small, true);
            let crypto = small_reports(dir, &certs, format, small, false);
            println!(
                "  {format:<8} {disk:>8.1} reports/s into the store (fsynced), {crypto:>8.1} reports/s sealing only ({small} reports)"
            );
        }
    }
    if mib == 0 {
        return;
    }
    let input = dir.join("input.bin");
    eprintln!("writing {mib} MiB of random data...");
    write_random(&input, mib);
    fs::write(
        dir.join("report.json"),
        br#"{"report":{"title":"bench","description":"bench"}}"#,
    )
    .unwrap();

    // EMBARGO_BEFORE_BIN: an earlier build of embargo, measured in the same
    // run on the same file (the "before" of a before/after table).
    let before = std::env::var_os("EMBARGO_BEFORE_BIN").filter(|b| !b.is_empty());
    let mut runs = vec![
        ("compat", "embargo seal (compat)", embargo.into()),
        ("rfc9580", "embargo seal (rfc9580)", embargo.into()),
    ];
    if let Some(before) = before {
        runs.push(("compat", "before: embargo seal (compat)", before.clone()));
        runs.push(("rfc9580", "before: embargo seal (rfc9580)", before));
    }
    let mut rows = Vec::new();
    for (format, label, binary) in runs {
        let root = dir.join(format);
        fs::create_dir_all(&root).unwrap();
        fs::write(
            root.join("embargo.toml"),
            format!("keys_dir = \"../keys\"\nmessage_format = \"{format}\"\n[limits]\nmax_attachment_bytes = {}\n", (mib as u64 + 1) << 20),
        )
        .unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("seal")
            .arg("-c")
            .arg(root.join("embargo.toml"))
            .arg("--report")
            .arg(dir.join("report.json"))
            .arg(&input);
        let (secs, rss) = measure(cmd);
        rows.push((label.to_string(), secs, rss));
        fs::remove_dir_all(root.join("data")).unwrap();
    }
    // gpg writing to a file and syncing it (embargo fsyncs every part), and
    // without the sync for comparison.
    let mut recipients = String::new();
    for f in &fingerprints {
        recipients.push_str(&format!(" -r {f}"));
    }
    let out = dir.join("gpg.out");
    let gpg = format!(
        "gpg --batch --yes --trust-model always --compress-algo none{recipients} --output '{}' --encrypt '{}'",
        out.display(),
        input.display()
    );
    for (label, script) in [
        (
            "gpg --encrypt --compress-algo none + sync",
            format!("{gpg} && sync '{}'", out.display()),
        ),
        ("gpg --encrypt (no sync)", gpg.clone()),
    ] {
        let _ = fs::remove_file(&out);
        let mut cmd = Command::new("sh");
        cmd.env("GNUPGHOME", &gnupghome).arg("-c").arg(script);
        let (secs, rss) = measure(cmd);
        rows.push((label.into(), secs, rss));
    }
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &gnupghome)
        .args(["--kill", "all"])
        .status();

    let gpg_rate = mib as f64
        / rows
            .iter()
            .find(|r| r.0.ends_with("+ sync"))
            .expect("the gpg row")
            .1;
    println!("\nSealing {mib} MiB to 3 Cv25519 certificates (same file, same keys, one run):");
    println!(
        "{:<38} {:>9} {:>10} {:>13} {:>9}",
        "tool", "seconds", "MiB/s", "peak RSS MiB", "vs gpg"
    );
    for (name, secs, rss) in &rows {
        let rate = mib as f64 / secs;
        println!(
            "{name:<38} {secs:>9.2} {rate:>10.1} {rss:>13.1} {:>8.2}x",
            rate / gpg_rate
        );
    }
    println!(
        "(\"vs gpg\" is against gpg writing to a file and syncing it; embargo fsyncs every part and the directories.)"
    );
}
