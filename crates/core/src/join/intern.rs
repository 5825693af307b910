//! Interning of model versions and class labels into small integers.
//!
//! A join entry has room for a 16-bit model id and a 32-bit class id, so names are mapped to
//! dense ids once per task and mapped back only when output is built. Both id spaces are
//! bounded: a flood of distinct (possibly garbage) names returns
//! [`JoinError::ModelIdsExhausted`] / [`JoinError::ClassIdsExhausted`] for the caller to
//! dead-letter, instead of growing without limit or panicking.
//!
//! Interning runs once or twice per prediction, so lookups are kept cheap: the tables are
//! `hashbrown` maps with its default (foldhash) hasher instead of SipHash, and the last
//! (model id, version) pair is remembered, since a partition's consecutive predictions almost
//! always come from the same model version; a hit then costs two short string compares.

use hashbrown::HashMap;

use super::JoinError;
use crate::summary::same_bytes;

/// A (model id, model version) pair interned by an [`Interner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelVersionId(pub u16);

impl ModelVersionId {
    /// Reserved for labels that name no model and never met their prediction.
    pub const UNKNOWN: ModelVersionId = ModelVersionId(0);
}

/// A class label interned by an [`Interner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub u32);

/// Number of distinct class ids (`u32` range; `usize::MAX` on 32-bit targets).
const CLASS_SPACE: usize = if usize::BITS > u32::BITS {
    (u32::MAX as usize).wrapping_add(1)
} else {
    usize::MAX
};

/// Model id reported for [`ModelVersionId::UNKNOWN`].
pub const UNKNOWN_MODEL: &str = "unknown";

