//! Single-field parsers: report IDs, CVSS vectors, CWE lists, e-mail syntax,
//! and every form field through validation.
#![no_main]

use embargo::config::Limits;
use embargo::report::{self, CvssScore, RawReport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = s.parse::<embargo::id::ReportId>();
    let _ = CvssScore::parse(s);
    let _ = report::parse_cwe(s);
    let _ = report::is_plausible_email(s);
    let mut raw = RawReport::default();
    for name in report::FIELDS {
        raw.set(name, s.to_string());
    }
    let _ = raw.validate(&Limits::default());
});
