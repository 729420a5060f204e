//! `[retention]`: closed cases older than `max_age` disappear whole, fresh
//! ones stay; with `delete_after_fetch` a closed case goes only once every
//! part was confirmed fetched; a case that is not closed is never deleted;
//! deletions are logged by ID only. Time is injected (`now`).

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use embargo::case::status::CaseStatus;
use embargo::case::{Author, Stage};
use embargo::clock::Clock;
use embargo::config::{Config, Retention};
use embargo::id::ReportId;
use embargo::retention::{self, mark_fetched};
use embargo::store::{FsStore, Store};

const DAY: Duration = Duration::from_secs(86_400);

/// Writes a complete report (fake ciphertext: the store does not care),
/// sets its arrival time to `arrived`, and closes its case then.
fn report(store: &FsStore, attachments: usize, arrived: SystemTime) -> ReportId {
    let id = open_report(store, attachments, arrived);
    set_status(store, &id, Stage::Closed, arrived);
    id
}

/// A maintainer's signed case status for `id`: `state` at `at`.
fn set_status(store: &FsStore, id: &ReportId, state: Stage, at: SystemTime) {
    static KEY: std::sync::OnceLock<sequoia_openpgp::Cert> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        sequoia_openpgp::cert::CertBuilder::general_purpose(Some("m@example.org"))
            .generate()
            .unwrap()
            .0
    });
    let status = CaseStatus {
        schema: embargo::case::status::SCHEMA.into(),
        report: id.clone(),
        at: embargo::clock::rfc3339_micros(at),
        state,
        events: Vec::new(),
        due: Default::default(),
    };
    let signed = status.sign(&Author::Key(Box::new(key.clone()))).unwrap();
    assert!(store.set_status(id, &signed, &|_| true).unwrap());
}

/// A complete report whose case nobody has closed.
fn open_report(store: &FsStore, attachments: usize, arrived: SystemTime) -> ReportId {
    let id = ReportId::random();
    let mut staging = store.stage(&id).unwrap();
    for n in 1..=attachments {
        let mut part = staging.create_part(&format!("{n:03}.pgp")).unwrap();
        part.write_all(&vec![n as u8; 1000 * n]).unwrap();
        part.finish().unwrap();
    }
    let mut manifest = staging.create_part("manifest.pgp").unwrap();
    manifest.write_all(b"sealed manifest").unwrap();
    manifest.finish().unwrap();
    staging.commit().unwrap();
    File::options()
        .write(true)
        .open(store.report_dir(&id).join("manifest.pgp"))
        .unwrap()
        .set_modified(arrived)
        .unwrap();
    assert_eq!(store.arrived_at(&id), Some(arrived));
    id
}

fn rules(text: &str) -> Retention {
    Config::parse(&format!("[retention]\n{text}"))
        .unwrap()
        .retention
}

