//! The hot path: decoding `Prediction` and `GroundTruth` datums without allocating.
//!
//! Decoding a prediction into the owned [`Prediction`] costs one `String` per feature name and
//! per categorical value, and those allocations dominate the cost. The join stage needs none of
//! them: it hashes or summarizes each feature and moves on. So these decoders return the
//! record's scalar fields as slices of the input ([`PredictionRef`], [`GroundTruthRef`]) and
//! report map entries (features, scores, tags) to a caller-supplied [`PredictionVisitor`], in
//! wire order, as borrowed `&str`s. Strings are validated UTF-8; every length and count is
//! checked against the remaining input before it is used.
//!
//! # Schema resolution
//! A decoder is built for one (writer schema, reader schema) pair with Avro's resolution rules,
//! once, in [`PredictionDecoder::new`]:
//! - writer fields are read in writer order and matched to reader fields by name (or by a
//!   reader field's alias);
//! - writer fields the reader does not know, or that this decoder does not report, are skipped
//!   with a generic skipper for any Avro type;
//! - reader fields the writer lacks take the reader's default;
//! - unions are resolved by the branch index on the wire, so branch order may differ, and
//!   int → long → float → double and bytes → string promotions apply.
//!
//! A writer whose fields cannot possibly be read (a string where a number is needed, a required
//! field with no default…) is rejected at build time with
//! [`CodecError::IncompatibleSchemas`]. A writer union branch that the reader cannot take is an
//! error only for messages that use it, as in Avro.
//!
//! Decoding borrows from the decoder as well as from the datum (`&'a self`), because a field
//! missing from the writer yields the reader's default, which the decoder owns.

use std::sync::LazyLock;

use apache_avro::Schema;
use driftwatch_core::{FeatureValue, GroundTruth, Prediction, TimestampMs};

use crate::error::{CodecError, Result};
use crate::resolve::{MapKind, MapPlan, Scalar, ScalarPlan, SkipArena, SkipId};
use crate::schema;
use crate::wire::{Cursor, RawStr};

/// A feature value borrowed from the datum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureRef<'a> {
    Missing,
    Number(f64),
    Category(&'a str),
}

impl FeatureRef<'_> {
    /// The owned form.
    pub fn to_owned_value(self) -> FeatureValue {
        match self {
            FeatureRef::Missing => FeatureValue::Missing,
            FeatureRef::Number(x) => FeatureValue::Number(x),
            FeatureRef::Category(s) => FeatureValue::Category(s.to_owned()),
        }
    }
}

impl<'a> From<&'a FeatureValue> for FeatureRef<'a> {
    fn from(v: &'a FeatureValue) -> Self {
        match v {
            FeatureValue::Missing => FeatureRef::Missing,
            FeatureValue::Number(x) => FeatureRef::Number(*x),
            FeatureValue::Category(s) => FeatureRef::Category(s),
        }
    }
}

/// A feature name handed to [`PredictionVisitor::feature_bytes`] is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// Receives the map entries of a prediction as they are decoded, in wire order (entries taken
/// from reader defaults come last).
pub trait PredictionVisitor<'a> {
    fn feature(&mut self, name: &'a str, value: FeatureRef<'a>);

    /// A feature whose name has not been validated as UTF-8 yet; the decoder calls this one.
    ///
    /// The default validates the name and calls [`feature`](Self::feature). A visitor that
    /// only needs an id for the name may override it to skip the validation when the bytes
    /// equal a name it already holds as a `str` (equal bytes are valid UTF-8 too); any other
    /// bytes it must validate, returning `Err(NotUtf8)` when they are not UTF-8, which fails
    /// the decode with [`CodecError::InvalidUtf8`].
    #[inline]
    fn feature_bytes(
        &mut self,
        name: &'a [u8],
        value: FeatureRef<'a>,
    ) -> std::result::Result<(), NotUtf8> {
        let name = std::str::from_utf8(name).map_err(|_| NotUtf8)?;
        self.feature(name, value);
        Ok(())
    }
    fn score(&mut self, class: &'a str, p: f64) {
        let _ = (class, p);
    }
    fn tag(&mut self, key: &'a str, value: &'a str) {
        let _ = (key, value);
    }
}

