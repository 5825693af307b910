//! The checkpoint file of a sealed store (`<store folder>/.checkpoint`): the
//! [`StoreCheckpoint`] the store's entries go with, as Kafka Streams' `.checkpoint`.
//!
//! It exists only while the store is sealed: written at a clean close after the last commit,
//! removed when the store is opened again, before it takes a write. A store folder without one
//! did not close cleanly (or is open) and is never trusted.
//!
//! # Format (integers big-endian)
//! `DWJCKPT\0`, format version (u32), then the fields: changelog topic (u32 length + UTF-8),
//! partition (i32), offset, written at, config digest (u64), watermark, prediction progress,
//! label progress (i64 each), cold counts (3 × u64), oldest pending (u8 present + i64), epoch
//! (i64), models (u32 count, each model id and version as strings), classes (u32 count, each a
//! string); last, an FNV-1a 64 checksum of everything before it. Written to a temporary file,
//! synced, renamed over the old one, and the folder synced: a crash leaves the old file or the
//! new one, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use driftwatch_core::join::{ColdState, StoreCheckpoint, TaskCheckpoint};

/// The file's name inside the store's folder.
pub const CHECKPOINT_FILE: &str = ".checkpoint";
const TEMP_FILE: &str = ".checkpoint.tmp";
const MAGIC: &[u8; 8] = b"DWJCKPT\0";
/// Format version: of this file and of the store's layout (`crate` docs). A store of another
/// version is rebuilt. 2: entries in runs (1: an entries partition and a due index).
pub const FORMAT_VERSION: u32 = 2;

