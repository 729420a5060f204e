//! `embargo fetch`'s reading of a server's `GET /api/v1/sealed` listing
//! (and of a report's `GET /api/v1/sealed/{id}/files`): a hostile or
//! broken server must get an error, never a panic, and nothing it lists
//! may pass unless it is a complete, canonical report (a follow-up file
//! name, listed once).
#![no_main]

use std::collections::HashSet;

use embargo::reveal::fetch::{parse_file_listing, parse_listing, status_times};
use embargo::store::{is_file_name, is_part_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The case-status times beside the reports: never a panic.
    let _ = status_times(data);
    if let Ok(files) = parse_file_listing(data) {
        let names: HashSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), files.len(), "a file listed twice passed");
        assert!(names.iter().all(|n| is_file_name(n)), "a name that is no file name passed");
    }
    let Ok(reports) = parse_listing(data) else { return };
    let mut ids = HashSet::new();
    for (id, parts) in reports {
        assert!(ids.insert(id.to_string()), "a report listed twice passed");
        let names: HashSet<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), parts.len(), "a part listed twice passed");
        assert!(names.contains("manifest.pgp"), "a report without its manifest passed");
        assert!(names.iter().all(|n| is_part_name(n)));
        for n in 1..names.len() {
            assert!(names.contains(format!("{n:03}.pgp").as_str()), "a gap in the parts passed");
        }
    }
});
