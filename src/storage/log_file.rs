//! A write-ahead log's file, grown ahead of its records.
//!
//! A write that makes a file longer changes its size, and `fdatasync` must then write the
//! inode as well as the data. On an ext4 disk a sync of a 150-byte record appended to the
//! end took 112–133 µs at the median, against 85–93 µs for the same record written over
//! space the file already held (`scripts/sync-cost.py`; docs/benchmarks.md). So a log grows
//! by [`GROWTH`] bytes of zeros at a time (one slower sync per step) and records overwrite
//! the zeros. Reading a log back stops at the first record that does not check
//! (`wal::read`), and zeros are no record, so the zeros after the last record read as the
//! end of the log.

#![allow(clippy::disallowed_methods)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How much a log grows by when a record does not fit in the zeros it holds.
pub const GROWTH: u64 = 4 << 20;

/// Zeros are written in pieces of this size.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// One log file: records up to `end`, zeros from there to `len`.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    /// Where the next record goes.
    end: u64,
    /// The file's size.
    len: u64,
}

impl LogFile {
    /// Opens (creating if needed) the log at `path`. Until [`cut`](LogFile::cut) says where
    /// its records end, new records go after everything in it.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(LogFile {
            file,
            end: len,
            len,
        })
    }

    /// Writes `records` after the last one and makes them durable with one sync, growing
    /// the file first if they do not fit.
    pub fn append(&mut self, records: &[&[u8]]) -> io::Result<()> {
        let bytes: usize = records.iter().map(|r| r.len()).sum();
        let end = self.end + bytes as u64;
        if end > self.len {
            self.grow(end.next_multiple_of(GROWTH))?;
        }
        let mut at = self.end;
        for record in records {
            self.file.write_all_at(record, at)?;
            at += record.len() as u64;
        }
        self.file.sync_data()?;
        self.end = end;
        Ok(())
    }

    /// Writes zeros from the file's end up to `len` (made durable by the next sync).
    fn grow(&mut self, len: u64) -> io::Result<()> {
        while self.len < len {
            let n = ZEROS.len().min((len - self.len) as usize);
            self.file.write_all_at(&ZEROS[..n], self.len)?;
            self.len += n as u64;
        }
        Ok(())
    }

    /// The whole file, zeros included.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.rewind()?;
        self.file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Cuts the file to its first `len` bytes, durably: records go on from there.
    pub fn cut(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()?;
        self.end = len;
        self.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_overwrite_zeros_and_the_file_grows_in_steps() {
        let path = std::env::temp_dir().join(format!("hyperdex-logfile-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = LogFile::open(&path).unwrap();
        log.append(&[b"one"]).unwrap();
        log.append(&[b"two", b"", b"three"]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROWTH);
        let bytes = log.read_all().unwrap();
        assert_eq!(&bytes[..11], b"onetwothree");
        assert!(bytes[11..].iter().all(|b| *b == 0));
        let big = vec![7u8; GROWTH as usize];
        log.append(&[b"x", &big]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * GROWTH);
        assert_eq!(&log.read_all().unwrap()[10..13], b"ex\x07");
        log.cut(3).unwrap();
        log.append(&[b"!"]).unwrap();
        drop(log);
        let mut log = LogFile::open(&path).unwrap();
        assert_eq!(&log.read_all().unwrap()[..4], b"one!");
        std::fs::remove_file(&path).unwrap();
    }
}
