//! `embargo fetch` against a real `embargo serve` on 127.0.0.1: complete
//! copies, nothing twice, a SIGKILL mid-download resumed to an identical
//! store, and a wrong token that gets a 401 and writes nothing; and a lying
//! stand-in server (hostile IDs, part names, sizes) that gets nothing stored.

mod common;
#[path = "common/server.rs"]
mod server;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use embargo::id::ReportId;
use server::Server;

/// Every file under `root/reports` except staging and trash, with its bytes.
fn report_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let reports = root.join("reports");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&reports) else {
        return out;
    };
    for dir in rd.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        for part in fs::read_dir(dir.path()).unwrap().flatten() {
            out.push((
                format!("{name}/{}", part.file_name().to_string_lossy()),
                fs::read(part.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fetch_cmd(site: &Site, url: &str, token: &Path, local: &Path) -> Command {
    let mut cmd = site.embargo();
    cmd.args(["fetch", "--from", url, "--token-file"])
        .arg(token)
        .arg("--store")
        .arg(local);
    cmd
}

/// Runs a fetch and kills it (SIGKILL) while the large part is half downloaded.
/// Returns false if the download finished before it could be caught.
fn fetch_killed_midway(
    site: &Site,
    url: &str,
    token: &Path,
    local: &Path,
    big: &ReportId,
    big_size: u64,
) -> bool {
    let mut child = fetch_cmd(site, url, token, local)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = local
        .join(".fetch-partial")
        .join(big.as_str())
        .join("001.pgp");
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught = loop {
        let size = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size < big_size / 2 {
            child.kill().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break false;
        }
        // Not wait_until: the kill must land while the part is partial,
        // which a 50 ms step can miss.
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = child.kill();
    child.wait().unwrap();
    caught
}

#[test]
fn fetch_copies_everything_once_resumes_after_a_kill_and_refuses_a_wrong_token() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    site.add_key("maint.asc", &armored_public(&maintainer));
    let token = embargo::reveal::new_token();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\n{}\n",
        token.config_line
    ));
    let big_bytes = random_bytes(96 << 20, 3);
    let big = seal_report(&site, &[("big.bin", &big_bytes), ("small.txt", b"small")]);
    let small = seal_report(&site, &[("a.txt", b"a")]);
    let empty = seal_report(&site, &[]);
    let big_size = fs::metadata(site.reports_dir().join(big.as_str()).join("001.pgp"))
        .unwrap()
        .len();

    let server = Server::start_with_env(&site, &[("EMBARGO_LOG", "warn")]);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    let good = work.path().join("token");
    fs::write(&good, format!("{}\n", token.token.as_str())).unwrap();
    let bad = work.path().join("bad-token");
    fs::write(&bad, embargo::reveal::new_token().token.as_str()).unwrap();

    // A wrong token: 401, a clear message, nothing written at all.
    let run = fetch_cmd(&site, &server.base, &bad, &local)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("refused the fetch token (401)"),
        "{}",
        stderr(&run)
    );
    assert!(
        !local.exists(),
        "a refused fetch created {}",
        local.display()
    );
    let direct = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/sealed", server.base))
        .bearer_auth("nope")
        .send()
        .unwrap();
    assert_eq!(direct.status().as_u16(), 401);

    // Killed in the middle of the large part: nothing half-done is visible.
    let mut caught = false;
    for _ in 0..5 {
        if fetch_killed_midway(&site, &server.base, &good, &local, &big, big_size) {
            caught = true;
            break;
        }
        fs::remove_dir_all(&local).unwrap();
    }
    assert!(
        caught,
        "could not interrupt the download of {big_size} bytes"
    );
    let local_store = embargo::store::FsStore::open(&local).unwrap();
    use embargo::store::Store;
    assert!(!local_store.contains(&big).unwrap());
    assert!(!local.join("reports").join(big.as_str()).exists());
    let partial_dir = local.join(".fetch-partial");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&partial_dir).unwrap().permissions())
            & 0o777,
        0o700
    );
    let partial = fs::metadata(partial_dir.join(big.as_str()).join("001.pgp"))
        .unwrap()
        .len();
    // Whatever was committed before the kill is complete and identical.
    let server_files = report_files(&site.store_dir());
    for (name, bytes) in report_files(&local) {
        let theirs = server_files
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not on the server"));
        assert_eq!(&theirs.1, &bytes, "{name}");
    }

    // Rerun: resumes the partial part with Range, ends identical.
    let run = fetch_cmd(&site, &server.base, &good, &local)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains(big.as_str()));
    let total: u64 = server_files.iter().map(|(_, b)| b.len() as u64).sum();
    let moved: u64 = stderr(&run)
        .split("new report(s) (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        moved <= total - partial,
        "the rerun downloaded {moved} bytes, the partial {partial} should have been kept:\n{}",
        stderr(&run)
    );
    assert_eq!(report_files(&local), server_files);
    let mut ids = local_store.list().unwrap();
    ids.sort();
    let mut want = vec![big.clone(), small.clone(), empty.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(
        tree_is_empty(&partial_dir),
        "partial downloads left: {:?}",
        fs::read_dir(&partial_dir).unwrap().collect::<Vec<_>>()
    );
    assert!(
        fs::read_dir(local.join("reports/.staging"))
            .unwrap()
            .next()
            .is_none()
    );

    // A second run gets nothing.
    let run = fetch_cmd(&site, &server.base, &good, &local)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        run.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(
        stderr(&run).contains("fetched 0 new report(s) (0 bytes); 3 already here"),
        "{}",
        stderr(&run)
    );

    // A new report on the server: exactly that one comes.
    let newer = seal_report(&site, &[("n.txt", b"new")]);
    let run = fetch_cmd(&site, &server.base, &good, &local)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), newer.as_str());
    assert_eq!(report_files(&local), report_files(&site.store_dir()));

    // What was fetched decrypts and verifies.
    let key = work.path().join("maint.asc");
    fs::write(&key, armored_secret(&maintainer)).unwrap();
    let signer = work.path().join("signer.asc");
    fs::write(&signer, armored_public(&site.signing_cert())).unwrap();
    let out = work.path().join("out");
    let run = Decrypt::target(&site, big.as_str())
        .store(&local)
        .key(&key)
        .signer(&signer)
        .out(&out)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(fs::read(out.join(big.as_str()).join("big.bin")).unwrap() == big_bytes);
    drop(server);
}

