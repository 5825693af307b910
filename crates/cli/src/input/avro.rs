//! Avro object container files whose schema is a record: one row per record, one column per
//! field.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use apache_avro::types::Value;
use apache_avro::Schema;

use super::{Cell, InputError, Sink};

fn cell(v: &Value) -> Cell<'_> {
    let v = match v {
        Value::Union(_, inner) => inner.as_ref(),
        other => other,
    };
    match v {
        Value::Null => Cell::Missing,
        Value::Int(x) => Cell::Number(f64::from(*x)),
        Value::Long(x) => Cell::Number(*x as f64),
        Value::Float(x) => Cell::Number(f64::from(*x)),
        Value::Double(x) => Cell::Number(*x),
        Value::String(s) | Value::Enum(_, s) => Cell::Category(s),
        Value::Boolean(b) => Cell::Category(if *b { "true" } else { "false" }),
        _ => Cell::Nested,
    }
}

pub(super) fn read<R: Read, S: Sink>(
    input: R,
    file: &Path,
    sink: &mut S,
) -> Result<(), InputError> {
    let reader = apache_avro::Reader::new(input)
        .map_err(|e| InputError::new(file, format!("not an Avro object container file: {e}")))?;
    let Schema::Record(schema) = reader.writer_schema() else {
        return Err(InputError::new(
            file,
            "the file's schema is not a record: no columns to read",
        ));
    };
    let names: Vec<String> = schema.fields.iter().map(|f| f.name.clone()).collect();
    let mut slots = Vec::with_capacity(names.len());
    for name in &names {
        slots.push(
            sink.column(name)
                .map_err(|m| InputError::new(file, m).column(name.clone()))?,
        );
    }
    let by_name: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut rows = 0u64;
    for record in reader {
        let at = rows + 1;
        let record = record.map_err(|e| {
            InputError::new(file, format!("truncated or corrupt: {e}")).at("record", at)
        })?;
        let Value::Record(fields) = record else {
            return Err(InputError::new(file, "not a record").at("record", at));
        };
        for (i, (name, v)) in fields.iter().enumerate() {
            // Fields come in schema order; look the name up only if they do not.
            let index = if names.get(i).is_some_and(|n| n == name) {
                Some(i)
            } else {
                by_name.get(name.as_str()).copied()
            };
            if let Some(slot) = index.and_then(|i| slots.get(i).copied().flatten()) {
                sink.cell(slot, cell(v), at);
            }
        }
        rows += 1;
    }
    sink.rows(rows);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::Collect;
    use super::*;
    use apache_avro::types::Record;
    use apache_avro::Writer;

    fn file(n: usize) -> Vec<u8> {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "Row", "fields": [
                {"name": "x", "type": ["null", "double"]},
                {"name": "c", "type": "string"},
                {"name": "b", "type": "boolean"},
                {"name": "a", "type": {"type": "array", "items": "long"}}
            ]}"#,
        )
        .unwrap();
        let mut writer = Writer::new(&schema, Vec::new()).unwrap();
        for i in 0..n {
            let mut r = Record::new(&schema).unwrap();
            let x = if i == 0 {
                Value::Union(0, Box::new(Value::Null))
            } else {
                Value::Union(1, Box::new(Value::Double(i as f64)))
            };
            r.put("x", x);
            r.put("c", format!("v{i}"));
            r.put("b", i % 2 == 0);
            r.put("a", Value::Array(vec![]));
            writer.append_value(r).unwrap();
        }
        writer.into_inner().unwrap()
    }

    #[test]
    fn typed_cells_by_record() {
        let mut s = Collect::default();
        read(&file(2)[..], Path::new("t.avro"), &mut s).unwrap();
        assert_eq!(s.rows, 2);
        let cells: Vec<_> = s
            .cells
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str(), c.2))
            .collect();
        assert_eq!(
            cells,
            [
                ("x", "∅", 1),
                ("c", "'v0'", 1),
                ("b", "'true'", 1),
                ("a", "nested", 1),
                ("x", "1", 2),
                ("c", "'v1'", 2),
                ("b", "'false'", 2),
                ("a", "nested", 2)
            ]
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let bytes = file(200);
        let e = read(
            &bytes[..bytes.len() - 40],
            Path::new("t.avro"),
            &mut Collect::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("t.avro: record "), "{e}");
        assert!(e.contains("truncated or corrupt"), "{e}");
        let e = read(
            &b"a,b\n1,2\n"[..],
            Path::new("t.avro"),
            &mut Collect::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an Avro object container file"), "{e}");
    }
}
