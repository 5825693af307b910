//! Input records (`Prediction`, `GroundTruth`) from files, for `backtest`: JSON lines in the
//! documented JSON form (`schemas/README.md`), or Avro object container files whose schema is
//! the record's (any compatible version: resolved as the join stage resolves a writer schema).
//!
//! A record that does not decode is not fatal: the join stage would dead-letter it, so the
//! reader counts it, keeps the first error for a note, and goes on. A file that cannot be
//! opened or is not of its format is an [`InputError`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use driftwatch_codec::{
    from_avro, from_json_slice, AvroRecord, GroundTruthDecoder, JsonRecord, PayloadFormat,
    PredictionDecoder, RecordKind,
};
use driftwatch_core::{GroundTruth, Prediction};

use super::{InputError, InputFormat};

/// Decodes one Avro datum of a file's writer schema.
pub type DatumDecoder<T> = Box<dyn Fn(&[u8]) -> Result<T, String>>;

/// A record kind this reader yields.
pub trait InputRecord: Sized {
    const KIND: RecordKind;
    fn from_json(line: &[u8]) -> Result<Self, String>;
    /// The record's event time (ms since the epoch).
    fn event_time(&self) -> i64;
    /// Decodes a Kafka record's payload in the forms the join stage reads it (JSON, bare Avro
    /// of the current schema). A framed payload names a registry schema id, which an offline
    /// reader cannot resolve: it is refused, and counted as the join would count it.
    fn from_payload(payload: &[u8]) -> Result<Self, String>;
    /// A decoder of datums of `writer`.
    fn avro_decoder(writer: &Schema) -> Result<DatumDecoder<Self>, String>;
}

impl InputRecord for Prediction {
    const KIND: RecordKind = RecordKind::Prediction;
    fn from_json(line: &[u8]) -> Result<Self, String> {
        from_json_slice(line).map_err(|e| e.to_string())
    }
    fn event_time(&self) -> i64 {
        self.timestamp
    }
    fn from_payload(payload: &[u8]) -> Result<Self, String> {
        payload_of(payload)
    }
    fn avro_decoder(writer: &Schema) -> Result<DatumDecoder<Self>, String> {
        let current = <Self as InputRecord>::KIND
            .schema()
            .map_err(|e| e.to_string())?;
        let d = PredictionDecoder::new(writer, current).map_err(|e| e.to_string())?;
        Ok(Box::new(move |datum| {
            d.decode_owned(datum).map_err(|e| e.to_string())
        }))
    }
}

impl InputRecord for GroundTruth {
    const KIND: RecordKind = RecordKind::GroundTruth;
    fn from_json(line: &[u8]) -> Result<Self, String> {
        from_json_slice(line).map_err(|e| e.to_string())
    }
    fn event_time(&self) -> i64 {
        self.timestamp
    }
    fn from_payload(payload: &[u8]) -> Result<Self, String> {
        payload_of(payload)
    }
    fn avro_decoder(writer: &Schema) -> Result<DatumDecoder<Self>, String> {
        let current = <Self as InputRecord>::KIND
            .schema()
            .map_err(|e| e.to_string())?;
        let d = GroundTruthDecoder::new(writer, current).map_err(|e| e.to_string())?;
        Ok(Box::new(move |datum| {
            d.decode_owned(datum).map_err(|e| e.to_string())
        }))
    }
}

fn payload_of<T: AvroRecord + JsonRecord>(payload: &[u8]) -> Result<T, String> {
    match PayloadFormat::detect(payload) {
        PayloadFormat::Json => from_json_slice(payload).map_err(|e| e.to_string()),
        PayloadFormat::Framed { schema_id } => Err(format!(
            "framed payload with schema id {schema_id}: offline replay reads JSON and bare Avro"
        )),
        PayloadFormat::BareAvro => from_avro(payload).map_err(|e| e.to_string()),
    }
}

enum Source<T> {
    Lines(std::io::Split<BufReader<File>>),
    Avro {
        reader: Box<apache_avro::Reader<'static, BufReader<File>>>,
        schema: Schema,
        decode: DatumDecoder<T>,
    },
}

/// The records of one file, in file order. See the module docs.
pub struct RecordReader<T: InputRecord> {
    file: PathBuf,
    source: Source<T>,
    unit: &'static str,
    position: u64,
    /// Records that did not decode, and the first such error.
    pub undecodable: u64,
    pub first_error: Option<InputError>,
    /// A read error that ended the file early.
    pub failed: Option<InputError>,
}