fn tree_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|rd| rd.flatten().all(|e| e.file_name() == ".lock"))
        .unwrap_or(true)
}

/// A lying HTTP server on 127.0.0.1: answers every request from `respond`
/// (path → status, body). Stops with the test process.
fn lying_server(respond: impl Fn(&str) -> (u16, Vec<u8>) + Send + 'static) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            // These mock intakes predate cases: no event routes, no public
            // certificate files (a real intake's are tested in tests/case.rs).
            let older =
                path.ends_with("/events") || path == "/keys.asc" || path == "/signing-key.asc";
            let (status, body) = if older {
                (404, b"{}".to_vec())
            } else {
                respond(&path)
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

#[test]
fn a_lying_server_gets_nothing_into_the_store() {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    fs::write(&token, "embargo_test").unwrap();
    let id = ReportId::random();

    // Hostile IDs and part names: refused before anything is written.
    for listing in [
        r#"{"reports":[{"id":"../../../tmp/x","parts":[{"name":"manifest.pgp","size":1}]}]}"#
            .to_string(),
        format!(
            r#"{{"reports":[{{"id":"{id}","parts":[{{"name":"manifest.pgp","size":1}},{{"name":"../../x","size":1}}]}}]}}"#
        ),
        format!(r#"{{"reports":[{{"id":"{id}","parts":[{{"name":"/etc/passwd","size":1}}]}}]}}"#),
        "not json".to_string(),
    ] {
        let url = lying_server(move |_| (200, listing.clone().into_bytes()));
        let local = work.path().join("hostile");
        let run = fetch_cmd(&site, &url, &token, &local).output().unwrap();
        assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
        assert!(
            stderr(&run).contains("the server sent something embargo does not accept"),
            "{}",
            stderr(&run)
        );
        assert!(!local.exists(), "{}", local.display());
    }

    // A part longer than listed: refused, no report visible, nothing staged.
    let listing = format!(
        r#"{{"reports":[{{"id":"{id}","parts":[{{"name":"manifest.pgp","size":10}},{{"name":"001.pgp","size":5}}]}}]}}"#
    );
    let url = lying_server(move |path| {
        if path == "/api/v1/sealed" {
            (200, listing.clone().into_bytes())
        } else {
            (200, vec![7u8; 20])
        }
    });
    let local = work.path().join("long");
    let run = fetch_cmd(&site, &url, &token, &local).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("expected from the listing") || stderr(&run).contains("longer than"),
        "{}",
        stderr(&run)
    );
    assert!(report_files(&local).is_empty());
    assert!(
        fs::read_dir(local.join("reports/.staging"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(!local.join("reports").join(id.as_str()).exists());
}

#[test]
fn a_token_file_without_the_token_on_its_first_line_is_refused_clearly() {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    for (content, why) in [
        (
            "token_sha256 = [\"00\"]\nembargo_x\n".to_string(),
            "its first line is the server's token_sha256 setting, not the token",
        ),
        (
            format!("{}\n", "b".repeat(64)),
            "its first line looks like the token's SHA-256 (what the server keeps), not the token",
        ),
        ("\n\n".to_string(), "it is empty"),
    ] {
        let token = work.path().join("token.txt");
        fs::write(&token, &content).unwrap();
        // Port 9 (discard) is never contacted: the token is read first.
        let run = fetch_cmd(&site, "http://127.0.0.1:9", &token, &local)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
        assert_eq!(
            stderr(&run),
            format!(
                "embargo: error: {} does not hold a fetch token: {why}; put only the token printed by `embargo token new` on its first line\n",
                token.display()
            )
        );
        assert!(run.stdout.is_empty());
        assert!(!local.exists());
    }
}

/// A child process killed (by PID) and reaped on drop, even when a test fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` and waits for it to exit, at most `limit`; its output and how long it took.
fn run_within(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Running(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_exit(&mut child.0, limit).is_some(),
        "the command still runs after {limit:?}"
    );
    let took = started.elapsed();
    let out = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    (out, took)
}

/// A server on 127.0.0.1 that accepts and then says nothing, holding each
/// connection until the client closes it.
fn silent_server() -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    url
}

/// Serves `listing` on /api/v1/sealed; every part request gets headers
/// announcing `size` bytes, then 3 bytes, then silence until the client
/// closes.
fn stalling_part_server(listing: String, size: usize) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let listing = listing.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                if text.starts_with("GET /api/v1/sealed ") {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{listing}",
                        listing.len()
                    );
                    return;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\nabc"
                );
                let _ = stream.flush();
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    url
}

#[test]
fn a_stalling_server_fails_the_fetch_with_a_clear_message_within_the_timeout() {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    fs::write(&token, "embargo_test\n").unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let local = work.path().join("local");

    // A zero timeout is a usage error, not a run that fails at once.
    let mut cmd = fetch_cmd(&site, "http://127.0.0.1:9", &token, &local);
    let run = cmd.args(["--timeout", "0s"]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(
        stderr(&run),
        "embargo: error: --timeout 0s would fail every request: give e.g. 60s or 5m\n"
    );

    // Accepts, never answers.
    let url = silent_server();
    let mut cmd = fetch_cmd(&site, &url, &token, &local);
    cmd.args(["--timeout", "2s"]);
    let (out, took) = run_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "embargo: error: fetching from {url}/api/v1/sealed failed: the server sent nothing for 2 s before answering (--timeout); run again later, or raise --timeout\n"
        )
    );
    assert!(!local.exists());

    // Sends a part's headers and 3 bytes, then stalls.
    let id = ReportId::random();
    let listing =
        format!(r#"{{"reports":[{{"id":"{id}","parts":[{{"name":"manifest.pgp","size":10}}]}}]}}"#);
    let url = stalling_part_server(listing, 10);
    let mut cmd = fetch_cmd(&site, &url, &token, &local);
    cmd.args(["--timeout", "2s"]);
    let (out, _) = run_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "embargo: error: fetching from {url}/api/v1/sealed/{id}/manifest.pgp failed: the server sent nothing for 2 s after 3 bytes of the answer (--timeout); run again later, or raise --timeout\n"
        )
    );
    // Nothing half-done is visible; the 3 bytes wait to be resumed.
    assert!(report_files(&local).is_empty());
    assert_eq!(
        fs::read(
            local
                .join(".fetch-partial")
                .join(id.as_str())
                .join("manifest.pgp")
        )
        .unwrap(),
        b"abc"
    );
}

