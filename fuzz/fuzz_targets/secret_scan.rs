//! Any file in keys_dir: the secret-key scan (armor headers anywhere,
//! packets, compressed and literal nesting) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = embargo::keys::holds_secret_key(data);
});
