//! An object's entry as stored: the layouts of its bytes, written and read.
//!
//! The current layout is the earlier one (version, object, records without their times),
//! then each record's time; an object's entry ends with the summary of the records kept
//! apart (`retry_records`).

use std::fmt;

use hyperdex_model::Object;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::protocol::{Dedupe, ENCODE_CAPACITY};

use super::record::{StoredObject, UNKNOWN_TIME};
use super::retry_records::Summary;

/// A dedupe record as stored, without its time (kept apart, so that the earlier layout is
/// the current one's prefix).
#[derive(Serialize, Deserialize)]
pub(super) struct RecordV1 {
    client: crate::protocol::ClientId,
    seq: u64,
    low_seq: u64,
    reply: hyperdex_model::Reply,
}

impl RecordV1 {
    /// The record with its time (`UNKNOWN_TIME` when its layout has none).
    fn timed(self, unix: u64) -> Dedupe {
        Dedupe {
            client: self.client,
            seq: self.seq,
            low_seq: self.low_seq,
            reply: self.reply,
            unix,
        }
    }
}

/// The earlier layout: no record times.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredObjectV1 {
    pub(super) version: u64,
    pub(super) object: Option<Object>,
    pub(super) dedupe: Vec<RecordV1>,
}

/// The current layout: the earlier one, then each record's time. A record of the earlier
/// layout therefore fails to decode as this one (it ends where the times would start) and
/// never decodes as something else.
#[derive(Serialize)]
struct Layout {
    version: u64,
    object: Option<Object>,
    dedupe: Vec<RecordV1>,
    times: Vec<u64>,
}

/// A stored object serializes as `Layout` does, from borrowed fields (the same bytes).
impl Serialize for StoredObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        LayoutRef::of(self.version, &self.object, &self.dedupe).serialize(serializer)
    }
}

/// Records serialized as [`RecordV1`]s, without their times.
struct RecordsRef<'a>(&'a [Dedupe]);

impl Serialize for RecordsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|d| RecordV1Ref {
            client: d.client,
            seq: d.seq,
            low_seq: d.low_seq,
            reply: &d.reply,
        }))
    }
}

/// [`RecordV1`] with its reply borrowed.
#[derive(Serialize)]
struct RecordV1Ref<'a> {
    client: crate::protocol::ClientId,
    seq: u64,
    low_seq: u64,
    reply: &'a hyperdex_model::Reply,
}

/// The times of records, as [`Layout`] holds them.
struct TimesRef<'a>(&'a [Dedupe]);

impl Serialize for TimesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|d| d.unix))
    }
}

/// A stored object reads as `Layout` does, without one in between: the records are read as
/// `RecordV1`s with an unknown time, then the times are written into them (a record without
/// one keeps [`UNKNOWN_TIME`]; times beyond the records are ignored), as `From<Layout>` does.
impl<'de> Deserialize<'de> for StoredObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["version", "object", "dedupe", "times"];
        deserializer.deserialize_struct("Layout", FIELDS, LayoutVisitor)
    }
}

struct LayoutVisitor;

impl<'de> Visitor<'de> for LayoutVisitor {
    type Value = StoredObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stored object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StoredObject, A::Error> {
        let missing = |i| de::Error::invalid_length(i, &"a stored object's 4 fields");
        let version = seq.next_element()?.ok_or_else(|| missing(0))?;
        let object = seq.next_element()?.ok_or_else(|| missing(1))?;
        let Records(mut dedupe) = seq.next_element()?.ok_or_else(|| missing(2))?;
        seq.next_element_seed(Times(&mut dedupe))?
            .ok_or_else(|| missing(3))?;
        Ok(StoredObject {
            version,
            object,
            dedupe,
        })
    }
}

/// Records read as [`RecordV1`]s, each with an unknown time until the times are read.
struct Records(Vec<Dedupe>);

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RecordsVisitor)
    }
}

struct RecordsVisitor;

impl<'de> Visitor<'de> for RecordsVisitor {
    type Value = Records;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("dedupe records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records, A::Error> {
        // The count comes from the bytes (a peer's, in a transfer): room for a few at most.
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(r) = seq.next_element::<RecordV1>()? {
            records.push(r.timed(UNKNOWN_TIME));
        }
        Ok(Records(records))
    }
}