/// A listing of `reports`, each with a 10-byte manifest and a 5-byte
/// attachment, served with matching bodies.
fn small_reports_server(reports: &[ReportId]) -> String {
    let listing = format!(
        r#"{{"reports":[{}]}}"#,
        reports
            .iter()
            .map(|id| format!(
                r#"{{"id":"{id}","parts":[{{"name":"manifest.pgp","size":10}},{{"name":"001.pgp","size":5}}]}}"#
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    lying_server(move |path| {
        if path == "/api/v1/sealed" {
            (200, listing.clone().into_bytes())
        } else if path.ends_with("/manifest.pgp") {
            (200, b"MANIFEST!!".to_vec())
        } else {
            (200, b"PART!".to_vec())
        }
    })
}

#[test]
fn symlinks_planted_in_the_partial_directory_are_refused_and_nothing_outside_changes() {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    fs::write(&token, "embargo_test\n").unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let id = ReportId::random();
    let url = small_reports_server(std::slice::from_ref(&id));
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, b"precious data").unwrap();
    use std::os::unix::fs::{PermissionsExt, symlink};
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();

    let refused = |local: &Path, planted: &Path| {
        let run = fetch_cmd(&site, &url, &token, local).output().unwrap();
        assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
        assert_eq!(
            stderr(&run),
            format!(
                "embargo: error: {} is a symbolic link or not what embargo made there: embargo never follows links inside a store; remove it (nothing outside was touched) and run again\n",
                planted.display()
            )
        );
        assert!(run.stdout.is_empty());
        assert_eq!(fs::read(&victim).unwrap(), b"precious data");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            1,
            "something was written outside the store"
        );
        assert_eq!(
            fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(!local.join("reports").join(id.as_str()).exists());
    };

    // A part being resumed is a link to a file outside.
    let local = work.path().join("a");
    let partial = local.join(".fetch-partial").join(id.as_str());
    fs::create_dir_all(&partial).unwrap();
    symlink(&victim, partial.join("manifest.pgp")).unwrap();
    refused(&local, &partial.join("manifest.pgp"));

    // The report's partial directory is a link to a directory outside.
    let local = work.path().join("b");
    fs::create_dir_all(local.join(".fetch-partial")).unwrap();
    let planted = local.join(".fetch-partial").join(id.as_str());
    symlink(&outside, &planted).unwrap();
    refused(&local, &planted);

    // The partial directory itself is a link.
    let local = work.path().join("c");
    fs::create_dir_all(&local).unwrap();
    let planted = local.join(".fetch-partial");
    symlink(&outside, &planted).unwrap();
    refused(&local, &planted);

    // The lock file is a link.
    let local = work.path().join("d");
    fs::create_dir_all(local.join(".fetch-partial")).unwrap();
    let planted = local.join(".fetch-partial").join(".lock");
    symlink(&victim, &planted).unwrap();
    refused(&local, &planted);

    // The store's staging directory is a link.
    let local = work.path().join("e");
    fs::create_dir_all(local.join("reports")).unwrap();
    let planted = local.join("reports").join(".staging");
    symlink(&outside, &planted).unwrap();
    refused(&local, &planted);

    // The store's reports directory itself is a link.
    let local = work.path().join("g");
    fs::create_dir_all(&local).unwrap();
    let planted = local.join("reports");
    symlink(&outside, &planted).unwrap();
    refused(&local, &planted);

    // A report directory is a link to a copy elsewhere: never hashed and
    // confirmed to an intake that would then delete its own copy.
    let elsewhere = work.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("manifest.pgp"), b"MANIFEST!!").unwrap();
    fs::write(elsewhere.join("001.pgp"), b"PART!").unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listing = format!(
        r#"{{"confirm_fetched":true,"reports":[{{"id":"{id}","parts":[{{"name":"manifest.pgp","size":10}},{{"name":"001.pgp","size":5}}]}}]}}"#
    );
    let confirming = {
        let asked = asked.clone();
        lying_server(move |path| {
            asked.lock().unwrap().push(path.to_string());
            if path == "/api/v1/sealed" {
                (200, listing.clone().into_bytes())
            } else {
                (200, b"{}".to_vec())
            }
        })
    };
    let local = work.path().join("h");
    fs::create_dir_all(local.join("reports")).unwrap();
    let planted = local.join("reports").join(id.as_str());
    symlink(&elsewhere, &planted).unwrap();
    let run = fetch_cmd(&site, &confirming, &token, &local)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(
        stderr(&run),
        format!(
            "embargo: error: {} is a symbolic link or not what embargo made there: embargo never follows links inside a store; remove it (nothing outside was touched) and run again\n",
            planted.display()
        )
    );
    assert_eq!(*asked.lock().unwrap(), vec!["/api/v1/sealed".to_string()]);

    // Without the links, the same fetch works.
    let local = work.path().join("f");
    let run = fetch_cmd(&site, &url, &token, &local).output().unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read(local.join("reports").join(id.as_str()).join("001.pgp")).unwrap(),
        b"PART!"
    );
}

