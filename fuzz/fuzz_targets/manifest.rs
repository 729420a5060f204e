//! Manifest JSON as a reader sees it after decryption.
#![no_main]

use embargo::seal::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_json(data) {
        let _ = m.to_json();
    }
});
