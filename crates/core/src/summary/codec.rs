//! Versioned binary form of [`SignatureSummary`].
//!
//! Layout (integers little-endian, `blob` = `u32` length + bytes, length 0 = absent):
//! ```text
//! "DWSG" version:u8(=3) predictions:u64
//! predicted_label:cat predicted_value:num score:num
//! n_features:u16 { name_len:u16 name:utf8 missing:u64 flags:u8 [num if flags&1] [cat if flags&2] }
//! num = count:u64 missing:u64 min:f64 max:f64 mean:f64 m2:f64
//!       n_sample:u16 { value:f64 count:leb128 }   (n_sample ≤ SAMPLE_K, increasing hash)
//! cat = count:u64 missing:u64 mode:u8
//!       mode 0 (exact):    n:u16 { len:leb128 value:utf8 count:leb128 }
//!                          (n ≤ CATEGORY_EXACT_MAX, values strictly increasing bytewise, counts ≥ 1)
//!       mode 1 (bucketed): CATEGORY_BUCKETS × count:leb128  frequent_items:blob hll:blob
//! ```
//! The numeric sample is written in its canonical form ([`DistinctSample`]: entries in
//! increasing hash order), so equal samples encode to equal bytes however they were built.
//! The exact categories are written in their canonical (bytewise) order too, so a categorical
//! summary in its exact mode encodes to the same bytes however it was built; in its bucketed
//! mode the bucket counts are canonical and the display blobs (DataSketches' own serialized
//! forms of frequent items of strings and HLL_8, readable by the Java / C++ / Python
//! libraries) depend on the update order. Decoding checks lengths, UTF-8, duplicate names,
//! that every count is at most [`MAX_COUNT`] and agrees with its categories, buckets, sketch
//! or sample (a sample of fewer than k values holds every value), that the sample and the
//! categories are canonical, the sample within [min, max], a bucketed summary has more than
//! [`CATEGORY_EXACT_MAX`] values, and that no bytes trail.
//!
//! Version 2 carried only the frequent-items and HLL sketches of a categorical summary
//! (order-dependent beyond 768 categories): it is still read while every categorical sketch
//! in it is exact (it then holds every category with its count), so reference profiles and
//! partials of fewer categories carry over; one whose sketch purged is refused. Version 1
//! carried a KLL sketch in place of the sample; it is not read any more (partials are
//! transient: a version-1 partial in a topic at upgrade is reported as unsupported).

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use datasketches::hll::HllSketch;

use super::categorical::Bucketed;
use super::{
    value_hash, CategoricalSummary, DistinctSample, FeatureInterner, FeatureSummary,
    NumericSummary, SampleEntry, SignatureSummary, SummaryError, CATEGORY_BUCKETS,
    CATEGORY_EXACT_MAX, MAX_COUNT, SAMPLE_K,
};

const MAGIC: &[u8; 4] = b"DWSG";
/// Current format version.
pub const FORMAT_VERSION: u8 = 3;

const HAS_NUMERIC: u8 = 1;
const HAS_CATEGORICAL: u8 = 2;