/// Reads records' times into the records, in order.
struct Times<'a>(&'a mut Vec<Dedupe>);

impl<'de> DeserializeSeed<'de> for Times<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Times<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("record times")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut records = self.0.iter_mut();
        while let Some(unix) = seq.next_element::<u64>()? {
            if let Some(d) = records.next() {
                d.unix = unix;
            }
        }
        Ok(())
    }
}

impl From<Layout> for StoredObject {
    fn from(l: Layout) -> StoredObject {
        let times = l.times.into_iter().chain(std::iter::repeat(UNKNOWN_TIME));
        StoredObject {
            version: l.version,
            object: l.object,
            dedupe: l
                .dedupe
                .into_iter()
                .zip(times)
                .map(|(d, unix)| d.timed(unix))
                .collect(),
        }
    }
}

/// Whether stored bytes hold a live object (not a deletion), read from their first fields
/// alone (both layouts begin with the version, then the object's `Option` tag), without
/// decoding the object or its records; `None` when the bytes are not a stored object.
pub fn is_live(bytes: &[u8]) -> Option<bool> {
    let (_version, rest) = postcard::take_from_bytes::<u64>(bytes).ok()?;
    match rest.first()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// The current layout, borrowed (what [`encode_apart`] and a [`StoredObject`] write; postcard
/// writes no names, so the name is only for formats that do).
#[derive(Serialize)]
#[serde(rename = "Layout")]
struct LayoutRef<'a> {
    version: u64,
    object: &'a Option<Object>,
    dedupe: RecordsRef<'a>,
    times: TimesRef<'a>,
}

impl<'a> LayoutRef<'a> {
    fn of(version: u64, object: &'a Option<Object>, records: &'a [Dedupe]) -> LayoutRef<'a> {
        LayoutRef {
            version,
            object,
            dedupe: RecordsRef(records),
            times: TimesRef(records),
        }
    }
}

/// An object's entry: the current layout with the records kept inline (`inline`), then the
/// summary of those kept apart (which readers of the layout alone never see).
pub fn encode_apart(
    version: u64,
    object: &Option<Object>,
    inline: &[Dedupe],
    summary: &Summary,
) -> Vec<u8> {
    let layout = LayoutRef::of(version, object, inline);
    let mut bytes = postcard::to_extend(&layout, Vec::with_capacity(ENCODE_CAPACITY))
        .and_then(|bytes| postcard::to_extend(summary, bytes))
        .unwrap_or_default();
    // Held in memory until the next checkpoint: no more than it needs.
    bytes.shrink_to_fit();
    bytes
}

/// An object's entry: the object with any records kept inline (an entry written before
/// records were kept apart, or sent by a state transfer), and the summary of those kept apart
/// (none: the default).
pub fn decode_apart(bytes: &[u8]) -> Option<(StoredObject, Summary)> {
    if let Ok((s, rest)) = postcard::take_from_bytes::<StoredObject>(bytes) {
        let summary = postcard::from_bytes(rest).unwrap_or_default();
        return Some((s, summary));
    }
    decode(bytes).map(|s| (s, Summary::default()))
}

