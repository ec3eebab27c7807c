//! Request path normalisation: never a panic; the result starts with `/`,
//! has no dot segment, is its own normal form (the route match and the
//! upstream see one path), and never carries an encoded separator unless
//! the listener keeps them.
#![no_main]

use gatehouse::config::EscapedSlashes;
use gatehouse::routing::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    for mode in [EscapedSlashes::Reject, EscapedSlashes::Decode, EscapedSlashes::Keep] {
        let Ok(n) = normalize_path(path, mode) else { continue };
        assert!(n.starts_with('/'), "{path:?} -> {n:?}");
        for seg in n[1..].split('/') {
            assert!(seg != "." && seg != "..", "{path:?} -> {n:?}");
        }
        let again = normalize_path(&n, mode).unwrap_or_else(|e| panic!("{path:?} -> {n:?} -> {e}"));
        assert_eq!(again, n, "{path:?} ({mode:?}) is not stable");
        if mode != EscapedSlashes::Keep {
            let lower = n.to_ascii_lowercase();
            assert!(!lower.contains("%2f") && !lower.contains("%5c"), "{path:?} -> {n:?}");
        }
        // No escape of an unreserved character survives.
        let bytes = n.as_bytes();
        for (i, _) in n.match_indices('%') {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            let c = u8::from_str_radix(hex, 16).unwrap();
            assert!(!(c.is_ascii_alphanumeric() || b"-._~".contains(&c)), "{path:?} -> {n:?}");
        }
    }
});