#[test]
fn the_byte_cap_stops_the_run_between_reports_and_leaves_the_store_consistent() {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    fs::write(&token, "embargo_test\n").unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let first = ReportId::random();
    let second = ReportId::random();
    let url = small_reports_server(&[first.clone(), second.clone()]);
    let local = work.path().join("local");

    // Each report is 15 bytes: 20 allows the first only.
    let mut cmd = fetch_cmd(&site, &url, &token, &local);
    cmd.args(["--max-bytes", "20"]);
    let run = cmd.output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout), format!("{first}\n"));
    assert_eq!(
        stderr(&run),
        format!(
            "embargo: fetched 1 new report(s) (15 bytes); 0 already here\n\
             embargo: error: stopped before report {second}: fetching it would take this run past --max-bytes 20 (15 bytes fetched); the reports fetched are complete in the store: run again to fetch the rest, or raise --max-bytes\n"
        )
    );
    let files: Vec<String> = report_files(&local).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        files,
        vec![format!("{first}/001.pgp"), format!("{first}/manifest.pgp")]
    );
    assert!(
        fs::read_dir(local.join("reports/.staging"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(tree_is_empty(&local.join(".fetch-partial")));

    // The next run (default cap) fetches the rest.
    let run = fetch_cmd(&site, &url, &token, &local).output().unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout), format!("{second}\n"));
    assert_eq!(report_files(&local).len(), 4);
}