/// Decodes a stored object, in the current layout or the earlier one (records without a
/// time, which are then kept until their clients' later requests or the count limit drop
/// them); `None` if it is neither. Only the records kept inline are read: an object whose
/// records are kept apart reads with none here (see `retry_records::load_full`).
pub fn decode(bytes: &[u8]) -> Option<StoredObject> {
    if let Ok(s) = postcard::from_bytes::<StoredObject>(bytes) {
        return Some(s);
    }
    let old: StoredObjectV1 = postcard::from_bytes(bytes).ok()?;
    Some(
        Layout {
            version: old.version,
            object: old.object,
            dedupe: old.dedupe,
            times: Vec::new(),
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperdex_model::Reply;

    #[test]
    fn objects_stored_before_records_had_times_still_read() {
        let old = StoredObjectV1 {
            version: 4,
            object: Some([("n".to_string(), hyperdex_model::Value::Int(1))].into()),
            dedupe: vec![
                RecordV1 {
                    client: 1,
                    seq: 2,
                    low_seq: 0,
                    reply: Reply::Success,
                },
                RecordV1 {
                    client: 3,
                    seq: 4,
                    low_seq: 1,
                    reply: Reply::CmpFail("no".into()),
                },
            ],
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let read = decode(&bytes).expect("the earlier layout reads");
        assert_eq!(read.version, 4);
        assert_eq!(read.dedupe.len(), 2);
        assert!(read.dedupe.iter().all(|d| d.unix == UNKNOWN_TIME));
        assert_eq!(read.dedupe[1].reply, Reply::CmpFail("no".into()));
        // The current layout round-trips, times included.
        let mut now = read.clone();
        now.dedupe[0].unix = 1_800_000_000;
        let bytes = postcard::to_allocvec(&now).unwrap();
        assert_eq!(decode(&bytes), Some(now));
        assert_eq!(decode(&[0xff, 0xff]), None);
    }

    /// The current layout as it was written before objects serialized from borrowed fields:
    /// through an owned [`Layout`].
    fn owned_layout(s: &StoredObject) -> Layout {
        Layout {
            version: s.version,
            object: s.object.clone(),
            dedupe: s
                .dedupe
                .iter()
                .map(|d| RecordV1 {
                    client: d.client,
                    seq: d.seq,
                    low_seq: d.low_seq,
                    reply: d.reply.clone(),
                })
                .collect(),
            times: s.dedupe.iter().map(|d| d.unix).collect(),
        }
    }

    #[test]
    fn borrowed_encodings_write_the_owned_layouts_bytes() {
        let record = |client, seq, reply, unix| Dedupe {
            client,
            seq,
            low_seq: seq.saturating_sub(1),
            reply,
            unix,
        };
        let objects = [
            StoredObject::default(),
            StoredObject {
                version: 300,
                object: Some([("n".to_string(), hyperdex_model::Value::Int(-7))].into()),
                dedupe: vec![record(1, 2, Reply::Success, 1_800_000_000)],
            },
            StoredObject {
                version: u64::MAX,
                object: None,
                dedupe: vec![
                    record(u64::MAX, 9, Reply::CmpFail("no".into()), UNKNOWN_TIME),
                    record(3, 0, Reply::NotFound, 0),
                    record(3, 1, Reply::Success, 5),
                ],
            },
        ];
        for s in &objects {
            let owned = postcard::to_allocvec(&owned_layout(s)).unwrap();
            assert_eq!(postcard::to_allocvec(s).unwrap(), owned);
            let summary = Summary {
                newest: 5,
                count: 2,
                oldest: 1,
            };
            let mut apart = owned.clone();
            apart.extend(postcard::to_allocvec(&summary).unwrap());
            assert_eq!(
                encode_apart(s.version, &s.object, &s.dedupe, &summary),
                apart
            );
            assert_eq!(decode_apart(&apart), Some((s.clone(), summary)));
        }
    }

    #[test]
    fn objects_read_as_their_layout_converted_whatever_the_count_of_times() {
        let record = |client| RecordV1 {
            client,
            seq: client + 1,
            low_seq: client,
            reply: Reply::CmpFail(format!("{client}")),
        };
        for (records, times) in [(0, 0), (0, 2), (1, 1), (3, 3), (3, 1), (2, 5), (4, 0)] {
            let layout = Layout {
                version: 7,
                object: Some([("a".to_string(), hyperdex_model::Value::Int(3))].into()),
                dedupe: (0..records).map(record).collect(),
                times: (0..times).map(|t| 1_700_000_000 + t).collect(),
            };
            let bytes = postcard::to_allocvec(&layout).unwrap();
            let read: StoredObject = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(
                read,
                StoredObject::from(layout),
                "{records} records, {times} times"
            );
        }
        // The earlier layout (no times) does not read as the current one.
        let old = StoredObjectV1 {
            version: 1,
            object: None,
            dedupe: vec![record(1)],
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        assert!(postcard::from_bytes::<StoredObject>(&bytes).is_err());
    }
}
