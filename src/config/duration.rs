//! Durations as the config writes them: an integer and a unit, `250ms`, `4s`, `1m`, `1h`.
//!
//! Owns only the text form; which durations make sense is `validate`'s business.

use std::time::Duration;

/// Why a duration text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number before the unit, e.g. `ms` or `""`.
    #[error("{0:?} has no number (expected a duration like 250ms, 4s or 1m)")]
    NoNumber(String),
    /// A number without a unit: heartbeat read it as seconds, we make the writer say so.
    #[error("{0:?} has no unit (expected a duration like 250ms, 4s or 1m)")]
    NoUnit(String),
    /// A unit we do not know.
    #[error("{0:?} has an unknown unit (expected ms, s, m or h)")]
    BadUnit(String),
    /// The value does not fit.
    #[error("{0:?} is too large")]
    Overflow(String),
}

impl DurationError {
    /// What is wrong, without the value, for messages that already show it.
    pub fn reason(&self) -> &'static str {
        match self {
            DurationError::NoNumber(_) => "no number before the unit",
            DurationError::NoUnit(_) => "no unit",
            DurationError::BadUnit(_) => "the unit must be ms, s, m or h, right after an integer",
            DurationError::Overflow(_) => "too large",
        }
    }
}

/// Parse `<integer><unit>` with unit `ms`, `s`, `m` or `h`; no spaces, no fractions.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(DurationError::NoNumber(text.to_owned()));
    }
    if unit.is_empty() {
        return Err(DurationError::NoUnit(text.to_owned()));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::BadUnit(text.to_owned())),
    };
    n.checked_mul(millis_per)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::Overflow(text.to_owned()))
}

/// Write a duration back in the shortest exact unit, for the plan and messages.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals_name_the_value() {
        let e = parse("4").unwrap_err();
        assert_eq!(e, DurationError::NoUnit("4".into()));
        assert!(e.to_string().contains("\"4\" has no unit"), "{e}");
        assert!(matches!(parse("ms"), Err(DurationError::NoNumber(_))));
        assert!(matches!(parse(""), Err(DurationError::NoNumber(_))));
        assert!(matches!(parse("4 s"), Err(DurationError::BadUnit(_))));
        assert!(matches!(parse("1.5s"), Err(DurationError::BadUnit(_))));
        assert!(matches!(parse("4sec"), Err(DurationError::BadUnit(_))));
        assert!(matches!(
            parse("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse("18446744073709551615h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn format_round_trips() {
        for s in ["250ms", "4s", "1m", "2h", "1500ms", "90s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
