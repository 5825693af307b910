//! CSV with a header line (RFC 4180 quoting), read as byte records: no `String` per field,
//! numbers parsed in place.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use super::{parse_number, trim, Cell, InputError, Sink};

pub(super) fn read<R: Read, S: Sink>(
    input: R,
    file: &Path,
    sink: &mut S,
) -> Result<(), InputError> {
    // Flexible: a row of the wrong length gets our message (naming the missing column), not
    // the csv crate's.
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(input);
    let mut record = ::csv::ByteRecord::new();
    let io = |e: ::csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        InputError::new(file, format!("cannot read: {e}")).at("line", line.max(1))
    };
    if !reader.read_byte_record(&mut record).map_err(io)? {
        return Err(InputError::new(
            file,
            "no header line: a CSV file starts with the column names",
        ));
    }
    let mut names = Vec::with_capacity(record.len());
    let mut seen = HashSet::new();
    for (i, raw) in record.iter().enumerate() {
        let name = std::str::from_utf8(trim(raw))
            .map_err(|_| {
                InputError::new(file, format!("column {} of the header is not UTF-8", i + 1))
                    .at("line", 1)
            })?
            .to_owned();
        if name.is_empty() {
            return Err(InputError::new(
                file,
                format!("column {} of the header has no name", i + 1),
            )
            .at("line", 1));
        }
        if !seen.insert(name.clone()) {
            return Err(InputError::new(file, "the header names this column twice")
                .at("line", 1)
                .column(name));
        }
        names.push(name);
    }
    let mut slots = Vec::with_capacity(names.len());
    for name in &names {
        let slot = sink
            .column(name)
            .map_err(|m| InputError::new(file, m).column(name.clone()))?;
        slots.push(slot);
    }
    let mut rows = 0u64;
    // A record's own position is where the previous one ended, before any blank lines the
    // reader skips, so lines are counted from the reader's position after each record: the
    // line the record ends on (its only line, unless a quoted cell holds a line break).
    let mut line_after = reader.position().line();
    while reader.read_byte_record(&mut record).map_err(io)? {
        let before = line_after;
        line_after = reader.position().line();
        // No line break consumed: the last record of a file without a final newline.
        let line = if line_after > before {
            line_after - 1
        } else {
            line_after
        };
        if record.len() != names.len() {
            let which = names
                .get(record.len())
                .map(|n| format!("; the first absent one is `{n}`"))
                .unwrap_or_default();
            return Err(InputError::new(
                file,
                format!(
                    "{} fields, the header has {} columns{which}",
                    record.len(),
                    names.len()
                ),
            )
            .at("line", line));
        }
        for (i, (raw, slot)) in record.iter().zip(&slots).enumerate() {
            let Some(slot) = *slot else {
                continue;
            };
            let raw = trim(raw);
            let cell = if raw.is_empty() {
                Cell::Missing
            } else if let Some(x) = parse_number(raw) {
                Cell::Number(x)
            } else {
                match std::str::from_utf8(raw) {
                    Ok(s) => Cell::Category(s),
                    Err(_) => {
                        return Err(InputError::new(file, "the cell is not UTF-8 text")
                            .at("line", line)
                            .column(names[i].clone()))
                    }
                }
            };
            sink.cell(slot, cell, line);
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

    fn run(text: &[u8], sink: &mut Collect) -> Result<(), InputError> {
        read(text, Path::new("t.csv"), sink)
    }

    #[test]
    fn typed_cells_with_quotes_and_lines() {
        let mut s = Collect::default();
        run(
            b"\"x\", c ,id\n1.5,\"a, b\",7\n,red,8\n\n-2,\"3\",9\n\"two\nlines\",x,1\n4,y,5",
            &mut s,
        )
        .unwrap();
        assert_eq!(s.names, ["x", "c", "id"]);
        assert_eq!(s.rows, 5);
        // A record spanning lines 6 and 7 is placed where it ends; a last line without a
        // newline is still counted.
        assert!(s.cells.contains(&("x".into(), "'two\nlines'".into(), 7)));
        assert!(s.cells.contains(&("id".into(), "5".into(), 8)));
        let row3: Vec<_> = s.cells.iter().filter(|c| c.2 == 3).collect();
        assert_eq!(row3[0].1, "∅");
        assert_eq!(row3[1].1, "'red'");
        assert_eq!(s.cells[1], ("c".into(), "'a, b'".into(), 2));
        // A quoted number is a number: CSV has no types.
        assert!(
            s.cells.iter().any(|c| c.0 == "c" && c.1 == "3" && c.2 == 5),
            "{:?}",
            s.cells
        );
    }

    #[test]
    fn skipped_columns_are_not_parsed() {
        let mut s = Collect {
            skip: vec!["id".into()],
            ..Collect::default()
        };
        run(b"x,id\n1,\xff\n", &mut s).unwrap();
        assert_eq!(s.cells.len(), 1);
    }

    #[test]
    fn errors_name_line_and_column() {
        let mut s = Collect::default();
        let e = run(b"a,b\n1,2\n3\n", &mut s).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.csv: line 3: 1 fields, the header has 2 columns; the first absent one is `b`"
        );
        let e = run(b"a,b\n1,\xff\n", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.csv: line 2, column `b`: the cell is not UTF-8 text");
        let e = run(b"a,a\n", &mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("column `a`") && e.contains("twice"), "{e}");
        let e = run(b"", &mut Collect::default()).unwrap_err().to_string();
        assert!(e.contains("no header line"), "{e}");
    }
}
