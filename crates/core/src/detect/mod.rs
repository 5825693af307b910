//! Streaming change detectors.
//!
//! Each detector consumes one observation at a time and says whether the stream changed at that
//! observation. They are pure state machines: no clocks, no I/O, no randomness, so a detector fed
//! the same stream always flags the same indices, and its state can be replayed.
//!
//! | detector | input | watches | reference |
//! |---|---|---|---|
//! | [`Adwin`] | any real value | mean of an adaptive window | Bifet & Gavaldà, SDM 2007 |
//! | [`PageHinkley`] | any real value | cumulative deviation from the mean | Page 1954 |
//! | [`Ddm`] | 1 = error, 0 = correct | error rate | Gama et al. 2004 |
//! | [`Eddm`] | 1 = error, 0 = correct | distance between errors | Baena-García et al. 2006 |
//! | [`HddmA`] | 1 = error, 0 = correct | mean, Hoeffding bound | Frías-Blanco et al. 2014 |
//! | [`HddmW`] | 1 = error, 0 = correct | EWMA, McDiarmid bound | Frías-Blanco et al. 2014 |
//!
//! # Semantics shared with River
//!
//! The detectors reproduce River 0.26.1 observation for observation: the defaults are River's,
//! the arithmetic is done in the same order (so `f64` rounding lines up and the same indices are
//! flagged), and `tests/detect_river_vectors.rs` checks them against fixtures River produced.
//! As in River, a detector that flagged a drift is reset at the start of the *next* update, so
//! its statistics after the drift can still be read; [`ChangeDetector::reset`] resets at once.
//!
//! Non-finite observations (NaN, ±∞) are ignored: they would poison every running sum for the
//! rest of the detector's life. Binary detectors expect 0 or 1 (fractions in between are taken
//! as they are, which is what their weighted entry points build on); values outside `[0, 1]` are
//! clamped into it.
//!
//! # Configuration
//!
//! Every detector has a config struct whose [`Default`] is River's default, which deserializes
//! with unknown fields rejected, and whose `validate()` rejects nonsensical values with a
//! [`ConfigError`]. [`DetectorConfig`] is the tagged union (`kind = "adwin" | ...`) used in
//! configuration files; [`DetectorConfig::build`] validates it and returns a [`Detector`].

mod adwin;
mod ddm;
mod eddm;
mod hddm_a;
mod hddm_w;
mod page_hinkley;
mod stats;

pub use adwin::{Adwin, AdwinConfig};
pub use ddm::{Ddm, DdmConfig};
pub use eddm::{Eddm, EddmConfig};
pub use hddm_a::{HddmA, HddmAConfig};
pub use hddm_w::{HddmW, HddmWConfig};
pub use page_hinkley::{PageHinkley, PageHinkleyConfig, PageHinkleyMode};

use serde::{Deserialize, Serialize};

/// What a detector concluded after one observation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorSignal {
    /// A change was detected at this observation.
    pub drift: bool,
    /// The detector is in its warning zone (only DDM, EDDM and HDDM issue warnings).
    pub warning: bool,
}

impl DetectorSignal {
    /// No drift, no warning.
    pub const QUIET: Self = Self {
        drift: false,
        warning: false,
    };
}

/// A streaming change detector.
pub trait ChangeDetector {
    /// Feeds one observation; returns whether a change was detected at this observation.
    fn update(&mut self, x: f64) -> DetectorSignal;

    /// Forgets everything seen so far, as if the detector had just been built.
    fn reset(&mut self);
}

/// A configuration value that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {detector} config: `{field}` = {value}: {reason}")]
pub struct ConfigError {
    /// The detector whose config was rejected (`"adwin"`, `"ddm"`, ...).
    pub detector: &'static str,
    /// The offending field.
    pub field: &'static str,
    /// The value as given.
    pub value: String,
    /// What the value must satisfy.
    pub reason: &'static str,
}

/// An observation a detector refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum DetectError {
    /// A weight must be finite and strictly positive.
    #[error("weight {0} is not finite and > 0")]
    InvalidWeight(f64),
}

/// Checks one field; builds the error that names it.
pub(crate) fn check(
    ok: bool,
    detector: &'static str,
    field: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            detector,
            field,
            value: value.to_string(),
            reason,
        })
    }
}

/// Rejects weights that cannot stand for a number of observations.
pub(crate) fn check_weight(w: f64) -> Result<(), DetectError> {
    if w.is_finite() && w > 0.0 {
        Ok(())
    } else {
        Err(DetectError::InvalidWeight(w))
    }
}

/// A binary detector's input: 1 = error, 0 = correct, fractions kept, out-of-range clamped.
/// `None` for non-finite input, which is ignored.
pub(crate) fn binary_input(x: f64) -> Option<f64> {
    x.is_finite().then(|| x.clamp(0.0, 1.0))
}

/// Any detector's configuration, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DetectorConfig {
    Adwin(AdwinConfig),
    Ddm(DdmConfig),
    Eddm(EddmConfig),
    HddmA(HddmAConfig),
    HddmW(HddmWConfig),
    PageHinkley(PageHinkleyConfig),
}

impl Default for DetectorConfig {
    /// ADWIN with River's defaults: it watches any real-valued signal, not only error bits.
    fn default() -> Self {
        Self::Adwin(AdwinConfig::default())
    }
}

