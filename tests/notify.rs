//! Content-free "new report" notices against a real SMTP server (aiosmtpd on
//! loopback) and a local HTTP receiver: a burst of reports gives exactly one
//! notice per target, stating the count, retried after a failure, and
//! nothing secret reaches the logs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::smtp::SmtpSink;
use common::webhook::Receiver;
use common::{Logs, wait_until_async};
use embargo::config::Config;
use embargo::metrics::Metrics;
use embargo::notify::Notifier;
use tokio_util::sync::CancellationToken;

/// Every log line of this test binary. A global subscriber, because a
/// thread-local one races with tests logging on other threads (tracing
/// caches per-callsite interest).
fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

fn config(smtp: &SmtpSink, hook: &str, window: &str) -> Config {
    Config::parse(&format!(
        "project_name = \"Acme \\\"Widgets\\\"\"\n\
         [maintainers]\nnotify = [\"mailto:team@example.org\", \"{hook}\"]\nnotify_window = \"{window}\"\n{}",
        smtp.smtp_config()
    ))
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_burst_of_reports_gives_exactly_one_notice_per_target_with_the_count_and_no_content() {
    let smtp = SmtpSink::start();
    // The first webhook attempt fails: the notice must be retried, once.
    let receiver = Receiver::start(1);
    let secret_path = "/hooks/T0P-SECRET-WEBHOOK-TOKEN";
    let config = config(&smtp, &receiver.url(secret_path), "3s");
    let logs = logs();
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();

    runtime().block_on(async {
        let (handle, task) =
            Notifier::spawn(&config, Some(metrics.clone()), shutdown.clone()).unwrap();
        let burst_at = Instant::now();
        for _ in 0..7 {
            handle.report_arrived();
        }
        wait_until_async(
            "one mail and one accepted webhook",
            Duration::from_secs(30),
            || smtp.received().len() == 1 && receiver.hits().len() == 2,
        )
        .await;
        let first_at = receiver.hits()[1].at;
        assert!(
            first_at - burst_at >= Duration::from_secs(3),
            "the notice waits for the window to collect the burst"
        );

        // Nothing more within the next window: a burst is one notice. The
        // wait is the point ("nothing happens"), so it is a fixed sleep.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(smtp.received().len(), 1, "exactly one mail for the burst");
        assert_eq!(
            receiver.hits().len(),
            2,
            "one failed attempt and one delivered notice"
        );
        assert_eq!(handle.pending(), 0);

        // A later report gives a second notice, at least a window after the first.
        handle.report_arrived();
        handle.report_arrived();
        wait_until_async("the second notice", Duration::from_secs(30), || {
            smtp.received().len() == 2 && receiver.hits().len() == 3
        })
        .await;
        let second_at = receiver.hits()[2].at;
        assert!(
            second_at - first_at >= Duration::from_secs(3),
            "never two report notices within one window"
        );

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap()
            .unwrap();
    });

    // The mails: to the team, the count, no content.
    // Unfolded: the mail body is wrapped at 72 columns.
    let mut mails: Vec<(String, String)> = smtp
        .received()
        .into_iter()
        .map(|m| (m.rcpt_to, m.text.replace('\n', " ")))
        .collect();
    mails.sort_by_key(|(_, text)| text.contains(" 2 new"));
    assert!(mails.iter().all(|(to, _)| to.contains("team@example.org")));
    let first = &mails[0].1;
    assert!(!first.contains("quoted-printable"), "{first}");
    assert!(
        first.contains("Subject: [Acme \"Widgets\"] 7 new vulnerability reports"),
        "{first}"
    );
    assert!(first.contains("Auto-Submitted: auto-generated"), "{first}");
    assert!(
        first.contains("Notices never carry report content"),
        "{first}"
    );
    assert!(
        mails[1].1.contains("2 new vulnerability reports"),
        "{}",
        mails[1].1
    );
    // No report ID (five groups of five) in any notice.
    let id_like = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .any(|w| {
                w.len() == 29 && w.split('-').count() == 5 && w.split('-').all(|g| g.len() == 5)
            })
    };
    assert!(mails.iter().all(|(_, text)| !id_like(text)));

    // The webhook: the same JSON twice (failed, then retried), then count 2.
    let hits = receiver.hits();
    assert!(
        hits.iter()
            .all(|h| h.path == secret_path && h.content_type == "application/json")
    );
    assert_eq!(
        hits[0].body, hits[1].body,
        "the retry sends the same notice"
    );
    let body: serde_json::Value = serde_json::from_str(&hits[1].body).unwrap();
    assert_eq!(body["count"], 7);
    assert_eq!(body["kind"], "reports");
    assert_eq!(body["project"], "Acme \"Widgets\"");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("7 new vulnerability reports arrived"),
        "{body}"
    );
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "only the template's fields: {keys:?}");
    assert!(!id_like(&hits[1].body));
    let second: serde_json::Value = serde_json::from_str(&hits[2].body).unwrap();
    assert_eq!(second["count"], 2);

    // Metrics count deliveries per target; logs name targets without secrets.
    let rendered = metrics.render();
    assert!(
        rendered.contains("embargo_notices_sent_total 4"),
        "{rendered}"
    );
    assert!(
        rendered.contains("embargo_notices_failed_total 0"),
        "{rendered}"
    );
    let logs = logs.text();
    assert!(logs.contains("notice sent"), "{logs}");
    assert!(logs.contains("retrying"), "{logs}");
    assert!(
        !logs.contains("T0P-SECRET"),
        "webhook path in the logs: {logs}"
    );
    assert!(
        !logs.contains("team@example.org"),
        "recipient address in the logs: {logs}"
    );
}

