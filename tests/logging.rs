//! `EMBARGO_LOG` at its most verbose never lets a dependency log secrets or
//! metadata: a real Dovecot and a real `embargo serve` with the poller, at
//! trace level, and canaries in the IMAP password, the mail and the upload.

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::dovecot::{Dovecot, PASSWORD};
use common::{Gpg, GpgKeyType, Site};
use server::{RawMultipart, Server};

const MAIL_CANARY: &str = "mailcanary4q7ZkW";
const BODY_CANARY: &str = "bodycanary9XcVt2";
const WEB_CANARY: &str = "webcanary3LmPa8";

fn mail(n: usize) -> Vec<u8> {
    format!(
        "From: Reporter <reporter-{MAIL_CANARY}@example.org>\r\nTo: security@example.org\r\nSubject: Overflow {MAIL_CANARY}\r\nMessage-ID: <{n}.{MAIL_CANARY}@example.org>\r\n\r\nThe parser {BODY_CANARY} overflows ({n}).\r\n"
    )
    .into_bytes()
}

/// Posts one API report from a socket whose local port is returned, so the
/// test can look for the peer address in the log.
fn post_report(server: &Server) -> (u16, u16) {
    let json = serde_json::to_vec(&serde_json::json!({
        "report": {"title": format!("Web {WEB_CANARY}"), "description": WEB_CANARY},
        "reporter": {"name": "", "email": "", "credit": "anonymous"}
    }))
    .unwrap();
    let body = RawMultipart::new()
        .raw(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"report\"\r\nContent-Type: application/json\r\n\r\n",
                RawMultipart::new().boundary
            )
            .as_bytes(),
        )
        .raw(&json)
        .raw(b"\r\n")
        .file(b"poc.txt", WEB_CANARY.as_bytes())
        .end();
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = stream.local_addr().unwrap().port();
    stream
        .write_all(&body.request(&server.addr, "/api/v1/reports"))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = server::status_of(&answer);
    (status, port)
}

fn assert_clean(log: &str, client_port: Option<u16>) {
    for canary in [PASSWORD, MAIL_CANARY, BODY_CANARY, WEB_CANARY] {
        assert!(
            !log.contains(canary),
            "the trace-level log holds {canary:?}:\n{log}"
        );
    }
    if let Some(port) = client_port {
        let peer = format!("127.0.0.1:{port}");
        assert!(
            !log.contains(&peer),
            "the trace-level log holds the peer address {peer}:\n{log}"
        );
    }
}

#[test]
fn trace_level_never_logs_the_imap_password_the_mail_or_peer_addresses() {
    let site = Site::new();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Maintainer <m@example.org>", GpgKeyType::Cv25519, "", "1y");
    site.add_key("maintainer.asc", &gpg.export_public(&fpr));
    let dovecot = Dovecot::start();
    site.write_config(&dovecot.mailbox_config(site.path(), ""));
    let mut imap = dovecot.client();

    // Every way of asking for more: a global level and per-dependency ones.
    for (n, filter) in [
        "trace",
        "trace,async_imap=trace,imap_proto=trace,hyper=trace,hyper_util=trace,tokio_rustls=trace,rustls=trace,h2=trace,reqwest=trace,lettre=trace",
    ]
    .into_iter()
    .enumerate()
    {
        let reports_before = site.report_ids().len();
        imap.append(&mail(n));
        let out = site
            .embargo()
            .env("EMBARGO_LOG", filter)
            .env("NO_COLOR", "1")
            .args(["poll", "-c", "embargo.toml", "--once"])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        assert_eq!(site.report_ids().len(), reports_before + 1, "{log}");
        // The poller did log (its own events pass), just not its peers'.
        assert!(log.contains("sealed"), "{log}");
        assert_clean(&log, None);
    }
    assert!(imap.uids().is_empty(), "the mail was not deleted");

    // `serve` with the poller running beside the web intake.
    imap.append(&mail(2));
    let server = Server::start_with_env(&site, &[("EMBARGO_LOG", "trace"), ("NO_COLOR", "1")]);
    let (status, port) = post_report(&server);
    assert_eq!(status, 201, "{}", server.logs.text());
    common::wait_until_with(
        "serve to seal the mail",
        Duration::from_secs(60),
        || imap.uids().is_empty(),
        || server.logs.text(),
    );
    common::wait_until("four reports in the store", Duration::from_secs(60), || {
        site.report_ids().len() >= 4
    });
    let log = server.logs.text();
    assert!(log.contains("POST"), "request lines are logged:\n{log}");
    assert_clean(&log, Some(port));
    // Nothing on disk either (store, state, temp dir).
    for canary in [MAIL_CANARY, BODY_CANARY, WEB_CANARY] {
        assert!(
            common::files_containing(site.path(), canary.as_bytes()).is_empty(),
            "{canary} on disk"
        );
    }
}