/// A visitor that ignores every map entry.
#[derive(Debug, Default, Clone, Copy)]
pub struct IgnoreEntries;

impl<'a> PredictionVisitor<'a> for IgnoreEntries {
    fn feature(&mut self, _: &'a str, _: FeatureRef<'a>) {}
}

/// The scalar fields of a prediction, borrowed from the datum (or from the decoder's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionRef<'a> {
    pub request_id: &'a str,
    pub model_id: &'a str,
    pub model_version: &'a str,
    pub timestamp: TimestampMs,
    pub predicted_label: Option<&'a str>,
    pub predicted_value: Option<f64>,
    /// Whether `scores` was present (possibly empty) rather than null.
    pub has_scores: bool,
}

/// The fields of a ground-truth label, borrowed from the datum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruthRef<'a> {
    pub request_id: &'a str,
    pub model_id: Option<&'a str>,
    pub timestamp: TimestampMs,
    pub label: Option<&'a str>,
    pub value: Option<f64>,
}

impl GroundTruthRef<'_> {
    pub fn to_owned_record(&self) -> GroundTruth {
        GroundTruth {
            request_id: self.request_id.to_owned(),
            model_id: self.model_id.map(str::to_owned),
            timestamp: self.timestamp,
            label: self.label.map(str::to_owned),
            value: self.value,
        }
    }
}

/// Where a decoded field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    RequestId,
    ModelId,
    ModelVersion,
    Timestamp,
    Label,
    Value,
    Features,
    Scores,
    Tags,
}

/// The reader-side type a slot is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Str,
    OptStr,
    Long,
    OptF64,
    /// `map<union{null, double, string}>`
    Features,
    /// `union{null, map<double>}`
    Scores,
    /// `map<string>`
    Tags,
}

impl Expect {
    fn is_map(self) -> bool {
        matches!(self, Expect::Features | Expect::Scores | Expect::Tags)
    }

    /// Whether a (map value, for maps) scalar of this type is acceptable.
    fn accepts(self, v: &Scalar<'_>) -> bool {
        match self {
            Expect::Str | Expect::Tags => matches!(v, Scalar::Str(_)),
            Expect::OptStr => matches!(v, Scalar::Null | Scalar::Str(_)),
            Expect::Long => matches!(v, Scalar::Long(_)),
            Expect::OptF64 => matches!(v, Scalar::Null | Scalar::Long(_) | Scalar::Double(_)),
            Expect::Features => !matches!(v, Scalar::Other),
            Expect::Scores => matches!(v, Scalar::Long(_) | Scalar::Double(_)),
        }
    }

    fn map_nullable(self) -> bool {
        self == Expect::Scores
    }

    /// Whether a writer map plan can ever produce an acceptable value.
    fn accepts_map_kind(self, k: &MapKind) -> bool {
        match k {
            MapKind::Null => self.map_nullable(),
            MapKind::Other(_) => false,
            MapKind::Map(values) => values.kinds().iter().any(|k| self.accepts(&k.sample())),
        }
    }

    /// Whether every reader map plan branch is of the expected shape.
    fn reader_map_kind_ok(self, k: &MapKind) -> bool {
        match k {
            MapKind::Null => self.map_nullable(),
            MapKind::Other(_) => false,
            MapKind::Map(values) => values.kinds().iter().all(|k| self.accepts(&k.sample())),
        }
    }
}

/// One reader field this decoder reports.
struct Target {
    name: &'static str,
    slot: Slot,
    expect: Expect,
}

const PREDICTION_TARGETS: &[Target] = &[
    Target {
        name: "request_id",
        slot: Slot::RequestId,
        expect: Expect::Str,
    },
    Target {
        name: "model_id",
        slot: Slot::ModelId,
        expect: Expect::Str,
    },
    Target {
        name: "model_version",
        slot: Slot::ModelVersion,
        expect: Expect::Str,
    },
    Target {
        name: "timestamp",
        slot: Slot::Timestamp,
        expect: Expect::Long,
    },
    Target {
        name: "features",
        slot: Slot::Features,
        expect: Expect::Features,
    },
    Target {
        name: "predicted_label",
        slot: Slot::Label,
        expect: Expect::OptStr,
    },
    Target {
        name: "predicted_value",
        slot: Slot::Value,
        expect: Expect::OptF64,
    },
    Target {
        name: "scores",
        slot: Slot::Scores,
        expect: Expect::Scores,
    },
    Target {
        name: "tags",
        slot: Slot::Tags,
        expect: Expect::Tags,
    },
];

