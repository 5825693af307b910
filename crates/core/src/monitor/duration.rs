//! Durations of the monitor's configuration, written as the worker's settings write theirs:
//! humantime text such as `500ms`, `90s`, `15m`, `24h`, `1h 30m`, `7days`.
//!
//! The core keeps them as milliseconds (`i64`, like every event time). Two forms meet here:
//!
//! - configuration files and environment variables (human-readable serde formats: TOML through
//!   the `config` crate, JSON) hold humantime text, or — the form of the former `…_ms` keys,
//!   still read — a bare integer of milliseconds;
//! - the monitor's changelog (`postcard`, not human-readable) holds the plain `i64`, so state
//!   written before durations became text still decodes, bit for bit.
//!
//! A duration must be a whole number of milliseconds (`1500us` is refused rather than cut to
//! `1ms`); whether zero is allowed is the field's own check ([`ModelConfig::validate`]).
//!
//! [`ModelConfig::validate`]: super::ModelConfig::validate

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serialize, Serializer};

/// Why a duration's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not humantime syntax (no unit, unknown unit, no number…).
    #[error("`{text}` is not a duration like `90s`, `15m`, `24h` or `1h 30m` ({reason})")]
    Syntax { text: String, reason: String },
    /// Finer than a millisecond.
    #[error("`{text}` is not a whole number of milliseconds")]
    SubMillisecond { text: String },
    /// Beyond `i64::MAX` milliseconds.
    #[error("`{text}` is too long")]
    TooLong { text: String },
}

/// Parses humantime text (`15m`, `1h 30m`, `2d`, `500ms`) into milliseconds.
///
/// A bare number (`10`) has no unit and is refused, as before durations were humantime.
pub fn parse_duration_ms(text: &str) -> Result<i64, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| DurationError::Syntax {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond {
            text: text.to_owned(),
        });
    }
    i64::try_from(d.as_millis()).map_err(|_| DurationError::TooLong {
        text: text.to_owned(),
    })
}

/// Milliseconds as humantime text (`900000` → `15m`); `None` below zero.
pub fn format_duration_ms(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    Some(humantime::format_duration(Duration::from_millis(ms)).to_string())
}

/// Writes humantime text to human-readable formats, the plain `i64` to binary ones (and for a
/// negative value, which only a hand-built config holds and validation refuses).
pub(crate) fn serialize_ms<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    match format_duration_ms(*ms) {
        Some(text) if s.is_human_readable() => s.serialize_str(&text),
        _ => s.serialize_i64(*ms),
    }
}

fn serialize_opt_ms<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    struct Ms(i64);
    impl Serialize for Ms {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_ms(&self.0, s)
        }
    }
    match ms {
        Some(ms) => s.serialize_some(&Ms(*ms)),
        None => s.serialize_none(),
    }
}

/// Reads humantime text or integer milliseconds (human-readable formats), or the plain `i64`
/// (binary ones). `field` names the setting in the error. `None` for an explicit null.
fn deserialize_opt_ms<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Option<i64>, D::Error> {
    if !d.is_human_readable() {
        return serde::Deserialize::deserialize(d);
    }
    d.deserialize_any(MsVisitor { field })
}

pub(crate) fn deserialize_ms<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<i64, D::Error> {
    if !d.is_human_readable() {
        return serde::Deserialize::deserialize(d);
    }
    deserialize_opt_ms(d, field)?
        .ok_or_else(|| de::Error::custom(format!("{field}: a duration is needed, not null")))
}

struct MsVisitor {
    field: &'static str,
}

impl<'de> Visitor<'de> for MsVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: a duration like \"90s\", \"15m\", \"24h\" or \"1h 30m\" (or whole milliseconds)",
            self.field
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration_ms(v)
            .map(Some)
            .map_err(|e| E::custom(format!("{}: {e}", self.field)))
    }

    /// The former `…_ms` form: whole milliseconds.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("{}: {v} ms is too long", self.field)))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A serde `with` module for one duration setting, so a refused value names its setting.
macro_rules! duration_setting {
    ($module:ident, $field:literal) => {
        #[doc = concat!("Serde adapter of the `", $field, "` setting: milliseconds as humantime text.")]
        pub(crate) mod $module {
            pub(crate) fn serialize<S: serde::Serializer>(
                ms: &i64,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                super::serialize_ms(ms, s)
            }

            pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
                d: D,
            ) -> Result<i64, D::Error> {
                super::deserialize_ms(d, $field)
            }
        }
    };
}

duration_setting!(maturity, "maturity");
duration_setting!(warmup, "warmup");
duration_setting!(hold, "hold");
duration_setting!(cooldown, "cooldown");

/// Serde adapter of a model's `maturity` override (`None`: the profile's).
pub(crate) mod maturity_override {
    pub(crate) fn serialize<S: serde::Serializer>(
        ms: &Option<i64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::serialize_opt_ms(ms, s)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<i64>, D::Error> {
        super::deserialize_opt_ms(d, "maturity")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn humantime_text_parses_to_milliseconds() {
        for (text, ms) in [
            ("500ms", 500),
            ("90s", 90_000),
            ("5m", 300_000),
            ("15m", 900_000),
            ("24h", 86_400_000),
            ("1h 30m", 5_400_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("7days", 604_800_000),
            ("1.5h", 5_400_000),
            (" 15m ", 900_000),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn text_without_a_unit_or_finer_than_a_millisecond_is_refused() {
        for text in ["10", "h", "", "15x", "10y2", "-5m"] {
            assert!(
                matches!(parse_duration_ms(text), Err(DurationError::Syntax { .. })),
                "{text}: {:?}",
                parse_duration_ms(text)
            );
        }
        assert_eq!(
            parse_duration_ms("1500us"),
            Err(DurationError::SubMillisecond {
                text: "1500us".into()
            })
        );
        assert!(matches!(
            parse_duration_ms("300000000years"),
            Err(DurationError::TooLong { .. } | DurationError::Syntax { .. })
        ));
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, 1, 500, 90_000, 900_000, 5_400_000, 86_400_000, 1_234_567] {
            let text = format_duration_ms(ms).unwrap();
            assert_eq!(parse_duration_ms(&text), Ok(ms), "{text}");
        }
        assert_eq!(format_duration_ms(900_000).as_deref(), Some("15m"));
        assert_eq!(format_duration_ms(-1), None);
    }
}
