//! A certificate file in keys_dir: parsing and judging never panic.
#![no_main]

use embargo::keys::judge;
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::parse::Parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(parser) = CertParser::from_bytes(data) {
        for cert in parser.flatten().take(8) {
            let _ = judge(std::path::Path::new("fuzz.asc"), cert, std::time::SystemTime::now());
        }
    }
});