/// A checkpoint file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint format version {0}, expected {FORMAT_VERSION}")]
    Version(u32),
    #[error("checkpoint is corrupt: {0}")]
    Corrupt(&'static str),
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The file's bytes.
pub fn encode(c: &StoreCheckpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    put_str(&mut out, &c.changelog_topic);
    out.extend_from_slice(&c.changelog_partition.to_be_bytes());
    for v in [c.changelog_offset, c.written_at_ms] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&c.config_digest.to_be_bytes());
    for v in [
        c.task.watermark,
        c.task.prediction_progress,
        c.task.label_progress,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for v in c.cold.counts {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.push(u8::from(c.cold.oldest_pending.is_some()));
    out.extend_from_slice(&c.cold.oldest_pending.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&c.cold.epoch.to_be_bytes());
    out.extend_from_slice(&u32::try_from(c.models.len()).unwrap_or(0).to_be_bytes());
    for (m, v) in &c.models {
        put_str(&mut out, m);
        put_str(&mut out, v);
    }
    out.extend_from_slice(&u32::try_from(c.classes.len()).unwrap_or(0).to_be_bytes());
    for class in &c.classes {
        put_str(&mut out, class);
    }
    let sum = fnv(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        if self.0.len() < n {
            return Err(CheckpointError::Corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        self.take(N)?
            .try_into()
            .map_err(|_| CheckpointError::Corrupt("truncated"))
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        self.array().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, CheckpointError> {
        self.array().map(i64::from_be_bytes)
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        self.array().map(u64::from_be_bytes)
    }
    fn string(&mut self) -> Result<String, CheckpointError> {
        let n = usize::try_from(self.u32()?).map_err(|_| CheckpointError::Corrupt("length"))?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| CheckpointError::Corrupt("name is not UTF-8"))
    }
}

/// Reads the file's bytes back; refuses anything not written by [`encode`] of this version.
pub fn decode(bytes: &[u8]) -> Result<StoreCheckpoint, CheckpointError> {
    if bytes.len() < MAGIC.len() + 4 + 8 || !bytes.starts_with(MAGIC) {
        return Err(CheckpointError::Corrupt("not a checkpoint file"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut r = Reader(body.get(MAGIC.len()..).unwrap_or_default());
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version(version));
    }
    if sum != fnv(body).to_be_bytes() {
        return Err(CheckpointError::Corrupt("checksum mismatch"));
    }
    let changelog_topic = r.string()?;
    let changelog_partition = i32::from_be_bytes(r.array()?);
    let changelog_offset = r.i64()?;
    let written_at_ms = r.i64()?;
    let config_digest = r.u64()?;
    let task = TaskCheckpoint {
        watermark: r.i64()?,
        prediction_progress: r.i64()?,
        label_progress: r.i64()?,
    };
    let counts = [r.u64()?, r.u64()?, r.u64()?];
    let has_oldest = r.array::<1>()?[0] != 0;
    let oldest = r.i64()?;
    let epoch = r.i64()?;
    let n = r.u32()?;
    let mut models = Vec::new();
    for _ in 0..n {
        models.push((r.string()?, r.string()?));
    }
    let n = r.u32()?;
    let mut classes = Vec::new();
    for _ in 0..n {
        classes.push(r.string()?);
    }
    if !r.0.is_empty() {
        return Err(CheckpointError::Corrupt("trailing bytes"));
    }
    Ok(StoreCheckpoint {
        changelog_topic,
        changelog_partition,
        changelog_offset,
        written_at_ms,
        config_digest,
        task,
        models,
        classes,
        cold: ColdState {
            counts,
            oldest_pending: has_oldest.then_some(oldest),
            epoch,
        },
    })
}

fn sync_dir(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

/// Writes `c` into `folder` atomically (temporary file, sync, rename, folder sync).
pub fn write(folder: &Path, c: &StoreCheckpoint) -> Result<(), CheckpointError> {
    let temp = folder.join(TEMP_FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    let mut f = std::fs::File::create(&temp).map_err(io(&temp))?;
    f.write_all(&encode(c)).map_err(io(&temp))?;
    f.sync_all().map_err(io(&temp))?;
    drop(f);
    let path = folder.join(CHECKPOINT_FILE);
    std::fs::rename(&temp, &path).map_err(io(&path))?;
    sync_dir(folder).map_err(io(folder))
}

/// The checkpoint in `folder`, `None` when there is none.
pub fn read(folder: &Path) -> Result<Option<StoreCheckpoint>, CheckpointError> {
    let path = folder.join(CHECKPOINT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io { path, source }),
    }
}

/// Removes the checkpoint from `folder` for good (the folder is synced): from here on the
/// store is not sealed, whatever happens to the process.
pub fn remove(folder: &Path) -> Result<(), CheckpointError> {
    let path = folder.join(CHECKPOINT_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(CheckpointError::Io { path, source }),
    }
    sync_dir(folder).map_err(|source| CheckpointError::Io {
        path: folder.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> StoreCheckpoint {
        StoreCheckpoint {
            changelog_topic: "driftwatch-join-changelog".into(),
            changelog_partition: 3,
            changelog_offset: 12_345,
            written_at_ms: 1_750_000_000_000,
            config_digest: 0xdead_beef,
            task: TaskCheckpoint {
                watermark: 1_750_000_000_000,
                prediction_progress: 1_750_000_001_000,
                label_progress: i64::MIN,
            },
            models: vec![
                ("fraud".into(), "v2".into()),
                ("fraud".into(), String::new()),
            ],
            classes: vec!["yes".into(), "no".into(), "ünïcode\n".into()],
            cold: ColdState {
                counts: [10, 2, 7],
                oldest_pending: Some(1_749_000_000_000),
                epoch: 1_747_000_000_000,
            },
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dw-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_checkpoint_round_trips_through_its_file() {
        let dir = temp("roundtrip");
        assert!(read(&dir).unwrap().is_none(), "none before it is written");
        write(&dir, &sample()).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(sample()));
        assert!(
            !dir.join(TEMP_FILE).exists(),
            "the temporary file is renamed"
        );
        let mut other = sample();
        other.changelog_offset = 99;
        other.cold.oldest_pending = None;
        write(&dir, &other).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(other), "rewritten in place");
        remove(&dir).unwrap();
        assert!(read(&dir).unwrap().is_none());
        remove(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(decode(&b).is_err(), "byte {i} flipped");
        }
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn another_format_version_is_named() {
        let mut b = encode(&sample());
        b[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&7u32.to_be_bytes());
        let e = decode(&b).unwrap_err();
        assert!(matches!(e, CheckpointError::Version(7)), "{e}");
    }
}