#[test]
fn reports_pending_at_shutdown_are_announced_without_waiting_for_the_window() {
    let smtp = SmtpSink::start();
    let receiver = Receiver::start(0);
    let config = config(&smtp, &receiver.url("/hook"), "1h");
    let shutdown = CancellationToken::new();
    runtime().block_on(async {
        let (handle, task) = Notifier::spawn(&config, None, shutdown.clone()).unwrap();
        handle.report_arrived();
        handle.report_arrived();
        handle.report_arrived();
        // Nothing may be sent inside the window: a fixed sleep, since the
        // check is that nothing happens.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            smtp.received().is_empty() && receiver.hits().is_empty(),
            "still inside the window"
        );
        let stopping = Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap()
            .unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(12));
    });
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    let text = mails[0].text.replace('\n', " ");
    assert!(text.contains("3 new vulnerability reports"), "{text}");
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["count"], 3);
}

#[test]
fn key_alerts_go_through_the_same_targets_at_once() {
    let smtp = SmtpSink::start();
    let receiver = Receiver::start(0);
    let config = config(&smtp, &receiver.url("/hook"), "1h");
    let shutdown = CancellationToken::new();
    runtime().block_on(async {
        let (handle, task) = Notifier::spawn(&config, None, shutdown.clone()).unwrap();
        let keyring = embargo::keys::Keyring {
            dir: "keys".into(),
            entries: vec![],
            bad_files: vec![],
            checked_at: std::time::SystemTime::now(),
        };
        for alert in embargo::alerts::expiry_alerts(&keyring, std::time::SystemTime::now()) {
            handle.alert(alert.notice_line());
        }
        wait_until_async("the alert", Duration::from_secs(30), || {
            smtp.received().len() == 1 && receiver.hits().len() == 1
        })
        .await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap()
            .unwrap();
    });
    let mail = &smtp.received()[0].text.replace('\n', " ");
    assert!(mail.contains("maintainer key alert"), "{mail}");
    assert!(mail.contains("NO usable maintainer certificate"), "{mail}");
    let body: serde_json::Value = serde_json::from_str(&receiver.hits()[0].body).unwrap();
    assert_eq!(body["kind"], "keys");
    assert_eq!(body["count"], 1);
}

#[test]
fn key_alerts_are_not_held_back_by_the_report_window() {
    let smtp = SmtpSink::start();
    let receiver = Receiver::start(0);
    // A report is waiting for its one-hour window when the alert comes.
    let config = config(&smtp, &receiver.url("/hook"), "1h");
    let shutdown = CancellationToken::new();
    runtime().block_on(async {
        let (handle, task) = Notifier::spawn(&config, None, shutdown.clone()).unwrap();
        handle.report_arrived();
        wait_until_async(
            "the notifier to collect the report",
            Duration::from_secs(10),
            || handle.pending() == 1,
        )
        .await;
        // Let the task enter the report window before the alert is queued.
        tokio::task::yield_now().await;
        let keyring = embargo::keys::Keyring {
            dir: "keys".into(),
            entries: vec![],
            bad_files: vec![],
            checked_at: std::time::SystemTime::now(),
        };
        for alert in embargo::alerts::expiry_alerts(&keyring, std::time::SystemTime::now()) {
            handle.alert(alert.notice_line());
        }
        wait_until_async(
            "the alert inside the report window",
            Duration::from_secs(30),
            || smtp.received().len() == 1 && receiver.hits().len() == 1,
        )
        .await;
        assert_eq!(
            handle.pending(),
            1,
            "the report notice still waits for its window"
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap()
            .unwrap();
    });
    let body: serde_json::Value = serde_json::from_str(&receiver.hits()[0].body).unwrap();
    assert_eq!(
        body["kind"], "keys",
        "the first notice is the alert: {body}"
    );
}
