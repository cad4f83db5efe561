//! Any text given as a policy either loads or is refused with diagnostics; it never panics.
#![no_main]

use gateway::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Err(diags) = Policy::parse_strict("fuzz.toml", s) {
        assert!(!diags.is_empty());
        for d in diags {
            let _ = d.to_string();
        }
    }
});
