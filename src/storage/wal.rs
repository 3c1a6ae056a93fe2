//! The write-ahead log's records: how a batch of staged writes is framed on disk, and how a
//! log is read back after a crash.
//!
//! One record per sync: `[body length: u64 LE][crc32 of body: u32 LE][body]`, where the body is
//! the record's sequence number (u64 LE) followed by its writes, each an [`Op`] (a tag byte,
//! a table byte, then the key and the value, each a u64 LE length and its bytes). A crash while a record was being written leaves a *torn* tail (a length past the
//! end of the file, or a checksum that does not match); [`read`] stops at the first such
//! record, and everything before it is exactly what was synced.

use super::Table;

/// Bytes before a record's body.
const HEADER: usize = 12;

/// One staged write as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A key written (`Some`) or deleted (`None`).
    Put {
        table: Table,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Every key under a prefix deleted.
    Clear { table: Table, prefix: Vec<u8> },
}

// An op's encoding: a tag, the table, then length-prefixed byte strings (u64 LE lengths),
// copied whole (a generic serializer would visit values byte by byte).
const PUT: u8 = 1;
const DELETE: u8 = 2;
const CLEAR: u8 = 3;

fn table_byte(t: Table) -> u8 {
    match t {
        Table::Objects => 0,
        Table::Meta => 1,
        Table::Index => 2,
        Table::Pending => 3,
        Table::Subspace => 4,
        Table::Records => 5,
    }
}

fn table_of(b: u8) -> Option<Table> {
    Some(match b {
        0 => Table::Objects,
        1 => Table::Meta,
        2 => Table::Index,
        3 => Table::Pending,
        4 => Table::Subspace,
        5 => Table::Records,
        _ => return None,
    })
}

fn put_bytes(ops: &mut Vec<u8>, bytes: &[u8]) {
    ops.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    ops.extend_from_slice(bytes);
}

/// Appends the encoding of a put (or delete, `value` `None`) to `ops`.
pub fn encode_put(ops: &mut Vec<u8>, table: Table, key: &[u8], value: Option<&[u8]>) {
    ops.push(if value.is_some() { PUT } else { DELETE });
    ops.push(table_byte(table));
    put_bytes(ops, key);
    if let Some(v) = value {
        put_bytes(ops, v);
    }
}

/// Appends the encoding of a prefix deletion to `ops`.
pub fn encode_clear(ops: &mut Vec<u8>, table: Table, prefix: &[u8]) {
    ops.push(CLEAR);
    ops.push(table_byte(table));
    put_bytes(ops, prefix);
}

/// Takes a length-prefixed byte string off the front of `rest`.
fn take_bytes(rest: &mut &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)).ok()?;
    let bytes = rest.get(8..8usize.checked_add(len)?)?.to_vec();
    *rest = &rest[8 + len..];
    Some(bytes)
}

/// Takes one op off the front of `rest`.
fn take_op(rest: &mut &[u8]) -> Option<Op> {
    let (&tag, after) = rest.split_first()?;
    let (&table, after) = after.split_first()?;
    let table = table_of(table)?;
    *rest = after;
    let key = take_bytes(rest)?;
    Some(match tag {
        PUT => Op::Put {
            table,
            key,
            value: Some(take_bytes(rest)?),
        },
        DELETE => Op::Put {
            table,
            key,
            value: None,
        },
        CLEAR => Op::Clear { table, prefix: key },
        _ => return None,
    })
}

/// One record: `ops` (as encoded by [`encode_put`] and [`encode_clear`]) under `seq`.
pub fn frame(seq: u64, ops: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + ops.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(ops);
    let len = body.len() as u64;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A record read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ops: Vec<Op>,
}

/// Every whole record at the start of `log`, and how many bytes they take: anything after
/// that is a torn or corrupt tail, to be cut off.
pub fn read(log: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, len)) = read_one(&log[at..]) {
        records.push(record);
        at += len;
    }
    (records, at)
}

fn read_one(log: &[u8]) -> Option<(Record, usize)> {
    let len = usize::try_from(u64::from_le_bytes(log.get(..8)?.try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(log.get(8..HEADER)?.try_into().ok()?);
    let body = log.get(HEADER..HEADER.checked_add(len)?)?;
    if crc32fast::hash(body) != crc || body.len() < 8 {
        return None;
    }
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let mut rest = &body[8..];
    let mut ops = Vec::new();
    while !rest.is_empty() {
        ops.push(take_op(&mut rest)?);
    }
    Some((Record { seq, ops }, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(seq: u64, ops: &[Op]) -> Vec<u8> {
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Put { table, key, value } => {
                    encode_put(&mut buf, *table, key, value.as_deref())
                }
                Op::Clear { table, prefix } => encode_clear(&mut buf, *table, prefix),
            }
        }
        frame(seq, &buf)
    }

    fn op() -> impl Strategy<Value = Op> {
        let table = prop::sample::select(Table::ALL.to_vec());
        let bytes = proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (
                table.clone(),
                bytes.clone(),
                proptest::option::of(bytes.clone())
            )
                .prop_map(|(table, key, value)| Op::Put { table, key, value }),
            (table, bytes).prop_map(|(table, prefix)| Op::Clear { table, prefix }),
        ]
    }

    proptest! {
        /// Cut anywhere, a log reads back as exactly the records wholly before the cut.
        #[test]
        fn a_log_cut_anywhere_reads_back_its_whole_records(
            batches in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut log = Vec::new();
            let mut ends = Vec::new();
            for (i, ops) in batches.iter().enumerate() {
                log.extend(record(i as u64 + 1, ops));
                ends.push(log.len());
            }
            let (all, len) = read(&log);
            prop_assert_eq!(len, log.len());
            prop_assert_eq!(all.len(), batches.len());
            for (r, ops) in all.iter().zip(&batches) {
                prop_assert_eq!(&r.ops, ops);
            }
            let cut = cut.index(log.len() + 1);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            let (some, len) = read(&log[..cut]);
            prop_assert_eq!(some.len(), whole);
            prop_assert_eq!(len, if whole == 0 { 0 } else { ends[whole - 1] });
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_log_at_that_record() {
        let ops = [Op::Put {
            table: Table::Objects,
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
        }];
        let mut log = record(1, &ops);
        let first = log.len();
        log.extend(record(2, &ops));
        log.extend(record(3, &ops));
        let last = log.len() - 1;
        log[first + HEADER + 9] ^= 1;
        let (records, len) = read(&log);
        assert_eq!(len, first, "the second record is corrupt");
        assert_eq!(records.len(), 1);
        log[first + HEADER + 9] ^= 1;
        log[last] ^= 0x80;
        assert_eq!(read(&log).0.len(), 2);
        assert_eq!(read(&[0; 64]).0, vec![], "zeros are no record");
    }
}
