//! Parsers for the human-friendly scalar forms used in `routes.yaml`:
//! durations (`250ms`, `30s`, `1h30m`, `4d`) and sizes (`512`, `64KiB`, `1MiB`).
//!
//! Pure functions over `&str`; the decoder turns their errors into located
//! problems.

use std::time::Duration;

/// Parses a duration made of one or more `<integer><unit>` parts, units being
/// `ms`, `s`, `m`, `h` and `d` (e.g. `250ms`, `30s`, `1m30s`, `4d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("expected a duration such as `30s`, found an empty string".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "expected a duration such as `250ms`, `30s`, `15m`, `1h` or `4d`, found `{text}`"
            ));
        }
        let (number, tail) = rest.split_at(digits);
        let tail = tail.trim_start();
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let millis_per_unit: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("`{text}` has no unit: write e.g. `{number}s` or `{number}ms`")),
            other => {
                return Err(format!("unknown duration unit `{other}` in `{text}` (units: ms, s, m, h, d)"))
            }
        };
        let n: u128 = number.parse().map_err(|_| format!("duration `{text}` is too large"))?;
        total = total
            .checked_add(n.saturating_mul(millis_per_unit))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        rest = tail.trim_start();
    }
    let millis = u64::try_from(total).map_err(|_| format!("duration `{text}` is too large"))?;
    Ok(Duration::from_millis(millis))
}

/// Parses a byte size: a plain integer (bytes) or an integer with a unit,
/// binary (`KiB`, `MiB`, `GiB`) or decimal (`KB`, `MB`, `GB`), or `B`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("expected a size such as `256KiB`, `1MiB` or a number of bytes, found `{text}`"));
    }
    let (number, unit) = s.split_at(digits);
    let multiplier: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (units: B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Renders a duration the way a user would write it in `routes.yaml`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// Renders a byte size with the largest binary unit that divides it.
pub fn format_size(n: u64) -> String {
    for (unit, per) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n != 0 && n.is_multiple_of(per) {
            return format!("{}{unit}", n / per);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("4d"), Ok(Duration::from_secs(4 * 86_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject_what_a_user_might_mistype() {
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert_eq!(parse_duration("30 s"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("30 seconds").unwrap_err().contains("`seconds`"));
        assert!(parse_duration("30sec").unwrap_err().contains("`sec`"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999999999999d").is_err());
    }

    #[test]
    fn sizes_binary_and_decimal() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert!(parse_size("1Mb").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    proptest! {
        #[test]
        fn duration_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn size_round_trips(n in 0u64..(1 << 50)) {
            prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
        }
    }
}