const GROUND_TRUTH_TARGETS: &[Target] = &[
    Target {
        name: "request_id",
        slot: Slot::RequestId,
        expect: Expect::Str,
    },
    Target {
        name: "model_id",
        slot: Slot::ModelId,
        expect: Expect::OptStr,
    },
    Target {
        name: "timestamp",
        slot: Slot::Timestamp,
        expect: Expect::Long,
    },
    Target {
        name: "label",
        slot: Slot::Label,
        expect: Expect::OptStr,
    },
    Target {
        name: "value",
        slot: Slot::Value,
        expect: Expect::OptF64,
    },
];

/// An owned scalar, for reader defaults.
#[derive(Debug, Clone, PartialEq)]
enum OwnedScalar {
    Null,
    Long(i64),
    Double(f64),
    Str(String),
}

impl OwnedScalar {
    fn as_scalar(&self) -> Scalar<'_> {
        match self {
            OwnedScalar::Null => Scalar::Null,
            OwnedScalar::Long(v) => Scalar::Long(*v),
            OwnedScalar::Double(v) => Scalar::Double(*v),
            OwnedScalar::Str(s) => Scalar::Str(s),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(match v {
            serde_json::Value::Null => OwnedScalar::Null,
            serde_json::Value::String(s) => OwnedScalar::Str(s.clone()),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => OwnedScalar::Long(i),
                None => OwnedScalar::Double(n.as_f64()?),
            },
            _ => return None,
        })
    }
}

/// A reader default for a field the writer lacks.
#[derive(Debug, Clone)]
enum FieldDefault {
    Scalar(OwnedScalar),
    /// `None` is a null map (only for `scores`).
    Map(Option<Vec<(String, OwnedScalar)>>),
}

enum Step {
    Skip(SkipId),
    Scalar {
        target: &'static Target,
        plan: ScalarPlan,
    },
    Map {
        target: &'static Target,
        plan: MapPlan,
    },
}

/// Values collected for the scalar slots.
#[derive(Default)]
struct Fields<'a> {
    request_id: Option<&'a str>,
    model_id: Option<&'a str>,
    model_version: Option<&'a str>,
    timestamp: Option<i64>,
    label: Option<&'a str>,
    value: Option<f64>,
    has_scores: bool,
}

fn required<T>(v: Option<T>, name: &str) -> Result<T> {
    v.ok_or_else(|| CodecError::MissingField(name.to_owned()))
}

fn wrong_type(target: &Target, v: &Scalar<'_>) -> CodecError {
    CodecError::invalid(format!(
        "field `{}`: writer sent {}, not readable as the reader's type",
        target.name,
        v.type_name()
    ))
}

impl<'a> Fields<'a> {
    /// Inlined into the field loop (called once per scalar field of every datum).
    #[inline(always)]
    fn store(&mut self, target: &Target, v: Scalar<'a>) -> Result<()> {
        if !target.expect.accepts(&v) {
            return Err(wrong_type(target, &v));
        }
        let as_str = match v {
            Scalar::Str(s) => Some(s),
            _ => None,
        };
        match target.slot {
            Slot::RequestId => {
                if as_str.is_some_and(str::is_empty) {
                    return Err(CodecError::invalid("empty request_id"));
                }
                self.request_id = as_str;
            }
            Slot::ModelId => self.model_id = as_str,
            Slot::ModelVersion => self.model_version = as_str,
            Slot::Label => self.label = as_str,
            Slot::Timestamp => {
                if let Scalar::Long(t) = v {
                    self.timestamp = Some(t);
                }
            }
            Slot::Value => {
                self.value = match v {
                    Scalar::Long(x) => Some(x as f64),
                    Scalar::Double(x) => Some(x),
                    _ => None,
                }
            }
            Slot::Features | Slot::Scores | Slot::Tags => {}
        }
        Ok(())
    }
}

