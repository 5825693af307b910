//! The sources changelog: the halves still waiting for their other half, and each source's
//! event-time watermark, in one compacted single-partition topic.
//!
//! | key | value | written when |
//! |---|---|---|
//! | `h` source `\0` request id | the half's record as read: timestamp, topic, headers, payload ([`encode_half`]) | the half starts waiting |
//! | `h` source `\0` request id | tombstone | it left: paired or expired |
//! | `w` source | the watermark, 8 bytes big-endian | it moved since the last batch |
//!
//! A half is kept as the record it came in, not decoded: a restore offers the records to a
//! fresh [`SourceIntake`](driftwatch_oip::SourceIntake) again, in changelog order, and then
//! restores the watermark ([`SourceIntake::advance`](driftwatch_oip::SourceIntake::advance)).
//! Every half waiting at a commit has a deadline at or after that commit's watermark, so none
//! expires while they are offered again, and the rebuilt state expires halves where the one it
//! replaces would have. The value format starts with a version byte; an unknown version or a
//! value that does not parse fails the restore (it never guesses).

use driftwatch_core::TimestampMs;

/// Version byte of a half's value.
const HALF_FORMAT: u8 = 1;

/// The key of a waiting half of `source`.
pub(super) fn half_key(source: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + source.len() + id.len());
    k.push(b'h');
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The key of `source`'s watermark.
pub(super) fn watermark_key(source: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + source.len());
    k.push(b'w');
    k.extend_from_slice(source.as_bytes());
    k
}

/// What a changelog key names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Key<'a> {
    Half { source: &'a str },
    Watermark { source: &'a str },
}

pub(super) fn parse_key(key: &[u8]) -> Option<Key<'_>> {
    let (&tag, rest) = key.split_first()?;
    match tag {
        b'h' => {
            let end = rest.iter().position(|&b| b == 0)?;
            let source = std::str::from_utf8(&rest[..end]).ok()?;
            Some(Key::Half { source })
        }
        b'w' => Some(Key::Watermark {
            source: std::str::from_utf8(rest).ok()?,
        }),
        _ => None,
    }
}

/// A source record as the changelog keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeptRecord {
    pub(super) time: TimestampMs,
    pub(super) topic: String,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) payload: Vec<u8>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encodes a record: version, time (i64), topic, header count (u32), each header's name and
/// value, payload; every byte string length-prefixed (u32, big-endian).
pub(super) fn encode_half(
    time: TimestampMs,
    topic: &str,
    headers: &[(&str, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + topic.len() + payload.len());
    out.push(HALF_FORMAT);
    out.extend_from_slice(&time.to_be_bytes());
    put_bytes(&mut out, topic.as_bytes());
    out.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(0).to_be_bytes());
    for (name, value) in headers {
        put_bytes(&mut out, name.as_bytes());
        put_bytes(&mut out, value);
    }
    put_bytes(&mut out, payload);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| "u32".to_string())?;
        Ok(u32::from_be_bytes(b) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()?;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, String> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|e| format!("not UTF-8: {e}"))
    }
}

/// Decodes [`encode_half`]'s value.
pub(super) fn decode_half(value: &[u8]) -> Result<KeptRecord, String> {
    let mut r = Reader(value);
    let version = r.take(1)?[0];
    if version != HALF_FORMAT {
        return Err(format!("unknown format version {version}"));
    }
    let time: [u8; 8] = r.take(8)?.try_into().map_err(|_| "time".to_string())?;
    let topic = r.text()?;
    let n = r.u32()?;
    let mut headers = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let name = r.text()?;
        headers.push((name, r.bytes()?.to_vec()));
    }
    let payload = r.bytes()?.to_vec();
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the payload", r.0.len()));
    }
    Ok(KeptRecord {
        time: i64::from_be_bytes(time),
        topic,
        headers,
        payload,
    })
}

/// Decodes a watermark value.
pub(super) fn decode_watermark(value: &[u8]) -> Result<TimestampMs, String> {
    let b: [u8; 8] = value
        .try_into()
        .map_err(|_| format!("watermark of {} bytes, not 8", value.len()))?;
    Ok(i64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_record_round_trips_and_damage_is_refused() {
        let headers: [(&str, &[u8]); 2] = [("x-request-id", b"r1"), ("bin", &[0, 255])];
        let v = encode_half(-5, "seldon.ns.model.m.inputs", &headers, b"\x0a\x01");
        let r = decode_half(&v).unwrap();
        assert_eq!(r.time, -5);
        assert_eq!(r.topic, "seldon.ns.model.m.inputs");
        assert_eq!(r.headers[1], ("bin".to_string(), vec![0, 255]));
        assert_eq!(r.payload, b"\x0a\x01");
        assert!(decode_half(&v[..v.len() - 1]).is_err());
        let mut longer = v.clone();
        longer.push(0);
        assert!(decode_half(&longer).is_err());
        let mut other = v;
        other[0] = 9;
        assert!(decode_half(&other).unwrap_err().contains("version"));
    }

    #[test]
    fn keys_name_their_source_and_kind() {
        assert_eq!(
            parse_key(&half_key("iris", "a\0b")),
            Some(Key::Half { source: "iris" })
        );
        assert_eq!(
            parse_key(&watermark_key("iris")),
            Some(Key::Watermark { source: "iris" })
        );
        assert_eq!(parse_key(b"x"), None);
        assert_eq!(decode_watermark(&7i64.to_be_bytes()), Ok(7));
        assert!(decode_watermark(b"abc").is_err());
    }
}