/// The SHA-256 of every part of `id` in the store at `root`, as hex.
fn part_hashes(root: &Path, id: &ReportId) -> serde_json::Map<String, serde_json::Value> {
    use sha2::Digest;
    let mut out = serde_json::Map::new();
    for entry in fs::read_dir(root.join("reports").join(id.as_str())).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if embargo::store::is_part_name(&name) {
            let digest = hex::encode(sha2::Sha256::digest(fs::read(entry.path()).unwrap()));
            out.insert(name, digest.into());
        }
    }
    out
}

#[test]
fn delete_after_fetch_deletes_only_what_embargo_fetch_confirmed_by_hash() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    site.add_key("maint.asc", &armored_public(&maintainer));
    let work = tempfile::tempdir().unwrap();
    // The maintainer's token, made the documented way.
    let token_file = work.path().join("token.txt");
    let made = site
        .embargo()
        .args(["token", "new", "--out"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let entry = stderr(&made).lines().last().unwrap().to_string();
    let token = fs::read_to_string(&token_file).unwrap().trim().to_string();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [\n  \"{}\",\n  {entry}\n]\n[retention]\ndelete_after_fetch = true\n",
        "c".repeat(64)
    ));
    let poc = random_bytes(300_000, 9);
    let report = seal_report(&site, &[("poc.bin", &poc), ("notes.txt", b"notes")]);
    let with_case = seal_report(&site, &[("b.txt", b"b")]);
    // Only a closed case may go: `report` is closed by the maintainer's
    // signed case status; `with_case`, which has events, was never closed.
    fs::create_dir(site.reports_dir().join(with_case.as_str()).join("events")).unwrap();
    let server = Server::start_with_env(&site, &[("EMBARGO_LOG", "warn")]);
    let closed = embargo::case::status::CaseStatus {
        schema: embargo::case::status::SCHEMA.into(),
        report: report.clone(),
        at: embargo::clock::rfc3339_micros(std::time::SystemTime::now()),
        state: embargo::case::Stage::Closed,
        events: Vec::new(),
        due: Default::default(),
    }
    .sign(&embargo::case::Author::Key(Box::new(maintainer.clone())))
    .unwrap();
    let put = reqwest::blocking::Client::new()
        .put(format!("{}/api/v1/sealed/{report}/status", server.base))
        .bearer_auth(&token)
        .body(closed)
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let rules = embargo::config::Config::parse("[retention]\ndelete_after_fetch = true\n")
        .unwrap()
        .retention;
    let retention_pass = || {
        embargo::retention::apply(
            &site.store(),
            &site.state_dir(),
            &rules,
            std::time::SystemTime::now(),
        )
        .unwrap()
    };
    let client = reqwest::blocking::Client::new();
    let part_url = |id: &ReportId, part: &str| format!("{}/api/v1/sealed/{id}/{part}", server.base);
    let parts = ["manifest.pgp", "001.pgp", "002.pgp"];

    // Range requests for the last byte, whole downloads and aborted ones:
    // bytes served are not a confirmation, nothing is marked or deleted.
    for part in parts {
        for range in ["bytes=-1", "bytes=0-", "bytes=5-"] {
            let got = client
                .get(part_url(&report, part))
                .bearer_auth(&token)
                .header("Range", range)
                .send()
                .unwrap();
            assert_eq!(got.status().as_u16(), 206, "{part} {range}");
            assert!(!got.bytes().unwrap().is_empty());
        }
        let whole = client
            .get(part_url(&report, part))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(whole.status().as_u16(), 200);
        assert_eq!(
            whole.bytes().unwrap().to_vec(),
            fs::read(site.reports_dir().join(report.as_str()).join(part)).unwrap()
        );
        let mut aborted = client
            .get(part_url(&report, part))
            .bearer_auth(&token)
            .send()
            .unwrap();
        let mut first = [0u8; 4];
        std::io::Read::read_exact(&mut aborted, &mut first).unwrap();
        drop(aborted);
    }
    assert!(retention_pass().is_empty());
    assert!(
        !site
            .state_dir()
            .join(embargo::retention::FETCHED_DIR)
            .exists()
    );

    // Confirmations that do not match the store: refused, nothing marked.
    let confirm_url = format!("{}/api/v1/sealed/{report}/fetched", server.base);
    let good = part_hashes(&site.store_dir(), &report);
    let mut wrong = good.clone();
    wrong.insert("001.pgp".into(), "0".repeat(64).into());
    let mut missing = good.clone();
    missing.remove("002.pgp");
    let mut extra = good.clone();
    extra.insert("003.pgp".into(), "0".repeat(64).into());
    for (body, status, code, says) in [
        (
            serde_json::json!({ "parts": wrong }).to_string(),
            409,
            "confirmation_mismatch",
            "the SHA-256 of 001.pgp differs from the stored ciphertext",
        ),
        (
            serde_json::json!({ "parts": missing }).to_string(),
            409,
            "confirmation_mismatch",
            "the report has parts 001.pgp, 002.pgp, manifest.pgp, the confirmation names 001.pgp, manifest.pgp",
        ),
        (
            serde_json::json!({ "parts": extra }).to_string(),
            409,
            "confirmation_mismatch",
            "the confirmation names 001.pgp, 002.pgp, 003.pgp, manifest.pgp",
        ),
        (
            r#"{"parts":{"../x":"00"}}"#.to_string(),
            400,
            "invalid_confirmation",
            "\"../x\" is not a part name",
        ),
        (
            r#"{"parts":{"001.pgp":"xyz"}}"#.to_string(),
            400,
            "invalid_confirmation",
            "the SHA-256 of 001.pgp is not 64 hex digits",
        ),
        (
            "not json".to_string(),
            400,
            "invalid_confirmation",
            "the body is not",
        ),
    ] {
        let answer = client
            .post(&confirm_url)
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{body}");
        let json: serde_json::Value = answer.json().unwrap();
        assert_eq!(json["error"]["code"], code, "{body}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // Without the token, or for a report that does not exist: refused too.
    let anonymous = client
        .post(&confirm_url)
        .json(&serde_json::json!({ "parts": good }))
        .send()
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let unknown = client
        .post(format!(
            "{}/api/v1/sealed/{}/fetched",
            server.base,
            ReportId::random()
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "parts": good }))
        .send()
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(retention_pass().is_empty());
    assert!(
        !site
            .state_dir()
            .join(embargo::retention::FETCHED_DIR)
            .exists()
    );
    assert_eq!(site.report_ids().len(), 2);

    // A real `embargo fetch`: it stores, confirms, and only then the
    // server's copy goes; the open case stays.
    let local = work.path().join("local");
    let server_bytes: u64 = [&report, &with_case]
        .iter()
        .flat_map(|id| fs::read_dir(site.reports_dir().join(id.as_str())).unwrap())
        .map(|e| e.unwrap())
        .filter(|e| embargo::store::is_part_name(&e.file_name().to_string_lossy()))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let run = fetch_cmd(&site, &server.base, &token_file, &local)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        stderr(&run),
        format!(
            "embargo: fetched 2 new report(s) ({server_bytes} bytes); 0 already here\n\
             embargo: confirmed 2 stored report(s) to the intake, which may now delete its copies\n"
        )
    );
    assert_eq!(part_hashes(&local, &report), good);
    assert_eq!(retention_pass(), vec![report.clone()]);
    assert_eq!(site.report_ids(), vec![with_case.to_string()]);

    // The local copy decrypts and verifies.
    let key = work.path().join("maint.asc");
    fs::write(&key, armored_secret(&maintainer)).unwrap();
    let signer = work.path().join("signer.asc");
    fs::write(&signer, armored_public(&site.signing_cert())).unwrap();
    let out = work.path().join("out");
    let run = Decrypt::target(&site, report.as_str())
        .store(&local)
        .key(&key)
        .signer(&signer)
        .out(&out)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(fs::read(out.join(report.as_str()).join("poc.bin")).unwrap() == poc);
    drop(server);
}