/// Everything under `reports/`, including staging and trash.
fn all_entries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["reports", "reports/.staging", "reports/.trash"] {
        for e in fs::read_dir(root.join(dir)).unwrap().flatten() {
            out.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

#[test]
fn reports_older_than_max_age_disappear_whole_and_fresh_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("data")).unwrap();
    let state = dir.path().join("state");
    let now = SystemTime::now();
    let old = report(&store, 3, now - 31 * DAY);
    let older = report(&store, 0, now - 400 * DAY);
    let fresh = report(&store, 2, now - 29 * DAY);
    let new = report(&store, 1, now);

    assert!(
        retention::apply(&store, &state, &rules(""), now)
            .unwrap()
            .is_empty(),
        "default keeps everything"
    );
    assert_eq!(store.list().unwrap().len(), 4);

    let rules = rules("max_age = \"30d\"");
    let mut deleted = retention::apply(&store, &state, &rules, now).unwrap();
    deleted.sort();
    let mut expected = vec![old.clone(), older.clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    let mut kept = vec![fresh.clone(), new.clone()];
    kept.sort();
    assert_eq!(store.list().unwrap(), kept);
    for gone in [&old, &older] {
        assert!(
            !store.report_dir(gone).exists(),
            "{gone} left something behind"
        );
        assert!(!store.contains(gone).unwrap());
    }
    assert_eq!(
        store.parts(&fresh).unwrap().len(),
        3,
        "fresh reports keep every part"
    );
    // Nothing half-deleted anywhere: only the two fresh report directories.
    let entries = all_entries(&dir.path().join("data"));
    let expected: Vec<String> = {
        let mut v = vec![
            "reports/.staging".to_string(),
            "reports/.sweep.lock".to_string(),
            "reports/.trash".to_string(),
            format!("reports/{fresh}"),
            format!("reports/{new}"),
        ];
        v.sort();
        v
    };
    assert_eq!(entries, expected);

    // Two days later the 29-day-old report has crossed the line too.
    let later = now + 2 * DAY;
    assert_eq!(
        retention::apply(&store, &state, &rules, later).unwrap(),
        vec![fresh]
    );
    assert_eq!(store.list().unwrap(), vec![new]);
}

#[test]
fn delete_after_fetch_waits_for_every_part_and_forgets_its_marks() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("data")).unwrap();
    let state = dir.path().join("state");
    let now = SystemTime::now();
    let whole = report(&store, 2, now);
    let partly = report(&store, 2, now);
    let untouched = report(&store, 1, now);
    for part in ["manifest.pgp", "001.pgp", "002.pgp"] {
        mark_fetched(&state, &whole, part).unwrap();
    }
    mark_fetched(&state, &whole, "001.pgp").unwrap(); // idempotent
    for part in ["manifest.pgp", "001.pgp"] {
        mark_fetched(&state, &partly, part).unwrap();
    }
    assert!(
        mark_fetched(&state, &whole, "../../etc/passwd").is_err(),
        "only part names"
    );
    let mode = fs::metadata(state.join(retention::FETCHED_DIR)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0
    );

    let rules = rules("delete_after_fetch = true");
    assert_eq!(
        retention::apply(&store, &state, &rules, now).unwrap(),
        vec![whole.clone()]
    );
    let mut kept = vec![partly.clone(), untouched.clone()];
    kept.sort();
    assert_eq!(store.list().unwrap(), kept);
    assert!(
        !state
            .join(retention::FETCHED_DIR)
            .join(whole.as_str())
            .exists(),
        "marks of deleted reports are forgotten"
    );
    assert!(
        state
            .join(retention::FETCHED_DIR)
            .join(partly.as_str())
            .exists()
    );

    mark_fetched(&state, &partly, "002.pgp").unwrap();
    assert_eq!(
        retention::apply(&store, &state, &rules, now).unwrap(),
        vec![partly]
    );
    assert_eq!(store.list().unwrap(), vec![untouched]);
}

#[test]
fn the_periodic_task_applies_the_rules_with_its_clock_and_logs_ids_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::open(&dir.path().join("data")).unwrap());
    let state = dir.path().join("state");
    let real_now = SystemTime::now();
    let a = report(&store, 1, real_now - 3 * DAY);
    let b = report(&store, 1, real_now);

    assert!(
        retention::spawn(
            store.clone(),
            state.clone(),
            rules(""),
            Clock::system(),
            None,
            Default::default()
        )
        .is_none(),
        "no task when nothing is ever deleted"
    );

    // Every log line of this test binary (a global subscriber: a
    // thread-local one races with tests logging on other threads).
    let logs = common::Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let metrics = Arc::new(embargo::metrics::Metrics::default());
    // A fixed clock: `a` is three days old at its "now", `b` brand new.
    let clock = Clock::fixed(real_now);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let task = retention::spawn(
                store.clone(),
                state.clone(),
                rules("max_age = \"2d\"\ninterval = \"1h\""),
                clock,
                Some(metrics.clone()),
                shutdown.clone(),
            )
            .unwrap();
            common::wait_until_async(
                "the first pass, which runs at start",
                Duration::from_secs(20),
                || !store.contains(&a).unwrap(),
            )
            .await;
            shutdown.cancel();
            task.await.unwrap();
        });
    assert_eq!(store.list().unwrap(), vec![b]);
    assert!(
        metrics
            .render()
            .contains("embargo_retention_deleted_total 1")
    );
    let logs = logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("report deleted by retention") && l.contains(a.as_str()))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("max_age"), "{line}");
    assert!(
        !logs.contains(&dir.path().display().to_string()),
        "no paths in retention logs: {logs}"
    );
}

