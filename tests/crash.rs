//! Crash trials, short form (the full run is `bench/crash-trials`): the real
//! `embargo serve` is SIGKILLed at random moments while concurrent clients
//! upload reports with a canary in every field, file name and file, then
//! restarted. After every restart: each report that got a 201 is listed and
//! decrypts (`embargo decrypt --key`) to the exact bytes sent; everything
//! listed (directory and `GET /api/v1/sealed`) is complete and decrypts; no
//! staging is left; the canary is nowhere on disk or in the log.

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Decrypt, Site, armored_public, armored_secret, files_containing, random_bytes, sequoia_key,
};
use rand::Rng;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;
use server::Server;
use sha2::{Digest, Sha256};

const TRIALS: usize = 5;
const CLIENTS: usize = 3;
const MAX_FILE: usize = 256 * 1024;
const TOKEN: &str = "crash-trial-token-0123456789";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// name -> (size, sha256)
type Files = BTreeMap<String, (u64, String)>;

/// Uploads reports until `stop` is set or the server goes away; pushes
/// (id, files sent) for every 201.
fn client_loop(
    base: String,
    canary: String,
    n: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Files)>>>,
) {
    let http = server::client();
    let mut rng = rand::thread_rng();
    let mut k = 0;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let json = serde_json::json!({
            "report": {
                "title": format!("title {canary}"),
                "description": format!("description {canary}"),
                "affected_versions": format!("versions {canary}"),
                "environment": format!("environment {canary}"),
                "impact": format!("impact {canary}"),
                "steps_to_reproduce": format!("steps {canary}"),
                "mitigations": format!("mitigations {canary}"),
                "severity": "high",
            },
            "reporter": {"name": format!("name {canary}"), "email": format!("{canary}@example.org"), "credit": "name"}
        });
        let mut form = Form::new().part(
            "report",
            Part::bytes(serde_json::to_vec(&json).unwrap())
                .mime_str("application/json")
                .unwrap(),
        );
        let mut sent = Files::new();
        for i in 0..rng.gen_range(0..3) {
            let len = rng.gen_range(0..MAX_FILE);
            let mut bytes = random_bytes(len, rng.r#gen());
            let c = canary.as_bytes();
            let m = c.len().min(bytes.len());
            bytes[..m].copy_from_slice(&c[..m]);
            let name = format!("{canary}-{n}-{k}-{i}.bin");
            sent.insert(name.clone(), (len as u64, sha256_hex(&bytes)));
            form = form.part("attachment", Part::bytes(bytes).file_name(name));
        }
        let Ok(r) = http
            .post(format!("{base}/api/v1/reports"))
            .multipart(form)
            .send()
        else {
            return;
        };
        if r.status() != 201 {
            continue;
        }
        let Ok(body) = r.json::<Value>() else { return };
        let id = body["id"].as_str().unwrap().to_string();
        let said: Files = body["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    (
                        a["size"].as_u64().unwrap(),
                        a["sha256"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        assert_eq!(said, sent, "the 201 answer lists what was sent");
        acked.lock().unwrap().push((id, sent));
    }
}

/// Decrypts report `id` with the binary; (manifest JSON, files by name).
fn decrypt(site: &Site, secret: &Path, id: &str, out_root: &Path) -> (Value, Files) {
    let out = out_root.join(id);
    let o = Decrypt::new(site, id).key(secret).out(&out).run();
    assert!(
        o.status.success(),
        "embargo decrypt {id}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = out.join(id);
    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut files = Files::new();
    for a in manifest["attachments"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let bytes = fs::read(dir.join(name)).unwrap();
        files.insert(name.to_string(), (bytes.len() as u64, sha256_hex(&bytes)));
    }
    fs::remove_dir_all(&out).unwrap();
    (manifest, files)
}

/// The invariants after a restart; returns how many acknowledged reports
/// were newly verified.
fn check_after_restart(
    site: &Site,
    srv: &Server,
    secret: &Path,
    out_root: &Path,
    acked: &BTreeMap<String, Files>,
    verified: &mut BTreeSet<String>,
    canary: &str,
) -> usize {
    let dirs: Vec<_> = ["reports/.staging", "reports/.trash"]
        .iter()
        .flat_map(|sub| {
            fs::read_dir(site.store_dir().join(sub))
                .into_iter()
                .flatten()
        })
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    assert!(dirs.is_empty(), "left after restart: {dirs:?}");

    let on_disk = site.report_ids();
    let list: Value = server::client()
        .get(srv.url("/api/v1/sealed"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut listed = Vec::new();
    for r in list["reports"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap().to_string();
        let parts: Vec<&str> = r["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            parts.contains(&"manifest.pgp"),
            "{id} listed incomplete: {parts:?}"
        );
        listed.push(id);
    }
    listed.sort();
    assert_eq!(listed, on_disk, "the API lists what the directory holds");
    for id in acked.keys() {
        assert!(on_disk.contains(id), "acknowledged report {id} is gone");
    }

    let mut newly = 0;
    for id in &on_disk {
        if !verified.insert(id.clone()) {
            continue;
        }
        let (manifest, files) = decrypt(site, secret, id, out_root);
        assert!(
            manifest["report"]["title"]
                .as_str()
                .unwrap()
                .contains(canary)
        );
        assert!(
            manifest["reporter"]["email"]
                .as_str()
                .unwrap()
                .contains(canary)
        );
        match acked.get(id) {
            Some(sent) => {
                assert_eq!(&files, sent, "{id} decrypts to what was sent");
                newly += 1;
            }
            None => {
                // Killed between commit and answer: complete all the same.
                for a in manifest["attachments"].as_array().unwrap() {
                    let name = a["name"].as_str().unwrap();
                    assert_eq!(
                        files[name],
                        (
                            a["size"].as_u64().unwrap(),
                            a["sha256"].as_str().unwrap().to_string()
                        )
                    );
                }
            }
        }
    }
    let hits = files_containing(site.path(), canary.as_bytes());
    assert!(hits.is_empty(), "canary on disk: {hits:?}");
    assert!(
        !srv.logs.text().contains(canary),
        "canary in the server log"
    );
    newly
}

#[test]
fn sigkill_during_concurrent_uploads_loses_and_leaks_nothing() {
    let started = Instant::now();
    let site = Site::new();
    let cert = sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &armored_public(&cert));
    let keyfile = tempfile::tempdir().unwrap();
    let secret = keyfile.path().join("secret.asc");
    fs::write(&secret, armored_secret(&cert)).unwrap();
    let out_root = keyfile.path().join("out");
    fs::create_dir(&out_root).unwrap();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [\"{}\"]\n[limits]\nrate_limit_per_minute = 100000\n",
        sha256_hex(TOKEN.as_bytes())
    ));
    let canary = format!("cnry{}", hex::encode(rand::random::<[u8; 10]>()));
    let mut rng = rand::thread_rng();
    let mut acked_all: BTreeMap<String, Files> = BTreeMap::new();
    let mut verified = BTreeSet::new();
    let mut verified_acked = 0;
    let mut attempted_trials = 0;

    for _ in 0..TRIALS {
        let srv = Server::start(&site);
        verified_acked += check_after_restart(
            &site,
            &srv,
            &secret,
            &out_root,
            &acked_all,
            &mut verified,
            &canary,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (base, canary, stop, acked) = (
                    srv.base.clone(),
                    canary.clone(),
                    stop.clone(),
                    acked.clone(),
                );
                std::thread::spawn(move || client_loop(base, canary, n, stop, acked))
            })
            .collect();
        // A random moment is the point: the kill lands anywhere in the uploads.
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..1500)));
        srv.signal("KILL");
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("a client thread panicked");
        }
        drop(srv); // reaps the killed process
        acked_all.extend(acked.lock().unwrap().drain(..));
        attempted_trials += 1;
    }
    let srv = Server::start(&site);
    verified_acked += check_after_restart(
        &site,
        &srv,
        &secret,
        &out_root,
        &acked_all,
        &mut verified,
        &canary,
    );
    assert_eq!(verified_acked, acked_all.len(), "every 201 was verified");
    assert!(
        !acked_all.is_empty(),
        "some uploads must have been acknowledged for the trial to mean anything"
    );
    eprintln!(
        "{attempted_trials} trials, {} acknowledged and verified, {} reports on disk, {:.1} s",
        acked_all.len(),
        site.report_ids().len(),
        started.elapsed().as_secs_f64()
    );
}