/// Reports one map entry. Feature names go to the visitor unvalidated (see
/// [`PredictionVisitor::feature_bytes`]); every other key is validated here, and an invalid
/// key is reported before a wrong value type, as when keys were validated on reading.
#[inline(always)]
fn emit<'a, V: PredictionVisitor<'a>>(
    target: &Target,
    v: &mut V,
    key: RawStr<'a>,
    value: Scalar<'a>,
) -> Result<()> {
    let feature = match (target.slot, value) {
        (Slot::Features, Scalar::Null) => FeatureRef::Missing,
        (Slot::Features, Scalar::Double(x)) => FeatureRef::Number(x),
        (Slot::Features, Scalar::Long(x)) => FeatureRef::Number(x as f64),
        (Slot::Features, Scalar::Str(s)) => FeatureRef::Category(s),
        (Slot::Scores, Scalar::Double(x)) => {
            v.score(key.to_str()?, x);
            return Ok(());
        }
        (Slot::Scores, Scalar::Long(x)) => {
            v.score(key.to_str()?, x as f64);
            return Ok(());
        }
        (Slot::Tags, Scalar::Str(s)) => {
            v.tag(key.to_str()?, s);
            return Ok(());
        }
        (_, other) => {
            key.to_str()?;
            return Err(wrong_type(target, &other));
        }
    };
    v.feature_bytes(key.bytes, feature)
        .map_err(|NotUtf8| CodecError::InvalidUtf8 { offset: key.offset })
}

/// A compiled (writer, reader) resolution for one record kind.
struct Plan {
    arena: SkipArena,
    steps: Vec<Step>,
    defaults: Vec<(&'static Target, FieldDefault)>,
}

fn record_of<'s>(s: &'s Schema, role: &str) -> Result<&'s apache_avro::schema::RecordSchema> {
    match s {
        Schema::Record(r) => Ok(r),
        _ => Err(CodecError::IncompatibleSchemas(format!(
            "{role} schema is not a record"
        ))),
    }
}

