//! Parquet files, read column by column with the low-level column readers: no Arrow arrays,
//! no row assembly, values handed to the sink straight from the decoded pages.

use std::fs::File;
use std::path::Path;

use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{
    BoolType, ByteArrayType, DataType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::{Cell, InputError, Sink};

/// Values decoded per call.
const BATCH: usize = 8192;

/// A physical type whose values become cells.
trait ToCell: DataType {
    /// `scale` divides integers (decimal columns), 1 otherwise.
    fn cell(v: &Self::T, scale: f64) -> Result<Cell<'_>, &'static str>;
}

impl ToCell for Int32Type {
    fn cell(v: &i32, scale: f64) -> Result<Cell<'_>, &'static str> {
        Ok(Cell::Number(f64::from(*v) / scale))
    }
}

impl ToCell for Int64Type {
    fn cell(v: &i64, scale: f64) -> Result<Cell<'_>, &'static str> {
        Ok(Cell::Number(*v as f64 / scale))
    }
}

impl ToCell for FloatType {
    fn cell(v: &f32, _: f64) -> Result<Cell<'_>, &'static str> {
        Ok(Cell::Number(f64::from(*v)))
    }
}

impl ToCell for DoubleType {
    fn cell(v: &f64, _: f64) -> Result<Cell<'_>, &'static str> {
        Ok(Cell::Number(*v))
    }
}

impl ToCell for BoolType {
    fn cell(v: &bool, _: f64) -> Result<Cell<'_>, &'static str> {
        Ok(Cell::Category(if *v { "true" } else { "false" }))
    }
}

impl ToCell for ByteArrayType {
    fn cell(v: &parquet::data_type::ByteArray, _: f64) -> Result<Cell<'_>, &'static str> {
        v.as_utf8()
            .map(Cell::Category)
            .map_err(|_| "a value is not UTF-8 text")
    }
}

/// Reads one column chunk; `row` is the number of rows before it.
fn column<T: ToCell, S: Sink>(
    mut reader: ColumnReaderImpl<T>,
    max_def: i16,
    scale: f64,
    slot: usize,
    mut row: u64,
    sink: &mut S,
) -> Result<(), String> {
    let mut values: Vec<T::T> = Vec::with_capacity(BATCH);
    let mut defs: Vec<i16> = Vec::with_capacity(BATCH);
    loop {
        values.clear();
        defs.clear();
        let (records, _, _) = reader
            .read_records(BATCH, Some(&mut defs), None, &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            return Ok(());
        }
        if max_def == 0 {
            for v in &values {
                row += 1;
                sink.cell(slot, T::cell(v, scale)?, row);
            }
        } else {
            let mut present = values.iter();
            for &d in &defs {
                row += 1;
                let cell = if d == max_def {
                    let v = present.next().ok_or("fewer values than levels")?;
                    T::cell(v, scale)?
                } else {
                    Cell::Missing
                };
                sink.cell(slot, cell, row);
            }
        }
    }
}

pub(super) fn read<S: Sink>(input: File, file: &Path, sink: &mut S) -> Result<(), InputError> {
    let reader = SerializedFileReader::new(input)
        .map_err(|e| InputError::new(file, format!("not a Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    // Flat columns only: a nested or repeated column is no feature value.
    let mut slots: Vec<Option<usize>> = Vec::with_capacity(schema.num_columns());
    for descr in schema.columns() {
        let flat = descr.path().parts().len() == 1 && descr.max_rep_level() == 0;
        let supported = !matches!(
            descr.physical_type(),
            PhysicalType::INT96 | PhysicalType::FIXED_LEN_BYTE_ARRAY
        );
        let slot = if flat && supported {
            sink.column(descr.name())
                .map_err(|m| InputError::new(file, m).column(descr.name()))?
        } else {
            None
        };
        slots.push(slot);
    }
    let mut rows = 0u64;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(|e| {
            InputError::new(file, format!("truncated or corrupt: {e}")).at("row group", g as u64)
        })?;
        for (j, slot) in slots.iter().enumerate() {
            let Some(slot) = *slot else {
                continue;
            };
            let descr = schema.column(j);
            let decimal = descr.converted_type() == ConvertedType::DECIMAL
                || matches!(descr.logical_type_ref(), Some(LogicalType::Decimal { .. }));
            let scale = if decimal {
                10f64.powi(descr.type_scale())
            } else {
                1.0
            };
            let max_def = descr.max_def_level();
            let fail = |m: String| {
                InputError::new(file, format!("truncated or corrupt: {m}"))
                    .at("row group", g as u64)
                    .column(descr.name())
            };
            let reader = group
                .get_column_reader(j)
                .map_err(|e| fail(e.to_string()))?;
            let done = match reader {
                ColumnReader::Int32ColumnReader(r) => column(r, max_def, scale, slot, rows, sink),
                ColumnReader::Int64ColumnReader(r) => column(r, max_def, scale, slot, rows, sink),
                ColumnReader::FloatColumnReader(r) => column(r, max_def, scale, slot, rows, sink),
                ColumnReader::DoubleColumnReader(r) => column(r, max_def, scale, slot, rows, sink),
                ColumnReader::BoolColumnReader(r) => column(r, max_def, scale, slot, rows, sink),
                ColumnReader::ByteArrayColumnReader(r) => {
                    column(r, max_def, scale, slot, rows, sink)
                }
                // Excluded above.
                ColumnReader::Int96ColumnReader(_)
                | ColumnReader::FixedLenByteArrayColumnReader(_) => Ok(()),
            };
            done.map_err(fail)?;
        }
        let n = u64::try_from(group.metadata().num_rows()).unwrap_or(0);
        rows += n;
        sink.rows(n);
    }
    Ok(())
}
