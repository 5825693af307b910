//! [`sweep`]: removes the store folders of partitions this worker no longer holds.
//!
//! A partition's folder outlives its task when the task was sealed (a clean stop or a
//! committed revocation), so that the partition resumes from it if it comes back. When the
//! partition went to another worker for good, the folder is only disk taken: Kafka Streams
//! removes such task directories after `state.cleanup.delay.ms` (10 minutes), and so does
//! this. A folder without a valid checkpoint (a crash left it, or it is corrupt) is never
//! resumed, only wiped; it goes once it was not modified for the same delay, so that a
//! worker restarted after a crash still finds it, wipes it and says so with its warning.
//!
//! The caller names the partitions it holds; their folders are never touched. One running
//! worker per state folder (`join.state.dir`): a folder is in use only by the worker that
//! holds its partition.

use std::path::Path;

use crate::checkpoint;

/// What [`sweep`] removed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub partition: i32,
    pub reason: SweptReason,
}

/// Why a folder was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweptReason {
    /// Sealed, and not assigned back within the delay: sealed this many ms ago.
    Moved { sealed_ms_ago: i64 },
    /// No checkpoint (it would be wiped, not resumed), and not modified for this many ms.
    Unsealed { idle_ms: i64 },
    /// A checkpoint that does not read (the message).
    Unreadable(String),
}

/// Removes every folder `<dir>/<prefix>-<n>` whose partition `n` is not `held`, when it is
/// sealed for at least `delay_ms` before `now_ms` (wall clock, ms), or, not (validly)
/// sealed, was not modified for as long. Other
/// entries of `dir` are left alone. Returns what went, and the first error met (the sweep
/// goes on past it: one undeletable folder must not keep the others).
pub fn sweep(
    dir: &Path,
    prefix: &str,
    held: impl Fn(i32) -> bool,
    now_ms: i64,
    delay_ms: i64,
) -> (Vec<Swept>, Option<std::io::Error>) {
    let mut swept = Vec::new();
    let mut first_error = None;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (swept, None),
        Err(e) => return (swept, Some(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(partition) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if held(partition) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let folder = entry.path();
        let idle_ms = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .map_or(i64::MAX, |modified| now_ms.saturating_sub(modified));
        let reason = match checkpoint::read(&folder) {
            Ok(Some(c)) => {
                let age = now_ms.saturating_sub(c.written_at_ms);
                if age < delay_ms {
                    continue;
                }
                SweptReason::Moved { sealed_ms_ago: age }
            }
            _ if idle_ms < delay_ms => continue,
            Ok(None) => SweptReason::Unsealed { idle_ms },
            Err(e) => SweptReason::Unreadable(e.to_string()),
        };
        match std::fs::remove_dir_all(&folder) {
            Ok(()) => swept.push(Swept { partition, reason }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    swept.sort_by_key(|s| s.partition);
    (swept, first_error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use driftwatch_core::join::StoreCheckpoint;

    use super::*;

    fn sealed(dir: &Path, name: &str, written_at_ms: i64) {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("segment"), b"data").unwrap();
        let c = StoreCheckpoint {
            written_at_ms,
            ..Default::default()
        };
        checkpoint::write(&folder, &c).unwrap();
    }

    #[test]
    fn folders_of_partitions_gone_for_the_delay_are_removed_and_held_ones_never() {
        let dir = std::env::temp_dir().join(format!("dw-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap())
            .unwrap();
        let delay = 600_000;
        sealed(&dir, "preds-0", now - 2 * delay); // held: kept whatever its age
        sealed(&dir, "preds-1", now - 2 * delay); // moved long ago: removed
        sealed(&dir, "preds-2", now - delay / 2); // moved lately: may come back, kept
                                                  // A crash's and a corrupt one, just written: kept for the delay (a restarted worker
                                                  // wipes them with a warning), removed once idle as long.
        std::fs::create_dir_all(dir.join("preds-3")).unwrap();
        std::fs::create_dir_all(dir.join("preds-4")).unwrap();
        std::fs::write(
            dir.join("preds-4").join(checkpoint::CHECKPOINT_FILE),
            b"junk",
        )
        .unwrap();
        sealed(&dir, "other-1", now - 2 * delay); // another topic's: not ours
        std::fs::write(dir.join("preds-5"), b"a file").unwrap(); // not a folder

        let (swept, error) = sweep(&dir, "preds", |p| p == 0, now, delay);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            swept,
            [Swept {
                partition: 1,
                reason: SweptReason::Moved {
                    sealed_ms_ago: 2 * delay
                }
            }]
        );
        for kept in [
            "preds-0", "preds-2", "preds-3", "preds-4", "other-1", "preds-5",
        ] {
            assert!(dir.join(kept).exists(), "{kept} removed");
        }
        assert!(!dir.join("preds-1").exists(), "preds-1 kept");
        // As if the delay had passed for the unsealed ones too (preds-2 sealed later).
        let later = now + delay + 1_000;
        let (swept, _) = sweep(&dir, "preds", |p| p == 0, later, delay);
        let gone: Vec<i32> = swept.iter().map(|s| s.partition).collect();
        assert_eq!(gone, [2, 3, 4]);
        assert!(matches!(swept[1].reason, SweptReason::Unsealed { idle_ms } if idle_ms >= delay));
        assert!(matches!(swept[2].reason, SweptReason::Unreadable(_)));
        assert!(dir.join("preds-0").exists() && dir.join("other-1").exists());
        // Nothing left to sweep: a second pass removes nothing.
        assert_eq!(sweep(&dir, "preds", |p| p == 0, later, delay).0, []);
        // A missing folder is no error.
        std::fs::remove_dir_all(&dir).unwrap();
        let (swept, error) = sweep(&dir, "preds", |_| false, now, delay);
        assert!(swept.is_empty() && error.is_none());
    }
}