impl DetectorConfig {
    /// Validates the config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Adwin(c) => c.validate(),
            Self::Ddm(c) => c.validate(),
            Self::Eddm(c) => c.validate(),
            Self::HddmA(c) => c.validate(),
            Self::HddmW(c) => c.validate(),
            Self::PageHinkley(c) => c.validate(),
        }
    }

    /// Validates the config and builds a fresh detector.
    pub fn build(&self) -> Result<Detector, ConfigError> {
        Ok(match self {
            Self::Adwin(c) => Detector::Adwin(Adwin::new(c.clone())?),
            Self::Ddm(c) => Detector::Ddm(Ddm::new(c.clone())?),
            Self::Eddm(c) => Detector::Eddm(Eddm::new(c.clone())?),
            Self::HddmA(c) => Detector::HddmA(HddmA::new(c.clone())?),
            Self::HddmW(c) => Detector::HddmW(HddmW::new(c.clone())?),
            Self::PageHinkley(c) => Detector::PageHinkley(PageHinkley::new(c.clone())?),
        })
    }
}

/// Any detector, without boxing (per-model state is kept by value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Detector {
    Adwin(Adwin),
    Ddm(Ddm),
    Eddm(Eddm),
    HddmA(HddmA),
    HddmW(HddmW),
    PageHinkley(PageHinkley),
}

impl ChangeDetector for Detector {
    fn update(&mut self, x: f64) -> DetectorSignal {
        match self {
            Self::Adwin(d) => d.update(x),
            Self::Ddm(d) => d.update(x),
            Self::Eddm(d) => d.update(x),
            Self::HddmA(d) => d.update(x),
            Self::HddmW(d) => d.update(x),
            Self::PageHinkley(d) => d.update(x),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Adwin(d) => d.reset(),
            Self::Ddm(d) => d.reset(),
            Self::Eddm(d) => d.reset(),
            Self::HddmA(d) => d.reset(),
            Self::HddmW(d) => d.reset(),
            Self::PageHinkley(d) => d.reset(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn tagged_config_parses_and_rejects_unknown_fields() {
        let c: DetectorConfig =
            serde_json::from_str(r#"{"kind":"adwin","delta":0.01,"clock":1}"#).unwrap();
        let DetectorConfig::Adwin(a) = &c else {
            panic!("wrong variant: {c:?}");
        };
        assert_eq!(a.delta, 0.01);
        assert_eq!(a.clock, 1);
        assert_eq!(a.max_buckets, AdwinConfig::default().max_buckets);

        let c: DetectorConfig =
            serde_json::from_str(r#"{"kind":"page_hinkley","mode":"up"}"#).unwrap();
        assert!(matches!(
            c,
            DetectorConfig::PageHinkley(PageHinkleyConfig {
                mode: PageHinkleyMode::Up,
                ..
            })
        ));

        let err = serde_json::from_str::<DetectorConfig>(r#"{"kind":"ddm","warmstart":3}"#);
        assert!(err.is_err(), "unknown field accepted: {err:?}");
        let err = serde_json::from_str::<DetectorConfig>(r#"{"kind":"kswin"}"#);
        assert!(err.is_err(), "unknown kind accepted: {err:?}");
    }

    #[test]
    fn build_rejects_invalid_config_with_field_name() {
        let c = DetectorConfig::HddmW(HddmWConfig {
            lambda: 0.0,
            ..HddmWConfig::default()
        });
        let err = c.build().unwrap_err();
        assert_eq!(err.detector, "hddm_w");
        assert_eq!(err.field, "lambda");
        assert!(err.to_string().contains("lambda"), "{err}");
    }

    #[test]
    fn every_default_config_is_valid() {
        for c in [
            DetectorConfig::Adwin(AdwinConfig::default()),
            DetectorConfig::Ddm(DdmConfig::default()),
            DetectorConfig::Eddm(EddmConfig::default()),
            DetectorConfig::HddmA(HddmAConfig::default()),
            DetectorConfig::HddmW(HddmWConfig::default()),
            DetectorConfig::PageHinkley(PageHinkleyConfig::default()),
        ] {
            c.validate().unwrap();
            let mut d = c.build().unwrap();
            assert_eq!(d.update(f64::NAN), DetectorSignal::QUIET);
        }
    }

    #[test]
    fn reset_makes_detector_replay_identically() {
        // Error rate 1/7, then 5/7.
        let stream: Vec<f64> = (0..3000)
            .map(|i| f64::from(u8::from(i % 7 < if i < 1500 { 1 } else { 5 })))
            .collect();
        for c in [
            DetectorConfig::Adwin(AdwinConfig::default()),
            DetectorConfig::Ddm(DdmConfig::default()),
            DetectorConfig::PageHinkley(PageHinkleyConfig::default()),
            DetectorConfig::HddmW(HddmWConfig::default()),
        ] {
            let mut d = c.build().unwrap();
            let first: Vec<_> = stream.iter().map(|&x| d.update(x)).collect();
            d.reset();
            let second: Vec<_> = stream.iter().map(|&x| d.update(x)).collect();
            assert_eq!(first, second, "{c:?}");
            assert!(first.iter().any(|s| s.drift), "{c:?} never fired");
        }
    }
}