impl Plan {
    fn new(writer: &Schema, reader: &Schema, targets: &'static [Target]) -> Result<Self> {
        let w = record_of(writer, "writer")?;
        let r = record_of(reader, "reader")?;
        let incompatible = |msg: String| CodecError::IncompatibleSchemas(msg);

        // Reader fields this decoder reports, with their target, after checking their types.
        let mut wanted: Vec<(&apache_avro::schema::RecordField, &'static Target)> = Vec::new();
        for target in targets {
            let Some(field) = r.fields.iter().find(|f| f.name == target.name) else {
                if matches!(target.expect, Expect::Str | Expect::Long) {
                    return Err(incompatible(format!(
                        "reader schema has no `{}` field",
                        target.name
                    )));
                }
                continue;
            };
            let mut scratch = SkipArena::default();
            let ok = if target.expect.is_map() {
                let plan = MapPlan::compile(&mut scratch, &field.schema)?;
                plan.kinds()
                    .iter()
                    .all(|k| target.expect.reader_map_kind_ok(k))
            } else {
                let plan = ScalarPlan::compile(&mut scratch, &field.schema)?;
                plan.kinds()
                    .iter()
                    .all(|k| target.expect.accepts(&k.sample()))
            };
            if !ok {
                return Err(incompatible(format!(
                    "reader field `{}` does not have the type this decoder reads",
                    target.name
                )));
            }
            wanted.push((field, target));
        }

        let mut arena = SkipArena::default();
        let mut steps = Vec::with_capacity(w.fields.len());
        let mut seen: Vec<&'static str> = Vec::new();
        for wf in &w.fields {
            let matched = wanted
                .iter()
                .find(|(rf, _)| rf.name == wf.name || rf.aliases.iter().any(|a| a == &wf.name));
            let Some((_, target)) = matched else {
                steps.push(Step::Skip(arena.compile(&wf.schema)?));
                continue;
            };
            seen.push(target.name);
            if target.expect.is_map() {
                let plan = MapPlan::compile(&mut arena, &wf.schema)?;
                if !plan
                    .kinds()
                    .iter()
                    .any(|k| target.expect.accepts_map_kind(k))
                {
                    return Err(incompatible(format!(
                        "writer field `{}` cannot be read as reader field `{}`",
                        wf.name, target.name
                    )));
                }
                steps.push(Step::Map { target, plan });
            } else {
                let plan = ScalarPlan::compile(&mut arena, &wf.schema)?;
                if !plan
                    .kinds()
                    .iter()
                    .any(|k| target.expect.accepts(&k.sample()))
                {
                    return Err(incompatible(format!(
                        "writer field `{}` cannot be read as reader field `{}`",
                        wf.name, target.name
                    )));
                }
                steps.push(Step::Scalar { target, plan });
            }
        }

        let mut defaults = Vec::new();
        for (rf, target) in &wanted {
            if seen.contains(&target.name) {
                continue;
            }
            let missing = || {
                incompatible(format!(
                    "writer lacks `{}` and the reader gives no usable default",
                    target.name
                ))
            };
            let json = rf.default.as_ref().ok_or_else(missing)?;
            let default = if target.expect.is_map() {
                match json {
                    serde_json::Value::Null if target.expect.map_nullable() => {
                        FieldDefault::Map(None)
                    }
                    serde_json::Value::Object(obj) => {
                        let mut entries = Vec::with_capacity(obj.len());
                        for (k, v) in obj {
                            let v = OwnedScalar::from_json(v).ok_or_else(missing)?;
                            if !target.expect.accepts(&v.as_scalar()) {
                                return Err(missing());
                            }
                            entries.push((k.clone(), v));
                        }
                        FieldDefault::Map(Some(entries))
                    }
                    _ => return Err(missing()),
                }
            } else {
                let v = OwnedScalar::from_json(json).ok_or_else(missing)?;
                if !target.expect.accepts(&v.as_scalar()) {
                    return Err(missing());
                }
                FieldDefault::Scalar(v)
            };
            defaults.push((*target, default));
        }
        Ok(Plan {
            arena,
            steps,
            defaults,
        })
    }

    #[inline]
    fn run<'a, V: PredictionVisitor<'a>>(
        &'a self,
        datum: &'a [u8],
        v: &mut V,
    ) -> Result<Fields<'a>> {
        let mut fields = Fields::default();
        let mut cur = Cursor::new(datum);
        for step in &self.steps {
            match step {
                Step::Skip(id) => self.arena.skip(&mut cur, *id)?,
                Step::Scalar { target, plan } => {
                    let value = plan.read(&self.arena, &mut cur)?;
                    fields.store(target, value)?;
                }
                Step::Map { target, plan } => {
                    let present = plan.read(&self.arena, &mut cur, |k, x| emit(target, v, k, x))?;
                    if !present && !target.expect.map_nullable() {
                        return Err(CodecError::invalid(format!(
                            "field `{}`: writer sent null, the reader needs a map",
                            target.name
                        )));
                    }
                    if target.slot == Slot::Scores {
                        fields.has_scores = present;
                    }
                }
            }
        }
        cur.finish()?;
        for (target, default) in &self.defaults {
            match default {
                FieldDefault::Scalar(s) => fields.store(target, s.as_scalar())?,
                FieldDefault::Map(None) => {}
                FieldDefault::Map(Some(entries)) => {
                    if target.slot == Slot::Scores {
                        fields.has_scores = true;
                    }
                    for (k, x) in entries {
                        // Reader defaults are `String`s, valid UTF-8 already.
                        let key = RawStr {
                            bytes: k.as_bytes(),
                            offset: 0,
                        };
                        emit(target, v, key, x.as_scalar())?;
                    }
                }
            }
        }
        Ok(fields)
    }
}

/// Decodes `Prediction` datums written with one writer schema, read with one reader schema.
pub struct PredictionDecoder {
    plan: Plan,
}

impl PredictionDecoder {
    /// Builds the resolution plan; fails if the writer cannot be read with the reader.
    pub fn new(writer: &Schema, reader: &Schema) -> Result<Self> {
        Ok(PredictionDecoder {
            plan: Plan::new(writer, reader, PREDICTION_TARGETS)?,
        })
    }

    /// A decoder for datums written with the current schema.
    pub fn current() -> Result<Self> {
        let s = schema::prediction()?;
        Self::new(s, s)
    }

