//! The intake's reading of `POST /api/v1/sealed/<ID>/fetched`, a
//! maintainer's confirmation that a report was stored: any body gets an
//! error or a confirmation of valid part names with 32-byte hashes, never
//! a panic.
#![no_main]

use embargo::retention::{MAX_CONFIRMATION_BYTES, parse_confirmation};
use embargo::store::is_part_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(confirmation) = parse_confirmation(data) else { return };
    assert!(data.len() <= MAX_CONFIRMATION_BYTES, "an oversized body passed");
    assert!(!confirmation.parts.is_empty(), "an empty confirmation passed");
    assert!(confirmation.parts.keys().all(|n| is_part_name(n)), "a bad part name passed");
});