/// String ↔ id tables of one join task.
#[derive(Debug, Clone)]
pub struct Interner {
    /// id → (model id, version); index 0 is the reserved unknown model.
    models: Vec<(String, String)>,
    /// model id → version → id. Nested so a lookup by `&str` pair needs no allocation.
    model_index: HashMap<String, HashMap<String, ModelVersionId>>,
    classes: Vec<String>,
    class_index: HashMap<String, ClassId>,
    max_models: usize,
    max_classes: usize,
    /// The id returned by the last successful `intern_model` (a cache; see the module docs).
    last_model: Option<ModelVersionId>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl Interner {
    /// An interner using the full id spaces (65 536 model versions including the reserved
    /// unknown one, 2^32 classes).
    pub fn new() -> Self {
        Self::with_limits(usize::from(u16::MAX) + 1, CLASS_SPACE)
    }

    /// An interner with smaller id spaces (clamped to the types' ranges). `max_models` counts
    /// the reserved unknown model.
    pub fn with_limits(max_models: usize, max_classes: usize) -> Self {
        Interner {
            models: vec![(UNKNOWN_MODEL.to_owned(), String::new())],
            model_index: HashMap::new(),
            classes: Vec::new(),
            class_index: HashMap::new(),
            max_models: max_models.clamp(1, usize::from(u16::MAX) + 1),
            max_classes: max_classes.min(CLASS_SPACE),
            last_model: None,
        }
    }

    /// The id of (model id, version), assigning the next one on first sight.
    pub fn intern_model(
        &mut self,
        model_id: &str,
        version: &str,
    ) -> Result<ModelVersionId, JoinError> {
        if let Some(last) = self.last_model {
            if let Some((m, v)) = self.model(last) {
                if same_bytes(m.as_bytes(), model_id.as_bytes())
                    && same_bytes(v.as_bytes(), version.as_bytes())
                {
                    return Ok(last);
                }
            }
        }
        if let Some(id) = self
            .model_index
            .get(model_id)
            .and_then(|versions| versions.get(version))
        {
            self.last_model = Some(*id);
            return Ok(*id);
        }
        let next = self.models.len();
        if next >= self.max_models {
            return Err(JoinError::ModelIdsExhausted {
                limit: self.max_models,
            });
        }
        let id = ModelVersionId(
            u16::try_from(next).map_err(|_| JoinError::ModelIdsExhausted {
                limit: self.max_models,
            })?,
        );
        self.models.push((model_id.to_owned(), version.to_owned()));
        self.model_index
            .entry(model_id.to_owned())
            .or_default()
            .insert(version.to_owned(), id);
        self.last_model = Some(id);
        Ok(id)
    }

    /// The id a label's model hint maps to: labels carry a model id but no version, so the
    /// hint is interned with an empty version.
    pub fn intern_model_hint(&mut self, model_id: &str) -> Result<ModelVersionId, JoinError> {
        self.intern_model(model_id, "")
    }

    /// The id of a class label, assigning the next one on first sight.
    pub fn intern_class(&mut self, label: &str) -> Result<ClassId, JoinError> {
        if let Some(id) = self.class_index.get(label) {
            return Ok(*id);
        }
        let next = self.classes.len();
        let exhausted = JoinError::ClassIdsExhausted {
            limit: self.max_classes,
        };
        if next >= self.max_classes {
            return Err(exhausted);
        }
        let id = ClassId(u32::try_from(next).map_err(|_| exhausted)?);
        self.classes.push(label.to_owned());
        self.class_index.insert(label.to_owned(), id);
        Ok(id)
    }

    /// (model id, version) of an id; `None` for an id this interner never gave out.
    pub fn model(&self, id: ModelVersionId) -> Option<(&str, &str)> {
        self.models
            .get(usize::from(id.0))
            .map(|(m, v)| (m.as_str(), v.as_str()))
    }

    /// The model id string of an id (without version).
    pub fn model_id(&self, id: ModelVersionId) -> Option<&str> {
        self.model(id).map(|(m, _)| m)
    }

    /// The label of a class id.
    pub fn class(&self, id: ClassId) -> Option<&str> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.classes.get(i))
            .map(String::as_str)
    }

    /// Number of model ids handed out, including the reserved unknown one.
    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    /// Number of class ids handed out.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Rebuilds an interner from its tables in id order (model ids from 1; 0 is the reserved
    /// unknown model), as a changelog kept them. Fails when a name repeats or the ids do not
    /// fit, since entries would then point at the wrong names.
    pub fn restore(
        models: impl IntoIterator<Item = (String, String)>,
        classes: impl IntoIterator<Item = String>,
    ) -> Result<Self, JoinError> {
        let mut interner = Interner::new();
        for (expected, (m, v)) in models.into_iter().enumerate() {
            let id = interner.intern_model(&m, &v)?;
            if usize::from(id.0) != expected + 1 {
                return Err(JoinError::InvalidConfig(format!(
                    "restored model `{m}/{v}` repeats an earlier one"
                )));
            }
        }
        for (expected, c) in classes.into_iter().enumerate() {
            let id = interner.intern_class(&c)?;
            if usize::try_from(id.0).ok() != Some(expected) {
                return Err(JoinError::InvalidConfig(format!(
                    "restored class `{c}` repeats an earlier one"
                )));
            }
        }
        Ok(interner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_round_trip() {
        let mut i = Interner::new();
        let a = i.intern_model("fraud", "v1").unwrap();
        let b = i.intern_model("fraud", "v2").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, ModelVersionId::UNKNOWN);
        assert_eq!(i.intern_model("fraud", "v1").unwrap(), a);
        assert_eq!(i.model(b), Some(("fraud", "v2")));
        assert_eq!(i.model(ModelVersionId::UNKNOWN), Some((UNKNOWN_MODEL, "")));
        let h = i.intern_model_hint("fraud").unwrap();
        assert_eq!(i.model(h), Some(("fraud", "")));

        let c = i.intern_class("spam").unwrap();
        assert_eq!(i.intern_class("spam").unwrap(), c);
        assert_eq!(i.class(c), Some("spam"));
        assert_eq!(i.class(ClassId(99)), None);
        assert_eq!(i.model(ModelVersionId(999)), None);
    }

    #[test]
    fn the_last_model_cache_never_returns_a_stale_id() {
        let mut i = Interner::new();
        let a = i.intern_model("fraud", "v1").unwrap();
        assert_eq!(i.intern_model("fraud", "v1").unwrap(), a);
        // Same model, other version; same version, other model; prefixes of the cached pair.
        let b = i.intern_model("fraud", "v2").unwrap();
        let c = i.intern_model("churn", "v2").unwrap();
        let d = i.intern_model("fraud", "v").unwrap();
        let e = i.intern_model("frau", "v1").unwrap();
        let ids = [a, b, c, d, e];
        for (n, x) in ids.iter().enumerate() {
            for y in &ids[n + 1..] {
                assert_ne!(x, y);
            }
        }
        for (id, (m, v)) in ids.iter().zip([
            ("fraud", "v1"),
            ("fraud", "v2"),
            ("churn", "v2"),
            ("fraud", "v"),
            ("frau", "v1"),
        ]) {
            assert_eq!(i.intern_model(m, v).unwrap(), *id);
            assert_eq!(i.intern_model(m, v).unwrap(), *id);
        }
        // The reserved unknown model is not handed out for its own name.
        assert_ne!(
            i.intern_model(UNKNOWN_MODEL, "").unwrap(),
            ModelVersionId::UNKNOWN
        );
    }

    #[test]
    fn exhausted_spaces_return_errors() {
        let mut i = Interner::with_limits(3, 2);
        i.intern_model("a", "1").unwrap();
        i.intern_model("b", "1").unwrap();
        assert_eq!(
            i.intern_model("c", "1"),
            Err(JoinError::ModelIdsExhausted { limit: 3 })
        );
        // Known names still resolve after exhaustion.
        assert!(i.intern_model("a", "1").is_ok());
        i.intern_class("x").unwrap();
        i.intern_class("y").unwrap();
        assert_eq!(
            i.intern_class("z"),
            Err(JoinError::ClassIdsExhausted { limit: 2 })
        );
        assert_eq!(i.model_count(), 3);
        assert_eq!(i.class_count(), 2);
    }

    #[test]
    fn full_model_space_is_u16() {
        let mut i = Interner::new();
        for n in 1..=usize::from(u16::MAX) {
            i.intern_model(&n.to_string(), "").unwrap();
        }
        assert!(matches!(
            i.intern_model("one-too-many", ""),
            Err(JoinError::ModelIdsExhausted { .. })
        ));
    }
}