/// Categorical mode: one count per category.
const CAT_EXACT: u8 = 0;
/// Categorical mode: one count per bucket, then the display sketches.
const CAT_BUCKETED: u8 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn leb128(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn blob(&mut self, b: Option<Vec<u8>>) -> Result<(), SummaryError> {
        let b = b.unwrap_or_default();
        let len =
            u32::try_from(b.len()).map_err(|_| SummaryError::malformed("sketch too large"))?;
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(&b);
        Ok(())
    }

    fn numeric(&mut self, n: &NumericSummary) -> Result<(), SummaryError> {
        self.u64(n.count);
        self.u64(n.missing);
        self.f64(n.min);
        self.f64(n.max);
        self.f64(n.mean);
        self.f64(n.m2);
        let sample = n.sample();
        let entries = sample.entries();
        let len = u16::try_from(entries.len())
            .map_err(|_| SummaryError::malformed("sample larger than 65535 values"))?;
        self.u16(len);
        for e in entries {
            self.f64(e.value);
            self.leb128(e.count);
        }
        Ok(())
    }

    fn categorical(&mut self, c: &CategoricalSummary) -> Result<(), SummaryError> {
        let c = c.flushed();
        self.categorical_counts(&c)?;
        if let Some(b) = &c.bucketed {
            self.blob(b.frequent.as_ref().map(FrequentItemsSketch::serialize))?;
            self.blob(b.hll.as_ref().map(HllSketch::serialize))?;
        }
        Ok(())
    }

    /// Everything of a (flushed) categorical summary but the display sketches: the part that
    /// is a pure function of the values.
    fn categorical_counts(&mut self, c: &CategoricalSummary) -> Result<(), SummaryError> {
        self.u64(c.count);
        self.u64(c.missing);
        match &c.bucketed {
            None => {
                self.u8(CAT_EXACT);
                let mut rows: Vec<(&str, u64)> = c.exact.iter().map(|(v, n)| (&**v, *n)).collect();
                // Canonical order, so equal counts encode to equal bytes.
                rows.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let n = u16::try_from(rows.len())
                    .map_err(|_| SummaryError::malformed("too many exact categories"))?;
                self.u16(n);
                for (value, count) in rows {
                    self.leb128(value.len() as u64);
                    self.0.extend_from_slice(value.as_bytes());
                    self.leb128(count);
                }
                Ok(())
            }
            Some(b) => {
                self.u8(CAT_BUCKETED);
                for &count in b.counts.iter() {
                    self.leb128(count);
                }
                Ok(())
            }
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
    /// Format version of the bytes (2 or 3).
    version: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SummaryError> {
        if self.rest.len() < n {
            return Err(SummaryError::malformed(format!("truncated {what}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], SummaryError> {
        let b = self.take(N, what)?;
        <[u8; N]>::try_from(b).map_err(|_| SummaryError::malformed(format!("truncated {what}")))
    }
    fn u8(&mut self, what: &str) -> Result<u8, SummaryError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, SummaryError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, SummaryError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn count(&mut self, what: &str) -> Result<u64, SummaryError> {
        let v = u64::from_le_bytes(self.array(what)?);
        if v > MAX_COUNT {
            return Err(SummaryError::malformed(format!(
                "{what} {v} exceeds {MAX_COUNT}"
            )));
        }
        Ok(v)
    }
    fn f64(&mut self, what: &str) -> Result<f64, SummaryError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    /// A LEB128 count: at most [`MAX_COUNT`], in its shortest form (one encoding per value).
    fn leb128(&mut self, what: &str) -> Result<u64, SummaryError> {
        let mut v = 0u64;
        for i in 0..8 {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(SummaryError::malformed(format!("overlong {what}")));
                }
                if v > MAX_COUNT {
                    return Err(SummaryError::malformed(format!(
                        "{what} {v} exceeds {MAX_COUNT}"
                    )));
                }
                return Ok(v);
            }
        }
        Err(SummaryError::malformed(format!("{what} too long")))
    }
    fn blob(&mut self, what: &str) -> Result<Option<&'a [u8]>, SummaryError> {
        let len = self.u32(what)? as usize;
        if len == 0 {
            return Ok(None);
        }
        self.take(len, what).map(Some)
    }

    fn numeric(&mut self) -> Result<NumericSummary, SummaryError> {
        let count = self.count("numeric count")?;
        let missing = self.count("numeric missing")?;
        let min = self.f64("min")?;
        let max = self.f64("max")?;
        let mean = self.f64("mean")?;
        let m2 = self.f64("m2")?;
        let n = usize::from(self.u16("sample length")?);
        if n > SAMPLE_K {
            return Err(SummaryError::malformed(format!(
                "sample of {n} values exceeds {SAMPLE_K}"
            )));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let value = self.f64("sample value")?;
            let count = self.leb128("sample count")?;
            entries.push(SampleEntry {
                hash: value_hash(value),
                value,
                count,
            });
        }
        let sample = DistinctSample::from_entries(entries)
            .ok_or_else(|| SummaryError::malformed("sample is not canonical"))?;
        let weight = sample.weight();
        let exact = sample.entries().len() < SAMPLE_K;
        if weight > count || (exact && weight != count) {
            return Err(SummaryError::malformed(format!(
                "numeric count {count} disagrees with its sample ({weight})"
            )));
        }
        if count == 0 {
            return Ok(NumericSummary {
                missing,
                ..NumericSummary::default()
            });
        }
        let finite = [min, max, mean, m2].iter().all(|v| v.is_finite());
        if !finite || min > max || m2 < 0.0 {
            return Err(SummaryError::malformed("numeric moments out of range"));
        }
        if sample
            .entries()
            .iter()
            .any(|e| e.value < min || e.value > max)
        {
            return Err(SummaryError::malformed("sample value outside [min, max]"));
        }
        Ok(NumericSummary {
            count,
            missing,
            min,
            max,
            mean,
            m2,
            sample,
        })
    }

    fn categorical(&mut self) -> Result<CategoricalSummary, SummaryError> {
        let count = self.count("categorical count")?;
        let missing = self.count("categorical missing")?;
        let mut c = CategoricalSummary::new();
        c.count = count;
        c.missing = missing;
        if self.version == 2 {
            return self.categorical_v2(c);
        }
        let mut weight = 0u64;
        match self.u8("categorical mode")? {
            CAT_EXACT => {
                let n = usize::from(self.u16("category count")?);
                if n > CATEGORY_EXACT_MAX {
                    return Err(SummaryError::malformed(format!(
                        "{n} exact categories exceed {CATEGORY_EXACT_MAX}"
                    )));
                }
                let mut previous: Option<&[u8]> = None;
                c.exact.reserve(n);
                for _ in 0..n {
                    let len = self.leb128("category length")?;
                    let len = usize::try_from(len)
                        .map_err(|_| SummaryError::malformed("category too long"))?;
                    let bytes = self.take(len, "category")?;
                    let value = std::str::from_utf8(bytes)
                        .map_err(|_| SummaryError::malformed("category is not UTF-8"))?;
                    if previous.is_some_and(|p| p >= bytes) {
                        return Err(SummaryError::malformed(
                            "categories not in strictly increasing order",
                        ));
                    }
                    previous = Some(bytes);
                    let n = self.leb128("category count")?;
                    if n == 0 {
                        return Err(SummaryError::malformed("category with count 0"));
                    }
                    weight = weight.saturating_add(n);
                    c.exact.insert(value.into(), n);
                }
            }
            CAT_BUCKETED => {
                let mut counts = vec![0u64; CATEGORY_BUCKETS];
                for slot in counts.iter_mut() {
                    *slot = self.leb128("bucket count")?;
                    weight = weight.saturating_add(*slot);
                }
                let frequent = match self.blob("frequent items sketch")? {
                    Some(b) => Some(
                        FrequentItemsSketch::<String>::deserialize(b)
                            .map_err(|e| SummaryError::malformed(format!("frequent items: {e}")))?,
                    ),
                    None => None,
                };
                let hll = match self.blob("hll sketch")? {
                    Some(b) => Some(
                        HllSketch::deserialize(b)
                            .map_err(|e| SummaryError::malformed(format!("hll sketch: {e}")))?,
                    ),
                    None => None,
                };
                // More than CATEGORY_EXACT_MAX distinct values need at least as many values.
                if count <= CATEGORY_EXACT_MAX as u64 {
                    return Err(SummaryError::malformed(format!(
                        "bucketed summary of only {count} values"
                    )));
                }
                let sketched = frequent
                    .as_ref()
                    .map_or(0, FrequentItemsSketch::total_weight);
                if sketched != count || hll.is_none() {
                    return Err(SummaryError::malformed(format!(
                        "categorical count {count} disagrees with its sketches ({sketched})"
                    )));
                }
                c.bucketed = Some(Box::new(Bucketed {
                    counts: counts.into_boxed_slice(),
                    frequent,
                    hll,
                }));
            }
            mode => {
                return Err(SummaryError::malformed(format!(
                    "unknown categorical mode {mode}"
                )))
            }
        }
        if weight != count {
            return Err(SummaryError::malformed(format!(
                "categorical count {count} disagrees with its counts ({weight})"
            )));
        }
        Ok(c)
    }
}

/// The encoding of `c` (flushed) as in a signature, and the length of its part that is a pure
/// function of the values (all of it in the exact mode; the bucketed mode's display sketches
/// follow it).
#[cfg(test)]
pub(crate) fn encode_categorical(c: &CategoricalSummary) -> (Vec<u8>, usize) {
    let c = c.flushed();
    let mut pure = Writer(Vec::new());
    let _ = pure.categorical_counts(&c);
    let mut all = Writer(Vec::new());
    let _ = all.categorical(&c);
    (all.0, pure.0.len())
}

/// Decodes one categorical summary as [`encode_categorical`] wrote it, checking that no
/// bytes trail.
#[cfg(test)]
pub(crate) fn decode_categorical(bytes: &[u8]) -> Result<CategoricalSummary, SummaryError> {
    let mut r = Reader {
        rest: bytes,
        version: FORMAT_VERSION,
    };
    let c = r.categorical()?;
    if !r.rest.is_empty() {
        return Err(SummaryError::malformed("trailing bytes"));
    }
    Ok(c)
}

impl Reader<'_> {
    /// Format 2's categorical summary (frequent-items and HLL blobs), read while its
    /// frequent-items sketch never purged: its counts are then exact and complete (at most
    /// 768 categories), so they carry over to the exact table. A purged one has lost the counts
    /// the bucket table needs and is refused.
    fn categorical_v2(
        &mut self,
        mut c: CategoricalSummary,
    ) -> Result<CategoricalSummary, SummaryError> {
        let frequent = match self.blob("frequent items sketch")? {
            Some(b) => Some(
                FrequentItemsSketch::<String>::deserialize(b)
                    .map_err(|e| SummaryError::malformed(format!("frequent items: {e}")))?,
            ),
            None => None,
        };
        let hll = self.blob("hll sketch")?;
        if let Some(b) = hll {
            HllSketch::deserialize(b)
                .map_err(|e| SummaryError::malformed(format!("hll sketch: {e}")))?;
        }
        let weight = frequent
            .as_ref()
            .map_or(0, FrequentItemsSketch::total_weight);
        if weight != c.count || hll.is_some() != (c.count > 0) {
            return Err(SummaryError::malformed(format!(
                "categorical count {} disagrees with its sketches ({weight})",
                c.count
            )));
        }
        let Some(f) = frequent else {
            return Ok(c);
        };
        if f.maximum_error() != 0 {
            return Err(SummaryError::malformed(
                "format 2 categorical summary past its sketch's exact range",
            ));
        }
        let rows = f.frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0);
        let listed: u64 = rows.iter().map(|r| r.estimate()).sum();
        if listed != c.count
            || rows.len() > CATEGORY_EXACT_MAX
            || rows.iter().any(|r| r.estimate() == 0)
        {
            return Err(SummaryError::malformed(
                "format 2 categorical counts are not exact",
            ));
        }
        for row in rows {
            if c.exact
                .insert(row.item().as_str().into(), row.estimate())
                .is_some()
            {
                return Err(SummaryError::malformed("duplicate category"));
            }
        }
        Ok(c)
    }
}

impl SignatureSummary {
    /// The versioned binary form, feature names resolved through `interner` (the one the
    /// signature was built with). Fails only for a feature id the interner does not know or a
    /// sketch over 4 GiB.
    pub fn to_bytes(&self, interner: &FeatureInterner) -> Result<Vec<u8>, SummaryError> {
        let mut w = Writer(Vec::with_capacity(256));
        w.0.extend_from_slice(MAGIC);
        w.u8(FORMAT_VERSION);
        w.u64(self.predictions);
        w.categorical(&self.predicted_label)?;
        w.numeric(&self.predicted_value)?;
        w.numeric(&self.score)?;
        let features: Vec<_> = self.features().collect();
        let n = u16::try_from(features.len())
            .map_err(|_| SummaryError::malformed("more than 65535 features"))?;
        w.u16(n);
        for (id, f) in features {
            let name = interner
                .name(id)
                .ok_or_else(|| SummaryError::malformed(format!("unknown feature id {}", id.0)))?;
            let len = u16::try_from(name.len())
                .map_err(|_| SummaryError::malformed("feature name longer than 65535 bytes"))?;
            w.u16(len);
            w.0.extend_from_slice(name.as_bytes());
            w.u64(f.missing);
            let mut flags = 0;
            if f.numeric.is_some() {
                flags |= HAS_NUMERIC;
            }
            if f.categorical.is_some() {
                flags |= HAS_CATEGORICAL;
            }
            w.u8(flags);
            if let Some(num) = &f.numeric {
                w.numeric(num)?;
            }
            if let Some(cat) = &f.categorical {
                w.categorical(cat)?;
            }
        }
        Ok(w.0)
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output, interning feature names into `interner`.
    /// Malformed or hostile input gives an error, never a panic.
    pub fn from_bytes(
        bytes: &[u8],
        interner: &mut FeatureInterner,
    ) -> Result<SignatureSummary, SummaryError> {
        let mut r = Reader {
            rest: bytes,
            version: FORMAT_VERSION,
        };
        if r.take(4, "magic")? != MAGIC {
            return Err(SummaryError::malformed("bad magic"));
        }
        let version = r.u8("version")?;
        if version != FORMAT_VERSION && version != 2 {
            return Err(SummaryError::UnsupportedVersion(version));
        }
        r.version = version;
        let mut s = SignatureSummary {
            predictions: r.count("predictions")?,
            ..SignatureSummary::default()
        };
        s.predicted_label = r.categorical()?;
        s.predicted_value = r.numeric()?;
        s.score = r.numeric()?;
        let n = r.u16("feature count")?;
        for _ in 0..n {
            let len = usize::from(r.u16("name length")?);
            let name = std::str::from_utf8(r.take(len, "feature name")?)
                .map_err(|_| SummaryError::malformed("feature name is not UTF-8"))?;
            let id = interner.intern(name)?;
            if s.feature(id).is_some() {
                return Err(SummaryError::malformed(format!(
                    "duplicate feature `{name}`"
                )));
            }
            let mut f = FeatureSummary {
                missing: r.count("feature missing")?,
                ..FeatureSummary::default()
            };
            let flags = r.u8("feature flags")?;
            if flags & !(HAS_NUMERIC | HAS_CATEGORICAL) != 0 {
                return Err(SummaryError::malformed("unknown feature flags"));
            }
            if flags & HAS_NUMERIC != 0 {
                f.numeric = Some(Box::new(r.numeric()?));
            }
            if flags & HAS_CATEGORICAL != 0 {
                f.categorical = Some(Box::new(r.categorical()?));
            }
            if f.is_empty() {
                return Err(SummaryError::malformed(format!("empty feature `{name}`")));
            }
            let i = id.index();
            if i >= s.features.len() {
                s.features.resize_with(i + 1, FeatureSummary::default);
            }
            if let Some(slot) = s.features.get_mut(i) {
                *slot = f;
            }
        }
        if !r.rest.is_empty() {
            return Err(SummaryError::malformed(format!(
                "{} trailing bytes",
                r.rest.len()
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