    /// Decodes one datum, reporting map entries to `v`.
    pub fn decode<'a, V: PredictionVisitor<'a>>(
        &'a self,
        datum: &'a [u8],
        v: &mut V,
    ) -> Result<PredictionRef<'a>> {
        let f = self.plan.run(datum, v)?;
        Ok(PredictionRef {
            request_id: required(f.request_id, "request_id")?,
            model_id: required(f.model_id, "model_id")?,
            model_version: required(f.model_version, "model_version")?,
            timestamp: required(f.timestamp, "timestamp")?,
            predicted_label: f.label,
            predicted_value: f.value,
            has_scores: f.has_scores,
        })
    }

    /// Decodes one datum into the owned record.
    pub fn decode_owned(&self, datum: &[u8]) -> Result<Prediction> {
        #[derive(Default)]
        struct Collect {
            features: Vec<(String, FeatureValue)>,
            scores: Vec<(String, f64)>,
            tags: Vec<(String, String)>,
        }
        impl<'a> PredictionVisitor<'a> for Collect {
            fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
                self.features
                    .push((name.to_owned(), value.to_owned_value()));
            }
            fn score(&mut self, class: &'a str, p: f64) {
                self.scores.push((class.to_owned(), p));
            }
            fn tag(&mut self, key: &'a str, value: &'a str) {
                self.tags.push((key.to_owned(), value.to_owned()));
            }
        }
        let mut c = Collect::default();
        let head = self.decode(datum, &mut c)?;
        Ok(Prediction {
            request_id: head.request_id.to_owned(),
            model_id: head.model_id.to_owned(),
            model_version: head.model_version.to_owned(),
            timestamp: head.timestamp,
            features: c.features,
            predicted_label: head.predicted_label.map(str::to_owned),
            predicted_value: head.predicted_value,
            scores: head.has_scores.then_some(c.scores),
            tags: c.tags,
        })
    }
}

/// Decodes `GroundTruth` datums written with one writer schema, read with one reader schema.
pub struct GroundTruthDecoder {
    plan: Plan,
}

impl GroundTruthDecoder {
    /// Builds the resolution plan; fails if the writer cannot be read with the reader.
    pub fn new(writer: &Schema, reader: &Schema) -> Result<Self> {
        Ok(GroundTruthDecoder {
            plan: Plan::new(writer, reader, GROUND_TRUTH_TARGETS)?,
        })
    }

    /// A decoder for datums written with the current schema.
    pub fn current() -> Result<Self> {
        let s = schema::ground_truth()?;
        Self::new(s, s)
    }

    pub fn decode<'a>(&'a self, datum: &'a [u8]) -> Result<GroundTruthRef<'a>> {
        let f = self.plan.run(datum, &mut IgnoreEntries)?;
        Ok(GroundTruthRef {
            request_id: required(f.request_id, "request_id")?,
            model_id: f.model_id,
            timestamp: required(f.timestamp, "timestamp")?,
            label: f.label,
            value: f.value,
        })
    }

    pub fn decode_owned(&self, datum: &[u8]) -> Result<GroundTruth> {
        Ok(self.decode(datum)?.to_owned_record())
    }
}

static CURRENT_PREDICTION: LazyLock<Result<PredictionDecoder>> =
    LazyLock::new(PredictionDecoder::current);
static CURRENT_GROUND_TRUTH: LazyLock<Result<GroundTruthDecoder>> =
    LazyLock::new(GroundTruthDecoder::current);

/// The shared decoder for the current `Prediction` schema.
pub fn current_prediction_decoder() -> Result<&'static PredictionDecoder> {
    CURRENT_PREDICTION.as_ref().map_err(Clone::clone)
}

/// The shared decoder for the current `GroundTruth` schema.
pub fn current_ground_truth_decoder() -> Result<&'static GroundTruthDecoder> {
    CURRENT_GROUND_TRUTH.as_ref().map_err(Clone::clone)
}

/// Decodes a datum written with the current schema into an owned [`Prediction`].
pub fn decode_prediction(datum: &[u8]) -> Result<Prediction> {
    current_prediction_decoder()?.decode_owned(datum)
}

/// Decodes a datum written with the current schema into an owned [`GroundTruth`].
pub fn decode_ground_truth(datum: &[u8]) -> Result<GroundTruth> {
    current_ground_truth_decoder()?.decode_owned(datum)
}
