//! embargo's own SEIPDv1 reader and Sequoia's on the same bytes, with a
//! fixed session key: raw SEIPD packets (first byte even) or inner packet
//! streams sealed with a valid MDC (odd). Fails when the readers disagree
//! (`seipd_reader::differential`).
#![no_main]

use embargo::seal::seipd_reader::{FUZZ_KEY, differential, fuzz_packet};
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::crypto::SessionKey;
use sequoia_openpgp::types::SymmetricAlgorithm;

fuzz_target!(|data: &[u8]| {
    let Some(packet) = fuzz_packet(data) else {
        return;
    };
    let key = SessionKey::from(&FUZZ_KEY[..]);
    if let Err(e) = differential(&packet, SymmetricAlgorithm::AES256, &key) {
        panic!("the SEIPD readers disagree: {e}");
    }
});
