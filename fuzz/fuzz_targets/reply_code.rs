//! Reply codes as reporters type them: any text is refused or parsed,
//! never a panic, and a parsed code shows as seven groups of four that
//! parse back to the same code.
#![no_main]

use embargo::reply::ReplyCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(code) = ReplyCode::parse(text) {
        let shown = code.display();
        assert_eq!(shown.len(), 34, "seven groups of four with dashes");
        assert!(ReplyCode::parse(&shown).ok() == Some(code), "a shown code parses back");
    }
});
