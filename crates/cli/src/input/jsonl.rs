//! JSON lines: one object a line. Each line is deserialized straight into the sink (keys
//! borrowed from the line, no `Value` tree), so a row costs no allocation once its keys are
//! known.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{Cell, InputError, Sink};

/// Per-file state: the slot of every key seen so far.
struct Columns<'s, S> {
    sink: &'s mut S,
    /// Key → (the sink's slot, index in `keys`).
    slots: HashMap<String, (Option<usize>, usize)>,
    keys: Vec<String>,
    line: u64,
    /// Index in `keys` of the key whose value is being read, for error messages.
    key: Option<usize>,
    /// A sink refusal (the only non-JSON error).
    refused: Option<String>,
}

impl<S: Sink> Columns<'_, S> {
    fn slot(&mut self, key: &str) -> (Option<usize>, usize) {
        if let Some(slot) = self.slots.get(key) {
            return *slot;
        }
        let slot = match self.sink.column(key) {
            Ok(slot) => slot,
            Err(m) => {
                self.refused = Some(m);
                None
            }
        };
        let entry = (slot, self.keys.len());
        self.keys.push(key.to_owned());
        self.slots.insert(key.to_owned(), entry);
        entry
    }
}

/// A key, borrowed from the line unless it holds escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The row: a JSON object whose values go to the sink.
struct Row<'a, 's, S>(&'a mut Columns<'s, S>);

impl<'de, S: Sink> DeserializeSeed<'de> for Row<'_, '_, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for Row<'_, '_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let cols = self.0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match cols.slot(&key) {
                (Some(slot), index) => {
                    cols.key = Some(index);
                    let line = cols.line;
                    map.next_value_seed(Value {
                        sink: &mut *cols.sink,
                        slot,
                        line,
                    })?;
                    cols.key = None;
                }
                (None, _) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// One value, typed as the monitor types a feature.
struct Value<'a, S> {
    sink: &'a mut S,
    slot: usize,
    line: u64,
}

impl<S: Sink> Value<'_, S> {
    fn put(self, cell: Cell<'_>) {
        self.sink.cell(self.slot, cell, self.line);
    }
}

impl<'de, S: Sink> DeserializeSeed<'de> for Value<'_, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for Value<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.put(Cell::Number(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.put(Cell::Number(v as f64));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.put(Cell::Number(v as f64));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.put(Cell::Category(v));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.put(Cell::Category(if v { "true" } else { "false" }));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.put(Cell::Missing);
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.put(Cell::Nested);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.put(Cell::Nested);
        Ok(())
    }
}

/// serde_json's message without its " at line 1 column N" suffix (every line is parsed alone).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((msg, _)) => msg.to_owned(),
        None => text,
    }
}

pub(super) fn read<R: Read, S: Sink>(
    input: R,
    file: &Path,
    sink: &mut S,
) -> Result<(), InputError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut cols = Columns {
        sink,
        slots: HashMap::new(),
        keys: Vec::new(),
        line: 0,
        key: None,
        refused: None,
    };
    let mut buf = Vec::new();
    let mut rows = 0u64;
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf).map_err(|e| {
            InputError::new(file, format!("cannot read: {e}")).at("line", cols.line + 1)
        })?;
        if n == 0 {
            break;
        }
        cols.line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut de = serde_json::Deserializer::from_slice(&buf);
        let parsed = Row(&mut cols).deserialize(&mut de).and_then(|()| de.end());
        if let Some(m) = cols.refused.take() {
            return Err(InputError::new(file, m).at("line", cols.line));
        }
        if let Err(e) = parsed {
            let mut err = InputError::new(
                file,
                format!(
                    "invalid JSON at character {}: {}",
                    e.column(),
                    json_message(&e)
                ),
            )
            .at("line", cols.line);
            if let Some(key) = cols.key.take().and_then(|i| cols.keys.get(i)) {
                err = err.column(key.clone());
            }
            return Err(err);
        }
        rows += 1;
    }
    cols.sink.rows(rows);
    if rows == 0 {
        return Err(InputError::new(file, "no rows: every line is blank"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::Collect;
    use super::*;

    fn run(text: &str, sink: &mut Collect) -> Result<(), InputError> {
        read(text.as_bytes(), Path::new("t.jsonl"), sink)
    }

    #[test]
    fn typed_cells() {
        let mut s = Collect {
            skip: vec!["id".into()],
            ..Collect::default()
        };
        run(
            "{\"x\":1.5,\"c\":\"a\\\"b\",\"id\":[1],\"n\":null}\n\n{\"b\":true,\"x\":2,\"o\":{\"k\":[1]}}\n",
            &mut s,
        )
        .unwrap();
        assert_eq!(s.rows, 2);
        let cells: Vec<_> = s
            .cells
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str(), c.2))
            .collect();
        assert_eq!(
            cells,
            [
                ("x", "1.5", 1),
                ("c", "'a\"b'", 1),
                ("n", "∅", 1),
                ("b", "'true'", 3),
                ("x", "2", 3),
                ("o", "nested", 3)
            ]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = run("{\"a\":1}\n{\"a\":2,\"b\":tru}\n", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.jsonl: line 2, column `b`: invalid JSON at character"),
            "{e}"
        );
        let e = run("[1,2]\n", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.jsonl: line 1: invalid JSON"), "{e}");
        let e = run("{\"a\":1} x\n", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("trailing characters"), "{e}");
        let e = run("\n \n", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no rows"), "{e}");
    }
}
