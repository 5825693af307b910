//! Writer-schema compilation for the hot-path decoders: a generic skipper and typed read plans.
//!
//! A decoder is built once per (writer schema, reader schema) pair. Building walks the writer
//! schema into small plans so that decoding a message is a loop over precomputed steps, with no
//! schema lookups, name resolution or allocation per message:
//!
//! - [`SkipArena`] holds one node per writer type that the reader does not want. Named types
//!   (records, enums, fixed) get one node each and references point at it, so recursive writer
//!   schemas compile to a finite graph. Skipping is bounded by a nesting depth and by the block
//!   count checks of [`Cursor::read_block_count`].
//! - [`ScalarPlan`] reads a writer value that the reader wants as a string, a number or null,
//!   applying Avro's promotions (int → long → float → double, bytes ↔ string) and, when the
//!   writer used a union, picking the branch by the index on the wire — so union branch order
//!   may differ between writer and reader.
//! - [`MapPlan`] does the same for a (possibly nullable) map whose values are scalars.

use std::collections::HashMap;

use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
use apache_avro::Schema;

use crate::error::{CodecError, Result};
use crate::wire::{Cursor, RawStr};

/// Deepest nesting of writer values accepted while skipping (records in arrays in maps, …).
pub const MAX_DEPTH: usize = 64;

/// Index of a node in a [`SkipArena`].
pub type SkipId = usize;

#[derive(Debug, Clone)]
enum SkipNode {
    Null,
    Bool,
    /// `int` and `long` (and their logical types): one varint.
    Varint,
    /// `float`, `double`, `fixed`, `duration`: a fixed number of bytes.
    Fixed(usize),
    /// `bytes`, `string` and their logical types.
    Bytes,
    Enum(usize),
    Array(SkipId),
    Map(SkipId),
    Union(Vec<SkipId>),
    Record(Vec<SkipId>),
    /// A named record whose fields are still being compiled (only seen inside recursion).
    Pending,
}

/// The compiled skippers of one writer schema.
#[derive(Debug, Clone, Default)]
pub struct SkipArena {
    nodes: Vec<SkipNode>,
    /// Smallest encoded size of each node, for block-count checks.
    min_size: Vec<usize>,
    named: HashMap<String, SkipId>,
}

