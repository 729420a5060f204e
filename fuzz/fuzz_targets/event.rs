//! Case event plaintext as a reader sees it after decryption: parsed and
//! checked, and what parses must survive its own padded serialization.
#![no_main]

use embargo::case::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Event::from_json(data) {
        let padded = e.to_padded_json().expect("a parsed event serializes");
        let again = Event::from_json(&padded).expect("a serialized event parses");
        assert!(again == e, "an event changed through its own JSON");
    }
});
