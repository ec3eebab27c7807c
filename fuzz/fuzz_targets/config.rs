//! The configuration decoder: any text gives a config or a list of
//! problems, never a panic, and problems always carry a location.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    match gatehouse::config::Config::parse(Path::new("/nonexistent/fuzz.yaml"), text, &env) {
        Ok(config) => {
            // Deterministic: the same text gives the same config.
            let again =
                gatehouse::config::Config::parse(Path::new("/nonexistent/fuzz.yaml"), text, &env).unwrap();
            assert_eq!(config.routes, again.routes);
            assert_eq!(config.listen, again.listen);
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            let _ = e.to_string();
        }
    }
});
