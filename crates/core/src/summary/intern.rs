//! Feature-name interning: `&str` → dense `u16` id.
//!
//! A signature stores its features in a `Vec` indexed by id, so the hot path hashes each
//! feature name once (foldhash, no allocation for names already seen) and never stores a
//! string per prediction. The id space is bounded so a flood of garbage names ends in
//! [`SummaryError::FeaturesExhausted`] instead of unbounded memory.

use hashbrown::HashMap;

use super::SummaryError;

/// Dense id of an interned feature name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureId(pub u16);

impl FeatureId {
    /// The id as a vector index.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Maps feature names to [`FeatureId`]s and back.
#[derive(Debug, Clone)]
pub struct FeatureInterner {
    ids: HashMap<Box<str>, FeatureId>,
    names: Vec<Box<str>>,
    limit: usize,
}

impl Default for FeatureInterner {
    fn default() -> Self {
        Self::new()
    }
}

impl FeatureInterner {
    /// Default bound on distinct feature names (per interner, i.e. per join task).
    pub const DEFAULT_LIMIT: usize = 4096;

    /// An interner holding up to [`Self::DEFAULT_LIMIT`] names.
    pub fn new() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }

    /// An interner holding up to `limit` names (at most 65 536, the `u16` id space).
    pub fn with_limit(limit: usize) -> Self {
        FeatureInterner {
            ids: HashMap::new(),
            names: Vec::new(),
            limit: limit.min(usize::from(u16::MAX) + 1),
        }
    }

    /// The id of `name`, interning it if new. Allocates only for a new name.
    #[inline]
    pub fn intern(&mut self, name: &str) -> Result<FeatureId, SummaryError> {
        if let Some(id) = self.ids.get(name) {
            return Ok(*id);
        }
        self.insert_new(name)
    }

    /// Like [`intern`](Self::intern), but first checks `hint`, the id this name had last time
    /// (e.g. the id at the same position in the previous message: producers send features in
    /// a stable order). A hit costs one short string compare instead of a hash lookup.
    #[inline]
    pub fn intern_hinted(
        &mut self,
        name: &str,
        hint: FeatureId,
    ) -> Result<FeatureId, SummaryError> {
        match self.hinted(name.as_bytes(), hint) {
            Some(id) => Ok(id),
            None => self.intern(name),
        }
    }

    /// `Some(hint)` when `hint` is the id of a name whose bytes are `name`.
    ///
    /// Why bytes: a decoder can hand over a name before validating it as UTF-8; when the bytes
    /// equal an interned name they are valid UTF-8 (and that name), so the caller can skip the
    /// validation. On `None` the caller validates and falls back to [`intern`](Self::intern).
    #[inline(always)]
    pub fn hinted(&self, name: &[u8], hint: FeatureId) -> Option<FeatureId> {
        match self.names.get(hint.index()) {
            Some(known) if same_bytes(known.as_bytes(), name) => Some(hint),
            _ => None,
        }
    }

    #[cold]
    fn insert_new(&mut self, name: &str) -> Result<FeatureId, SummaryError> {
        let next = self.names.len();
        let raw = u16::try_from(next)
            .ok()
            .filter(|_| next < self.limit)
            .ok_or(SummaryError::FeaturesExhausted { limit: self.limit })?;
        let id = FeatureId(raw);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        Ok(id)
    }

    /// The id of `name` if it was interned.
    #[inline]
    pub fn get(&self, name: &str) -> Option<FeatureId> {
        self.ids.get(name).copied()
    }

    /// The name of an id.
    pub fn name(&self, id: FeatureId) -> Option<&str> {
        self.names.get(id.index()).map(|s| &**s)
    }

    /// Number of interned names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name was interned yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The bound on distinct names.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Byte equality tuned for short strings (feature names, class labels, model ids).
///
/// Why: `==` on slices calls `memcmp`, whose call and dispatch cost more than comparing a
/// 10-byte name. From 4 to 16 bytes this compares the first and the last (possibly
/// overlapping) 4 or 8 bytes as two integers instead, which together cover the slice.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        if let (Some(a0), Some(a1), Some(b0), Some(b1)) = (
            a.first_chunk::<8>(),
            a.last_chunk::<8>(),
            b.first_chunk::<8>(),
            b.last_chunk::<8>(),
        ) {
            return (u64::from_ne_bytes(*a0) ^ u64::from_ne_bytes(*b0))
                | (u64::from_ne_bytes(*a1) ^ u64::from_ne_bytes(*b1))
                == 0;
        }
        if let (Some(a0), Some(a1), Some(b0), Some(b1)) = (
            a.first_chunk::<4>(),
            a.last_chunk::<4>(),
            b.first_chunk::<4>(),
            b.last_chunk::<4>(),
        ) {
            return (u32::from_ne_bytes(*a0) ^ u32::from_ne_bytes(*b0))
                | (u32::from_ne_bytes(*a1) ^ u32::from_ne_bytes(*b1))
                == 0;
        }
    }
    a == b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_stable_and_reversible() {
        let mut i = FeatureInterner::new();
        let a = i.intern("age").unwrap();
        let b = i.intern("country").unwrap();
        assert_ne!(a, b);
        assert_eq!(i.intern("age").unwrap(), a);
        assert_eq!(i.get("country"), Some(b));
        assert_eq!(i.get("missing"), None);
        assert_eq!(i.name(b), Some("country"));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn full_interner_errors_but_still_resolves_known_names() {
        let mut i = FeatureInterner::with_limit(2);
        i.intern("a").unwrap();
        i.intern("b").unwrap();
        assert_eq!(
            i.intern("c"),
            Err(SummaryError::FeaturesExhausted { limit: 2 })
        );
        assert!(i.intern("a").is_ok());
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn hinted_interning_uses_the_hint_only_when_it_matches() {
        let mut i = FeatureInterner::new();
        let a = i.intern("a").unwrap();
        let b = i.intern("b").unwrap();
        assert_eq!(i.intern_hinted("a", a).unwrap(), a);
        assert_eq!(i.intern_hinted("a", b).unwrap(), a);
        assert_eq!(i.intern_hinted("b", FeatureId(999)).unwrap(), b);
        assert_eq!(i.hinted(b"a", a), Some(a));
        assert_eq!(i.hinted(b"a", b), None);
        assert_eq!(i.hinted(b"ab", a), None);
        assert_eq!(i.hinted(b"", a), None);
        assert_eq!(i.hinted(b"a", FeatureId(999)), None);
        let c = i.intern_hinted("c", a).unwrap();
        assert_eq!(i.name(c), Some("c"));
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let samples: Vec<Vec<u8>> = (0..=20usize)
            .flat_map(|len| {
                let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                // The same bytes, and a copy differing in each single position.
                let mut out = vec![base.clone()];
                for i in 0..len {
                    let mut v = base.clone();
                    v[i] ^= 0x20;
                    out.push(v);
                }
                out
            })
            .collect();
        for a in &samples {
            for b in &samples {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn limit_is_capped_to_the_u16_space() {
        let i = FeatureInterner::with_limit(1 << 20);
        assert_eq!(i.limit(), 65_536);
    }
}