#[test]
fn only_closed_cases_are_deleted_by_age_or_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("data")).unwrap();
    let state = dir.path().join("state");
    let now = SystemTime::now();
    let long_ago = now - 400 * DAY;
    // Never triaged, acknowledged, closed then reopened: all open cases.
    let untouched = open_report(&store, 1, long_ago);
    let acknowledged = open_report(&store, 1, long_ago);
    set_status(&store, &acknowledged, Stage::Acknowledged, long_ago + DAY);
    let reopened = report(&store, 1, long_ago);
    set_status(&store, &reopened, Stage::Assessed, now - DAY);
    // Closed yesterday after a year open: `max_age` counts from the close.
    let closed_late = open_report(&store, 1, long_ago);
    set_status(&store, &closed_late, Stage::Closed, now - DAY);
    let closed_long_ago = report(&store, 1, long_ago);
    let age = rules("max_age = \"30d\"");
    assert_eq!(
        retention::apply(&store, &state, &age, now).unwrap(),
        vec![closed_long_ago]
    );
    // Every part confirmed fetched: only the closed case goes.
    for id in [&untouched, &acknowledged, &reopened, &closed_late] {
        for part in ["manifest.pgp", "001.pgp"] {
            mark_fetched(&state, id, part).unwrap();
        }
    }
    let fetched = rules("delete_after_fetch = true");
    assert_eq!(
        retention::apply(&store, &state, &fetched, now).unwrap(),
        vec![closed_late]
    );
    let mut kept = vec![untouched, acknowledged, reopened];
    kept.sort();
    assert_eq!(store.list().unwrap(), kept);
    // A status that cannot be read counts as open.
    let id = &kept[0];
    fs::write(store.report_dir(id).join("status.pgp"), b"garbage").unwrap();
    assert!(
        retention::apply(&store, &state, &fetched, now + 1000 * DAY)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_confirmation_marks_a_report_only_when_every_hash_matches() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("data")).unwrap();
    let state = dir.path().join("state");
    let id = report(&store, 2, SystemTime::now());
    let hash = |part: &str| {
        hex::encode(sha2::Sha256::digest(
            fs::read(store.report_dir(&id).join(part)).unwrap(),
        ))
    };
    let body = |parts: &[(&str, String)]| {
        let map: serde_json::Map<String, serde_json::Value> = parts
            .iter()
            .map(|(n, h)| (n.to_string(), h.clone().into()))
            .collect();
        serde_json::json!({ "parts": map }).to_string()
    };
    let all = [
        ("manifest.pgp", hash("manifest.pgp")),
        ("001.pgp", hash("001.pgp")),
        ("002.pgp", hash("002.pgp")),
    ];
    let mut wrong = all.clone();
    wrong[2].1 = hash("001.pgp");
    for bad in [body(&wrong), body(&all[..2])] {
        let c = retention::parse_confirmation(bad.as_bytes()).unwrap();
        assert!(matches!(
            retention::confirm_fetched(&store, &state, &id, &c, true),
            Err(retention::RetentionError::Mismatch(_))
        ));
        assert!(!retention::is_fetched(&store, &state, &id).unwrap());
        assert!(!state.join(retention::FETCHED_DIR).exists());
    }
    for bad in [
        r#"{"parts":{}}"#,
        r#"{"parts":{"manifest.pgp":"00"}}"#,
        r#"{"parts":{"x.pgp":"00"}}"#,
        r#"{"parts":[],"extra":1}"#,
        "",
    ] {
        assert!(
            retention::parse_confirmation(bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
    // Checked but not recorded without delete_after_fetch.
    let good = retention::parse_confirmation(body(&all).as_bytes()).unwrap();
    retention::confirm_fetched(&store, &state, &id, &good, false).unwrap();
    assert!(!retention::is_fetched(&store, &state, &id).unwrap());
    retention::confirm_fetched(&store, &state, &id, &good, true).unwrap();
    assert!(retention::is_fetched(&store, &state, &id).unwrap());
}

#[test]
fn markers_left_by_versions_that_counted_served_bytes_delete_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("data")).unwrap();
    let state = dir.path().join("state");
    let id = report(&store, 1, SystemTime::now());
    // What the old fetch route wrote after a `Range: bytes=-1` request.
    let legacy = state.join("fetched").join(id.as_str());
    fs::create_dir_all(&legacy).unwrap();
    for part in ["manifest.pgp", "001.pgp"] {
        fs::write(legacy.join(part), b"").unwrap();
    }
    let rules = rules("delete_after_fetch = true");
    assert!(
        retention::apply(&store, &state, &rules, SystemTime::now())
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list().unwrap(), vec![id]);
    assert!(!state.join("fetched").exists());
}
