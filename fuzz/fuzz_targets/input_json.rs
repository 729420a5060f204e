//! The input JSON of the API and `embargo seal`, then validation.
#![no_main]

use embargo::config::Limits;
use embargo::report::RawReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = RawReport::from_json(data) {
        let _ = raw.validate(&Limits::default());
    }
});
