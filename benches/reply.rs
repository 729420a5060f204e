//! What one reply-code derivation costs (Argon2id with the fixed
//! parameters, then the reply certificate): the price of one status
//! lookup, and of one report's code at intake. Prints numbers; asserts
//! nothing. `cargo bench --bench reply`.

use std::time::Instant;

use embargo::reply::{ReplyCode, Salt, cert, derive};

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let salt = Salt::load_or_create(dir.path()).expect("a salt");
    let code = ReplyCode::generate();
    let runs = 10;
    let (mut argon, mut certs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let d = derive::derive(&code, &salt);
        argon.push(t.elapsed());
        let t = Instant::now();
        let c = cert::reply_cert(&d.seed).expect("a reply certificate");
        certs.push(t.elapsed());
        std::hint::black_box(c);
    }
    argon.sort();
    certs.sort();
    println!(
        "reply code: Argon2id m={} KiB t={} p=1: median {:.1} ms, max {:.1} ms; reply certificate: median {:.2} ms ({runs} runs)",
        embargo::reply::ARGON2_MEMORY_KIB,
        embargo::reply::ARGON2_PASSES,
        argon[runs / 2].as_secs_f64() * 1e3,
        argon[runs - 1].as_secs_f64() * 1e3,
        certs[runs / 2].as_secs_f64() * 1e3,
    );
}