impl SkipArena {
    /// Compiles `schema` (and everything it contains) and returns the id of its skipper.
    pub fn compile(&mut self, schema: &Schema) -> Result<SkipId> {
        let node = match schema {
            Schema::Null => SkipNode::Null,
            Schema::Boolean => SkipNode::Bool,
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => SkipNode::Varint,
            Schema::Float => SkipNode::Fixed(4),
            Schema::Double => SkipNode::Fixed(8),
            Schema::Bytes | Schema::String | Schema::BigDecimal => SkipNode::Bytes,
            Schema::Uuid(UuidSchema::Bytes | UuidSchema::String) => SkipNode::Bytes,
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => SkipNode::Bytes,
                InnerDecimalSchema::Fixed(f) => return Ok(self.named_leaf(&f.name, f.size)),
            },
            Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Duration(f) | Schema::Fixed(f) => {
                return Ok(self.named_leaf(&f.name, f.size));
            }
            Schema::Enum(e) => {
                let id = self.push(SkipNode::Enum(e.symbols.len()));
                self.named.insert(e.name.fullname(None), id);
                return Ok(id);
            }
            Schema::Array(a) => SkipNode::Array(self.compile(&a.items)?),
            Schema::Map(m) => SkipNode::Map(self.compile(&m.types)?),
            Schema::Union(u) => {
                let branches = u
                    .variants()
                    .iter()
                    .map(|b| self.compile(b))
                    .collect::<Result<Vec<_>>>()?;
                SkipNode::Union(branches)
            }
            Schema::Record(r) => {
                // Registered before its fields so that a recursive reference finds it.
                let id = self.push(SkipNode::Pending);
                self.named.insert(r.name.fullname(None), id);
                let fields = r
                    .fields
                    .iter()
                    .map(|f| self.compile(&f.schema))
                    .collect::<Result<Vec<_>>>()?;
                let min = fields.iter().map(|&f| self.min_size_of(f)).sum();
                if let (Some(node), Some(size)) =
                    (self.nodes.get_mut(id), self.min_size.get_mut(id))
                {
                    *node = SkipNode::Record(fields);
                    *size = min;
                }
                return Ok(id);
            }
            Schema::Ref { name } => {
                let full = name.fullname(None);
                return self.named.get(&full).copied().ok_or_else(|| {
                    CodecError::IncompatibleSchemas(format!("unresolved type reference {full}"))
                });
            }
        };
        Ok(self.push(node))
    }

    fn named_leaf(&mut self, name: &apache_avro::schema::Name, size: usize) -> SkipId {
        let id = self.push(SkipNode::Fixed(size));
        self.named.insert(name.fullname(None), id);
        id
    }

    fn push(&mut self, node: SkipNode) -> SkipId {
        let min = match &node {
            SkipNode::Null | SkipNode::Pending | SkipNode::Record(_) => 0,
            SkipNode::Fixed(n) => *n,
            SkipNode::Bool
            | SkipNode::Varint
            | SkipNode::Bytes
            | SkipNode::Enum(_)
            | SkipNode::Array(_)
            | SkipNode::Map(_)
            | SkipNode::Union(_) => 1,
        };
        self.nodes.push(node);
        self.min_size.push(min);
        self.nodes.len() - 1
    }

    fn min_size_of(&self, id: SkipId) -> usize {
        self.min_size.get(id).copied().unwrap_or(0)
    }

    /// Skips one value of node `id`.
    #[inline]
    pub fn skip(&self, cur: &mut Cursor<'_>, id: SkipId) -> Result<()> {
        self.skip_at(cur, id, 0)
    }

    fn skip_at(&self, cur: &mut Cursor<'_>, id: SkipId, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(CodecError::invalid("values nested too deeply"));
        }
        let node = self
            .nodes
            .get(id)
            .ok_or_else(|| CodecError::invalid("internal: unknown skip node"))?;
        match node {
            SkipNode::Null => {}
            SkipNode::Bool => {
                cur.read_bool()?;
            }
            SkipNode::Varint => {
                cur.read_long()?;
            }
            SkipNode::Fixed(n) => {
                cur.take(*n)?;
            }
            SkipNode::Bytes => {
                cur.read_bytes()?;
            }
            SkipNode::Enum(symbols) => {
                let i = cur.read_int()?;
                if usize::try_from(i).map_or(true, |i| i >= *symbols) {
                    return Err(CodecError::invalid(format!("enum index {i} out of range")));
                }
            }
            SkipNode::Array(item) => {
                let min = self.min_size_of(*item);
                loop {
                    let n = cur.read_block_count(min)?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        self.skip_at(cur, *item, depth + 1)?;
                    }
                }
            }
            SkipNode::Map(value) => {
                let min = 1 + self.min_size_of(*value);
                loop {
                    let n = cur.read_block_count(min)?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        cur.read_bytes()?;
                        self.skip_at(cur, *value, depth + 1)?;
                    }
                }
            }
            SkipNode::Union(branches) => {
                let branch = read_branch(cur, branches)?;
                self.skip_at(cur, *branch, depth + 1)?;
            }
            SkipNode::Record(fields) => {
                for f in fields {
                    self.skip_at(cur, *f, depth + 1)?;
                }
            }
            SkipNode::Pending => return Err(CodecError::invalid("internal: incomplete record")),
        }
        Ok(())
    }
}

/// Reads a union branch index and returns that branch.
#[inline(always)]
fn read_branch<'p, T>(cur: &mut Cursor<'_>, branches: &'p [T]) -> Result<&'p T> {
    let i = cur.read_long()?;
    usize::try_from(i)
        .ok()
        .and_then(|i| branches.get(i))
        .ok_or_else(|| CodecError::invalid(format!("union branch index {i} out of range")))
}

/// How one writer value (or one writer union branch) is read as a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Int,
    Long,
    Float,
    Double,
    Str,
    /// `bytes`, read as a string (Avro's bytes → string promotion; must be UTF-8).
    BytesAsStr,
    /// Anything else (boolean, enum, record, …): skipped, then rejected by the target.
    Other(SkipId),
}

/// A scalar value read from the wire, after promotion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Long(i64),
    Double(f64),
    Str(&'a str),
    Other,
}

impl Scalar<'_> {
    /// A short name of the value's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Long(_) => "long",
            Scalar::Double(_) => "double",
            Scalar::Str(_) => "string",
            Scalar::Other => "a non-scalar type",
        }
    }
}

