//! What one reply-code derivation costs (Argon2id with the fixed
//! parameters, then the reply certificate): the price of one status
//! lookup, and of one report's code at intake. Prints numbers; asserts
//! nothing. `cargo bench --bench reply`.

use std::time::Instant;

use embargo::reply::{ReplyCode, Salt, cert, derive};

/// One whole status lookup through the intake's state: the derivation,
/// the lookup, and opening a case of `events` reporter-visible events.
fn status_lookup(events: usize) {
    use embargo::case::sealed::Signers;
    use openpgp::cert::prelude::*;
    use openpgp::serialize::SerializeInto;
    use sequoia_openpgp as openpgp;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .add_transport_encryption_subkey()
        .generate()
        .unwrap();
    std::fs::write(
        dir.path().join("keys/m.asc"),
        cert.armored().to_vec().unwrap(),
    )
    .unwrap();
    let config = embargo::config::Config::defaults_in(dir.path());
    let state = embargo::intake::AppState::open(config, embargo::clock::Clock::system()).unwrap();
    let sealer = state.keys().sealer.clone().unwrap();
    let writer = sealer
        .begin(
            state.store().as_ref(),
            embargo::id::ReportId::random(),
            embargo::seal::Channel::Api,
        )
        .unwrap();
    let mut body = embargo::report::ReportBody::default();
    body.title = "bench".into();
    body.description = "d".into();
    let finished = embargo::reply::intake::finish(
        writer,
        Some(state.replies()),
        "bench",
        body,
        embargo::report::Reporter::default(),
        None,
    )
    .unwrap();
    let code = finished.reply_code.unwrap();
    let opened = state.replies().open_code(&code).unwrap();
    let recipients = state.keys().keyring.recipients().unwrap();
    for n in 1..events {
        let f = embargo::reply::followup::FollowUp::begin(
            state.store().as_ref(),
            opened.report.clone(),
            &recipients,
            opened.cert.clone().strip_secret_key_material(),
            state.secrets(),
            embargo::config::MessageFormat::Compat,
            std::time::SystemTime::now(),
        );
        f.finish(format!("message {n}")).unwrap();
    }
    let maintainers = vec![cert.strip_secret_key_material()];
    let intake = state.secrets().signing_cert();
    let signers = Signers {
        maintainers: &maintainers,
        intake: Some(&intake),
    };
    let runs = 10;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = state.replies().open_code(&code).unwrap();
        let timeline = embargo::reply::timeline::read(
            state.store().as_ref(),
            &o.report,
            o.cert,
            &signers,
            std::time::SystemTime::now(),
        );
        assert_eq!(timeline.events.len(), events);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "status lookup (derive, look up, open {events} events): median {:.1} ms, max {:.1} ms ({runs} runs)",
        times[runs / 2].as_secs_f64() * 1e3,
        times[runs - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    status_lookup(1);
    status_lookup(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let salt = Salt::load_or_create(dir.path()).expect("a salt");
    let code = ReplyCode::generate();
    let runs = 10;
    for cost in embargo::reply::COSTS {
        let (mut argon, mut certs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let d = derive::derive_at(&code, &salt, cost);
            argon.push(t.elapsed());
            let t = Instant::now();
            let c = cert::reply_cert(&d.seed).expect("a reply certificate");
            certs.push(t.elapsed());
            std::hint::black_box(c);
        }
        argon.sort();
        certs.sort();
        let name = if cost == embargo::reply::CURRENT {
            "current"
        } else {
            "legacy"
        };
        println!(
            "reply code ({name} cost): Argon2id m={} KiB t={} p={}: median {:.2} ms, max {:.2} ms; reply certificate: median {:.2} ms ({runs} runs)",
            cost.memory_kib,
            cost.passes,
            cost.lanes,
            argon[runs / 2].as_secs_f64() * 1e3,
            argon[runs - 1].as_secs_f64() * 1e3,
            certs[runs / 2].as_secs_f64() * 1e3,
        );
    }
}
