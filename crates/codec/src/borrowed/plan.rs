//! The resolution plan of a borrowed decoder: which writer field goes where, how to skip the
//! rest, and the reader defaults of fields the writer lacks (see the module docs of
//! [`super`]).

use apache_avro::Schema;

use super::{FeatureRef, NotUtf8, PredictionVisitor};
use crate::error::{CodecError, Result};
use crate::resolve::{MapKind, MapPlan, Scalar, ScalarPlan, SkipArena, SkipId};
use crate::wire::{Cursor, RawStr};

/// Where a decoded field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
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
pub(super) enum Expect {
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
    pub(super) fn is_map(self) -> bool {
        matches!(self, Expect::Features | Expect::Scores | Expect::Tags)
    }

    /// Whether a (map value, for maps) scalar of this type is acceptable.
    pub(super) fn accepts(self, v: &Scalar<'_>) -> bool {
        match self {
            Expect::Str | Expect::Tags => matches!(v, Scalar::Str(_)),
            Expect::OptStr => matches!(v, Scalar::Null | Scalar::Str(_)),
            Expect::Long => matches!(v, Scalar::Long(_)),
            Expect::OptF64 => matches!(v, Scalar::Null | Scalar::Long(_) | Scalar::Double(_)),
            Expect::Features => !matches!(v, Scalar::Other),
            Expect::Scores => matches!(v, Scalar::Long(_) | Scalar::Double(_)),
        }
    }

    pub(super) fn map_nullable(self) -> bool {
        self == Expect::Scores
    }

    /// Whether a writer map plan can ever produce an acceptable value.
    pub(super) fn accepts_map_kind(self, k: &MapKind) -> bool {
        match k {
            MapKind::Null => self.map_nullable(),
            MapKind::Other(_) => false,
            MapKind::Map(values) => values.kinds().iter().any(|k| self.accepts(&k.sample())),
        }
    }

    /// Whether every reader map plan branch is of the expected shape.
    pub(super) fn reader_map_kind_ok(self, k: &MapKind) -> bool {
        match k {
            MapKind::Null => self.map_nullable(),
            MapKind::Other(_) => false,
            MapKind::Map(values) => values.kinds().iter().all(|k| self.accepts(&k.sample())),
        }
    }
}

/// One reader field this decoder reports.
pub(super) struct Target {
    name: &'static str,
    slot: Slot,
    expect: Expect,
}

pub(super) const PREDICTION_TARGETS: &[Target] = &[
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

pub(super) const GROUND_TRUTH_TARGETS: &[Target] = &[
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
pub(super) enum OwnedScalar {
    Null,
    Long(i64),
    Double(f64),
    Str(String),
}

impl OwnedScalar {
    pub(super) fn as_scalar(&self) -> Scalar<'_> {
        match self {
            OwnedScalar::Null => Scalar::Null,
            OwnedScalar::Long(v) => Scalar::Long(*v),
            OwnedScalar::Double(v) => Scalar::Double(*v),
            OwnedScalar::Str(s) => Scalar::Str(s),
        }
    }

    pub(super) fn from_json(v: &serde_json::Value) -> Option<Self> {
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
pub(super) enum FieldDefault {
    Scalar(OwnedScalar),
    /// `None` is a null map (only for `scores`).
    Map(Option<Vec<(String, OwnedScalar)>>),
}

pub(super) enum Step {
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
pub(super) struct Fields<'a> {
    pub(super) request_id: Option<&'a str>,
    pub(super) model_id: Option<&'a str>,
    pub(super) model_version: Option<&'a str>,
    pub(super) timestamp: Option<i64>,
    pub(super) label: Option<&'a str>,
    pub(super) value: Option<f64>,
    pub(super) has_scores: bool,
}

pub(super) fn required<T>(v: Option<T>, name: &str) -> Result<T> {
    v.ok_or_else(|| CodecError::MissingField(name.to_owned()))
}

pub(super) fn wrong_type(target: &Target, v: &Scalar<'_>) -> CodecError {
    CodecError::invalid(format!(
        "field `{}`: writer sent {}, not readable as the reader's type",
        target.name,
        v.type_name()
    ))
}

impl<'a> Fields<'a> {
    /// Inlined into the field loop (called once per scalar field of every datum).
    #[inline(always)]
    pub(super) fn store(&mut self, target: &Target, v: Scalar<'a>) -> Result<()> {
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
pub(super) fn emit<'a, V: PredictionVisitor<'a>>(
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
pub(super) struct Plan {
    arena: SkipArena,
    steps: Vec<Step>,
    defaults: Vec<(&'static Target, FieldDefault)>,
}

pub(super) fn record_of<'s>(
    s: &'s Schema,
    role: &str,
) -> Result<&'s apache_avro::schema::RecordSchema> {
    match s {
        Schema::Record(r) => Ok(r),
        _ => Err(CodecError::IncompatibleSchemas(format!(
            "{role} schema is not a record"
        ))),
    }
}

impl Plan {
    pub(super) fn new(
        writer: &Schema,
        reader: &Schema,
        targets: &'static [Target],
    ) -> Result<Self> {
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
    pub(super) fn run<'a, V: PredictionVisitor<'a>>(
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