impl ScalarKind {
    /// What this kind decodes to, for compatibility checks at build time.
    pub fn sample(self) -> Scalar<'static> {
        match self {
            ScalarKind::Null => Scalar::Null,
            ScalarKind::Int | ScalarKind::Long => Scalar::Long(0),
            ScalarKind::Float | ScalarKind::Double => Scalar::Double(0.0),
            ScalarKind::Str | ScalarKind::BytesAsStr => Scalar::Str(""),
            ScalarKind::Other(_) => Scalar::Other,
        }
    }
}

/// Reads a writer value that is a scalar or a union of scalars.
#[derive(Debug, Clone)]
pub struct ScalarPlan {
    /// `Some` when the writer used a union: one kind per writer branch, in writer order.
    union: Option<Vec<ScalarKind>>,
    single: ScalarKind,
}

impl ScalarPlan {
    pub fn compile(arena: &mut SkipArena, writer: &Schema) -> Result<Self> {
        match writer {
            Schema::Union(u) => {
                let kinds = u
                    .variants()
                    .iter()
                    .map(|b| scalar_kind(arena, b))
                    .collect::<Result<Vec<_>>>()?;
                Ok(ScalarPlan {
                    union: Some(kinds),
                    single: ScalarKind::Null,
                })
            }
            other => Ok(ScalarPlan {
                union: None,
                single: scalar_kind(arena, other)?,
            }),
        }
    }

    /// Every kind the writer may send.
    pub fn kinds(&self) -> &[ScalarKind] {
        match &self.union {
            Some(kinds) => kinds,
            None => std::slice::from_ref(&self.single),
        }
    }

    /// Inlined into the map loop: it runs once per map entry, and a call per entry (with
    /// the `Result` returned through memory) cost as much as reading the value.
    #[inline(always)]
    pub fn read<'a>(&self, arena: &SkipArena, cur: &mut Cursor<'a>) -> Result<Scalar<'a>> {
        let kind = match &self.union {
            None => self.single,
            Some(kinds) => *read_branch(cur, kinds)?,
        };
        Ok(match kind {
            ScalarKind::Null => Scalar::Null,
            ScalarKind::Int => Scalar::Long(i64::from(cur.read_int()?)),
            ScalarKind::Long => Scalar::Long(cur.read_long()?),
            ScalarKind::Float => Scalar::Double(f64::from(cur.read_f32()?)),
            ScalarKind::Double => Scalar::Double(cur.read_f64()?),
            ScalarKind::Str | ScalarKind::BytesAsStr => Scalar::Str(cur.read_str()?),
            ScalarKind::Other(id) => {
                arena.skip(cur, id)?;
                Scalar::Other
            }
        })
    }
}

fn scalar_kind(arena: &mut SkipArena, schema: &Schema) -> Result<ScalarKind> {
    Ok(match schema {
        Schema::Null => ScalarKind::Null,
        Schema::Int | Schema::Date | Schema::TimeMillis => ScalarKind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => ScalarKind::Long,
        Schema::Float => ScalarKind::Float,
        Schema::Double => ScalarKind::Double,
        Schema::String | Schema::Uuid(UuidSchema::String) => ScalarKind::Str,
        Schema::Bytes => ScalarKind::BytesAsStr,
        other => ScalarKind::Other(arena.compile(other)?),
    })
}

/// How one writer value (or union branch) is read where the reader wants a map of scalars.
#[derive(Debug, Clone)]
pub enum MapKind {
    Null,
    Map(ScalarPlan),
    Other(SkipId),
}

/// Reads a writer map, or a union containing a map and/or null.
#[derive(Debug, Clone)]
pub struct MapPlan {
    union: Option<Vec<MapKind>>,
    single: MapKind,
}

impl MapPlan {
    pub fn compile(arena: &mut SkipArena, writer: &Schema) -> Result<Self> {
        let kind = |arena: &mut SkipArena, s: &Schema| -> Result<MapKind> {
            Ok(match s {
                Schema::Null => MapKind::Null,
                Schema::Map(m) => MapKind::Map(ScalarPlan::compile(arena, &m.types)?),
                other => MapKind::Other(arena.compile(other)?),
            })
        };
        match writer {
            Schema::Union(u) => {
                let kinds = u
                    .variants()
                    .iter()
                    .map(|b| kind(arena, b))
                    .collect::<Result<Vec<_>>>()?;
                Ok(MapPlan {
                    union: Some(kinds),
                    single: MapKind::Null,
                })
            }
            other => Ok(MapPlan {
                union: None,
                single: kind(arena, other)?,
            }),
        }
    }

