//! `cargo bench --bench seipd`: seals one large random attachment in the
//! `compat` format (SEIPDv1) to one Cv25519 certificate, in process into a
//! sink that drops it, once with Sequoia's writer and once with embargo's
//! own OpenSSL writer, and runs `gpg --encrypt --compress-algo none` on the
//! same bytes to /dev/null. Prints MB/s, one run each; asserts nothing.
//!
//! `EMBARGO_BENCH_MIB` sets the size (default 256).

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use embargo::config::MessageFormat;
use embargo::keys::Recipients;
use embargo::seal::Seipd1Engine;
use embargo::seal::writer::seal_stream_with;
use embargo::store::{PartSink, StoreError};
use openpgp::cert::prelude::*;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

/// Counts what it is given and drops it.
struct NullSink(u64);

impl Write for NullSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PartSink for NullSink {
    fn finish(self: Box<Self>) -> Result<u64, StoreError> {
        Ok(self.0)
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn main() {
    let mib: usize = std::env::var("EMBARGO_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let bytes = mib * 1024 * 1024;
    let mb = bytes as f64 / 1e6;
    let (cert, _) = CertBuilder::general_purpose(Some("bench <b@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()
        .unwrap();
    let recipients = Recipients::from_certs(vec![cert.clone()]);
    let input = random(bytes);

    println!(
        "\nSealing {mib} MiB (compat, SEIPDv1, AES-256) to one Cv25519 certificate, one run each:"
    );
    println!("{:<44} {:>9} {:>9}", "writer", "seconds", "MB/s");
    let mut rates = Vec::new();
    for (name, engine) in [
        (
            "embargo, Sequoia's writer (SHA-1 CD)",
            Seipd1Engine::Sequoia,
        ),
        ("embargo, own writer (OpenSSL EVP)", Seipd1Engine::Openssl),
    ] {
        let started = Instant::now();
        let (size, _, stored) = seal_stream_with(
            engine,
            &recipients,
            MessageFormat::Compat,
            SystemTime::now(),
            &mut &input[..],
            u64::MAX,
            Box::new(NullSink(0)),
        )
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(size as usize, bytes);
        assert!(stored as usize > bytes);
        rates.push(mb / secs);
        println!("{name:<44} {secs:>9.2} {:>9.1}", mb / secs);
    }

    if Command::new("gpg").arg("--version").output().is_err() {
        println!("(gpg not installed: no comparison)");
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("eb")
        .tempdir_in("/tmp")
        .unwrap();
    let home = work.path().join("g");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let file = work.path().join("input.bin");
    fs::write(&file, &input).unwrap();
    drop(input);
    let mut import = Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--batch", "--quiet", "--import"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let armored = cert.armored().to_vec().unwrap();
    import.stdin.take().unwrap().write_all(&armored).unwrap();
    assert!(import.wait().unwrap().success());
    let started = Instant::now();
    let status = Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--batch", "--yes", "--trust-model", "always"])
        .args(["--compress-algo", "none", "--cipher-algo", "AES256"])
        .arg("-r")
        .arg(cert.fingerprint().to_hex())
        .args(["--output", "/dev/null", "--encrypt"])
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success());
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "all"])
        .status();
    println!(
        "{:<44} {secs:>9.2} {:>9.1}",
        "gpg --encrypt --compress-algo none",
        mb / secs
    );
    println!(
        "own writer: {:.2}x Sequoia's, {:.2}x gpg's (gpg reads a cached file, embargo memory)",
        rates[1] / rates[0],
        rates[1] / (mb / secs)
    );
}
