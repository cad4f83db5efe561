//! The SSH split never panics, never lets a control or invisible character through, and a
//! word list it returns survives being quoted and split again unchanged.
#![no_main]

use gateway::argv::split::{is_invisible, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(words) = split(s) else { return };
    for w in &words {
        assert!(!w.chars().any(|c| c.is_control() || is_invisible(c)), "{w:?}");
    }
    let requoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    assert_eq!(split(&requoted.join(" ")).unwrap(), words);
});