    pub fn kinds(&self) -> &[MapKind] {
        match &self.union {
            Some(kinds) => kinds,
            None => std::slice::from_ref(&self.single),
        }
    }

    /// Reads the value; `entry` is called per map entry in wire order. Returns `Ok(false)` when
    /// the writer sent null, and an error when it sent something that is neither map nor null.
    ///
    /// Keys are passed unvalidated ([`RawStr`]): `entry` must validate them or recognise them
    /// as byte-equal to a known string. A key that is not UTF-8 is still reported ahead of an
    /// error in its value, as when keys were validated on reading.
    #[inline]
    pub fn read<'a, F>(&self, arena: &SkipArena, cur: &mut Cursor<'a>, mut entry: F) -> Result<bool>
    where
        F: FnMut(RawStr<'a>, Scalar<'a>) -> Result<()>,
    {
        let kind = match &self.union {
            None => &self.single,
            Some(kinds) => read_branch(cur, kinds)?,
        };
        match kind {
            MapKind::Null => Ok(false),
            MapKind::Other(id) => {
                arena.skip(cur, *id)?;
                Err(CodecError::invalid("writer sent a non-map value"))
            }
            MapKind::Map(values) => {
                // Every entry takes at least a key length byte.
                loop {
                    let n = cur.read_block_count(1)?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        let key = cur.read_raw_str()?;
                        let value = match values.read(arena, cur) {
                            Ok(value) => value,
                            Err(e) => {
                                key.to_str()?;
                                return Err(e);
                            }
                        };
                        entry(key, value)?;
                    }
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::{put_long, put_str};

    #[test]
    fn recursive_writer_schema_compiles_and_skips() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[
                {"name":"v","type":"long"},
                {"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        let mut arena = SkipArena::default();
        let id = arena.compile(&schema).unwrap();
        // Node(1) -> Node(2) -> null, then one trailing byte.
        let mut bytes = Vec::new();
        put_long(&mut bytes, 1);
        put_long(&mut bytes, 1);
        put_long(&mut bytes, 2);
        put_long(&mut bytes, 0);
        bytes.push(0x2a);
        let mut cur = Cursor::new(&bytes);
        arena.skip(&mut cur, id).unwrap();
        assert_eq!(cur.remaining(), 1);
    }

    #[test]
    fn deep_recursion_is_an_error_not_a_stack_overflow() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        let mut arena = SkipArena::default();
        let id = arena.compile(&schema).unwrap();
        let mut bytes = vec![2u8; 100_000];
        bytes.push(0);
        let err = arena.skip(&mut Cursor::new(&bytes), id).unwrap_err();
        assert_eq!(err.kind(), "invalid_data");
    }

    #[test]
    fn skips_maps_in_the_sized_block_form_and_checks_enum_range() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"m","type":{"type":"map","values":"string"}},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}]}"#,
        )
        .unwrap();
        let mut arena = SkipArena::default();
        let id = arena.compile(&schema).unwrap();
        let mut bytes = Vec::new();
        put_long(&mut bytes, -1);
        put_long(&mut bytes, 4);
        put_str(&mut bytes, "k");
        put_str(&mut bytes, "v");
        put_long(&mut bytes, 0);
        put_long(&mut bytes, 1);
        let mut cur = Cursor::new(&bytes);
        arena.skip(&mut cur, id).unwrap();
        assert_eq!(cur.remaining(), 0);
        let last = bytes.len() - 1;
        bytes[last] = 4; // enum index 2 of 2 symbols
        assert!(arena.skip(&mut Cursor::new(&bytes), id).is_err());
    }

    #[test]
    fn scalar_plan_follows_the_writer_branch_order() {
        let mut arena = SkipArena::default();
        let writer = Schema::parse_str(r#"["string","null","float"]"#).unwrap();
        let plan = ScalarPlan::compile(&mut arena, &writer).unwrap();
        let mut bytes = Vec::new();
        put_long(&mut bytes, 2);
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        put_long(&mut bytes, 0);
        put_str(&mut bytes, "x");
        put_long(&mut bytes, 1);
        let mut cur = Cursor::new(&bytes);
        assert_eq!(plan.read(&arena, &mut cur).unwrap(), Scalar::Double(1.5));
        assert_eq!(plan.read(&arena, &mut cur).unwrap(), Scalar::Str("x"));
        assert_eq!(plan.read(&arena, &mut cur).unwrap(), Scalar::Null);
        assert_eq!(cur.remaining(), 0);
    }
}