impl<T: InputRecord> RecordReader<T> {
    /// Opens `path` (JSON lines or Avro, by its extension).
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let format = InputFormat::of_path(path);
        let file =
            File::open(path).map_err(|e| InputError::new(path, format!("cannot open: {e}")))?;
        let input = BufReader::with_capacity(1 << 16, file);
        let source =
            match format {
                Some(InputFormat::Jsonl) => Source::Lines(input.split(b'\n')),
                Some(InputFormat::Avro) => {
                    let reader = apache_avro::Reader::new(input).map_err(|e| {
                        InputError::new(path, format!("not an Avro object container file: {e}"))
                    })?;
                    let schema = reader.writer_schema().clone();
                    let decode = T::avro_decoder(&schema).map_err(|e| {
                        InputError::new(
                            path,
                            format!("the file's schema cannot be read as {:?}: {e}", T::KIND),
                        )
                    })?;
                    Source::Avro {
                        reader: Box::new(reader),
                        schema,
                        decode,
                    }
                }
                _ => return Err(InputError::new(
                    path,
                    "unknown format: records are read from JSON lines (.jsonl, .ndjson, .json) \
                     or Avro container files (.avro)",
                )),
            };
        Ok(RecordReader {
            file: path.to_owned(),
            source,
            unit: format.map_or("record", InputFormat::unit),
            position: 0,
            undecodable: 0,
            first_error: None,
            failed: None,
        })
    }

    fn bad(&mut self, message: String) {
        self.undecodable += 1;
        if self.first_error.is_none() {
            self.first_error =
                Some(InputError::new(&self.file, message).at(self.unit, self.position));
        }
    }
}

fn datum(schema: &Schema, value: Value) -> Result<Vec<u8>, String> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| e.to_string())
}

impl<T: InputRecord> Iterator for RecordReader<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            self.position += 1;
            let decoded = match &mut self.source {
                Source::Lines(lines) => match lines.next()? {
                    Ok(line) => {
                        let line = super::trim(line.strip_suffix(b"\r").unwrap_or(&line));
                        if line.is_empty() {
                            continue;
                        }
                        T::from_json(line)
                    }
                    Err(e) => {
                        let e = InputError::new(&self.file, format!("read error: {e}"));
                        self.failed = Some(e.at(self.unit, self.position));
                        return None;
                    }
                },
                Source::Avro {
                    reader,
                    schema,
                    decode,
                } => match reader.next()? {
                    Ok(value) => datum(schema, value).and_then(|d| decode(&d)),
                    Err(e) => {
                        let e = InputError::new(&self.file, format!("truncated or corrupt: {e}"));
                        self.failed = Some(e.at(self.unit, self.position));
                        return None;
                    }
                },
            };
            match decoded {
                Ok(record) => return Some(record),
                Err(message) => self.bad(message),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use driftwatch_codec::to_json;

    fn prediction(i: i64) -> Prediction {
        Prediction {
            request_id: format!("r{i}"),
            model_id: "m".into(),
            model_version: "v1".into(),
            timestamp: 1_000 + i,
            features: vec![],
            predicted_label: Some("a".into()),
            predicted_value: None,
            scores: None,
            tags: vec![],
        }
    }

    #[test]
    fn json_lines_read_in_order_and_bad_lines_are_counted() {
        let dir = std::env::temp_dir().join(format!("dw-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.jsonl");
        let text = format!(
            "{}\n\n{{\"oops\": 1}}\r\n{}\n",
            to_json(&prediction(1)).unwrap(),
            to_json(&prediction(2)).unwrap()
        );
        std::fs::write(&path, text).unwrap();
        let mut r = RecordReader::<Prediction>::open(&path).unwrap();
        let got: Vec<i64> = r.by_ref().map(|p| p.timestamp).collect();
        assert_eq!(got, [1_001, 1_002]);
        assert_eq!(r.undecodable, 1);
        let e = r.first_error.unwrap().to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(RecordReader::<Prediction>::open(&dir.join("p.csv")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kafka_payloads_decode_as_the_join_reads_them_and_framed_ones_are_refused() {
        let p = prediction(7);
        let json = to_json(&p).unwrap();
        let avro = driftwatch_codec::to_avro(&p).unwrap();
        assert_eq!(Prediction::from_payload(json.as_bytes()).unwrap(), p);
        assert_eq!(Prediction::from_payload(&avro).unwrap(), p);
        assert_eq!(Prediction::from_payload(&avro).unwrap().event_time(), 1_007);
        let framed = driftwatch_codec::encode_framed(3, &avro);
        let e = Prediction::from_payload(&framed).unwrap_err();
        assert!(e.contains("schema id 3"), "{e}");
        assert!(Prediction::from_payload(b"\x02garbage").is_err());
    }
}
