//! The local spool: a bounded, append-only, checksummed log on disk that
//! holds events while Kafka cannot take them, replayed in order later.
//!
//! ## On-disk format
//! A directory of segment files `{seq:020}.seg` (`seq` increasing from 1),
//! each at most [`SpoolConfig::segment_bytes`] (a record is never split).
//! A segment is a sequence of records:
//!
//! ```text
//! u32 LE  payload length N
//! u32 LE  CRC-32 (IEEE) of the payload
//! N bytes payload = u16 LE key length K, K bytes key, N-2-K bytes value
//! ```
//!
//! `cursor` holds `"{seq} {offset}\n"`: the position of the first record not
//! yet delivered, replaced atomically (write to `cursor.tmp`, fsync, rename).
//! Segments wholly before the cursor are deleted.
//!
//! ## Crash safety
//! Each append reaches the OS at once (the record is assembled in a buffer
//! and written with one `write`), and [`Spool::sync`] fsyncs (the edge calls
//! it every [`SpoolConfig::sync_interval_ms`] and on shutdown). So a
//! `kill -9` of the edge loses no spooled event; a power loss loses at most
//! the last sync interval. (Appends only happen while Kafka is not taking
//! events, so one syscall per event is off the normal hot path.) On open, every segment is scanned
//! from the cursor: a record that is short or fails its CRC (a torn write)
//! ends the log there, and the segment is truncated to its last good record.
//! Delivery is at-least-once: a crash between producing a replayed batch and
//! moving the cursor replays that batch again; downstream dedups by event id.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record header (length + CRC).
const HEADER: u64 = 8;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Appending would exceed [`SpoolConfig::max_bytes`]; the event is not written.
    #[error("spool is full ({used} of {max} bytes)")]
    Full {
        /// Bytes on disk.
        used: u64,
        /// Bound.
        max: u64,
    },
    /// A key longer than 65535 bytes or a record longer than a segment.
    #[error("record too large: {0} bytes")]
    TooLarge(usize),
    /// Disk I/O failed.
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
}

/// Limits of a spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory of the segments and cursor (created if missing).
    pub dir: PathBuf,
    /// Bound on the bytes of all segments on disk; appends beyond fail with
    /// [`SpoolError::Full`].
    pub max_bytes: u64,
    /// Size at which a new segment starts, bytes.
    pub segment_bytes: u64,
    /// How often the edge calls [`Spool::sync`], ms (used by the caller).
    pub sync_interval_ms: u64,
}

/// A position in the log: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Segment number.
    pub seq: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// One spooled record read back, with the position just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// Kafka key.
    pub key: Vec<u8>,
    /// Kafka value.
    pub value: Vec<u8>,
    /// Where the next record starts; commit this once the record is delivered.
    pub next: Position,
}

/// The spool. Not thread-safe by itself: the edge keeps it behind a mutex.
pub struct Spool {
    cfg: SpoolConfig,
    /// Segments on disk, ascending, with their sizes (flushed + buffered).
    segments: Vec<(u64, u64)>,
    writer: Option<BufWriter<File>>,
    /// Appended since the last sync.
    dirty: bool,
    cursor: Position,
    /// Records between the cursor and the end of the log.
    pending: u64,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, recovering from a torn tail.
    /// Errors on I/O failure.
    pub fn open(cfg: SpoolConfig) -> Result<Self, SpoolError> {
        fs::create_dir_all(&cfg.dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(&cfg.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        let cursor = read_cursor(&cfg.dir)?.unwrap_or(Position { seq: seqs.first().copied().unwrap_or(1), offset: 0 });
        let mut segments = Vec::new();
        let mut pending = 0;
        for seq in seqs {
            let path = seg_path(&cfg.dir, seq);
            if seq < cursor.seq {
                fs::remove_file(&path)?;
                continue;
            }
            let start = if seq == cursor.seq { cursor.offset } else { 0 };
            let (good_end, count) = scan(&path, start)?;
            let len = fs::metadata(&path)?.len();
            if good_end < len {
                tracing::warn!(
                    segment = seq,
                    at = good_end,
                    dropped_bytes = len - good_end,
                    "spool: truncating torn tail"
                );
                OpenOptions::new().write(true).open(&path)?.set_len(good_end)?;
            }
            pending += count;
            segments.push((seq, good_end));
        }
        Ok(Self { cfg, segments, writer: None, dirty: false, cursor, pending })
    }

    /// Bytes of all segments on disk (including buffered appends).
    pub fn used_bytes(&self) -> u64 {
        self.segments.iter().map(|(_, len)| len).sum()
    }

    /// Records appended and not yet committed as delivered.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// True when every appended record was committed as delivered.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Appends one record: in the OS when this returns (survives a crash of
    /// the process), on disk after [`Self::sync`] (survives a power loss).
    /// Errors: [`SpoolError::Full`] past the byte bound, [`SpoolError::TooLarge`],
    /// I/O.
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<(), SpoolError> {
        let payload_len = 2 + key.len() + value.len();
        if key.len() > u16::MAX as usize || payload_len as u64 + HEADER > self.cfg.segment_bytes {
            return Err(SpoolError::TooLarge(payload_len));
        }
        let rec_len = HEADER + payload_len as u64;
        let used = self.used_bytes();
        if used + rec_len > self.cfg.max_bytes {
            return Err(SpoolError::Full { used, max: self.cfg.max_bytes });
        }
        let needs_new = match self.segments.last() {
            None => true,
            Some((_, len)) => len + rec_len > self.cfg.segment_bytes,
        };
        if needs_new || self.writer.is_none() {
            self.roll(needs_new)?;
        }
        let mut crc = crc32fast::Hasher::new();
        let klen = (key.len() as u16).to_le_bytes();
        crc.update(&klen);
        crc.update(key);
        crc.update(value);
        let w = self.writer.as_mut().ok_or_else(|| io::Error::other("spool writer missing"))?;
        w.write_all(&(payload_len as u32).to_le_bytes())?;
        w.write_all(&crc.finalize().to_le_bytes())?;
        w.write_all(&klen)?;
        w.write_all(key)?;
        w.write_all(value)?;
        w.flush()?;
        if let Some(last) = self.segments.last_mut() {
            last.1 += rec_len;
        }
        self.pending += 1;
        self.dirty = true;
        Ok(())
    }

    /// Opens the writer on the last segment, or on a new one when `new_segment`.
    fn roll(&mut self, new_segment: bool) -> Result<(), SpoolError> {
        self.sync()?;
        if new_segment {
            let seq = self.segments.last().map_or(self.cursor.seq.max(1), |(s, _)| s + 1);
            self.segments.push((seq, 0));
        }
        let (seq, _) = *self.segments.last().ok_or_else(|| io::Error::other("no segment"))?;
        let file = OpenOptions::new().create(true).append(true).open(seg_path(&self.cfg.dir, seq))?;
        self.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    /// Flushes buffered appends and fsyncs the current segment. Cheap when
    /// nothing was appended since the last call.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some(w) = self.writer.as_mut() {
            if self.dirty {
                w.flush()?;
                w.get_ref().sync_data()?;
                self.dirty = false;
            }
        }
        Ok(())
    }

    /// Reads up to `max` records from the cursor, in append order, without
    /// moving it. Flushes buffered appends first so they are visible.
    pub fn read(&mut self, max: usize) -> Result<Vec<SpooledRecord>, SpoolError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        let mut out = Vec::new();
        let mut pos = self.cursor;
        for &(seq, len) in self.segments.iter().filter(|(s, _)| *s >= self.cursor.seq) {
            if seq > pos.seq {
                pos = Position { seq, offset: 0 };
            }
            if pos.offset >= len {
                continue;
            }
            let mut f = File::open(seg_path(&self.cfg.dir, seq))?;
            f.seek(SeekFrom::Start(pos.offset))?;
            let mut r = io::BufReader::with_capacity(64 * 1024, f.take(len - pos.offset));
            while out.len() < max && pos.offset < len {
                let Some((key, value, size)) = read_record(&mut r)? else { break };
                pos.offset += size;
                out.push(SpooledRecord { key, value, next: pos });
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Marks everything before `next` delivered: persists the cursor and
    /// deletes segments wholly before it.
    pub fn commit(&mut self, next: Position, records: u64) -> Result<(), SpoolError> {
        if next <= self.cursor {
            return Ok(());
        }
        // A position at the very end of a full segment moves to the next one.
        let mut next = next;
        if let Some(&(_, len)) = self.segments.iter().find(|(s, _)| *s == next.seq) {
            if next.offset >= len {
                if let Some(&(following, _)) = self.segments.iter().find(|(s, _)| *s > next.seq) {
                    next = Position { seq: following, offset: 0 };
                }
            }
        }
        write_cursor(&self.cfg.dir, next)?;
        self.cursor = next;
        self.pending = self.pending.saturating_sub(records);
        let dir = self.cfg.dir.clone();
        let mut removed = false;
        self.segments.retain(|&(seq, _)| {
            let keep = seq >= next.seq;
            if !keep {
                removed |= fs::remove_file(seg_path(&dir, seq)).is_ok();
            }
            keep
        });
        if removed && self.segments.is_empty() {
            self.writer = None;
        }
        // When the log is drained, start the next segment afresh: the file
        // being appended to was wholly delivered.
        if self.pending == 0 {
            if let Some(&(seq, len)) = self.segments.last() {
                if next == (Position { seq, offset: len }) {
                    self.writer = None;
                    fs::remove_file(seg_path(&dir, seq))?;
                    self.segments.clear();
                    let fresh = Position { seq: seq + 1, offset: 0 };
                    write_cursor(&dir, fresh)?;
                    self.cursor = fresh;
                }
            }
        }
        Ok(())
    }
}

/// One record read back: Kafka key, value, and its size on disk (bytes,
/// header included).
type Record = (Vec<u8>, Vec<u8>, u64);

/// Reads one record; `None` at a clean end, a short record, or a CRC
/// mismatch (the torn tail of a crash).
fn read_record(r: &mut impl Read) -> io::Result<Option<Record>> {
    let mut header = [0u8; HEADER as usize];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(2..=64 * 1024 * 1024).contains(&len) {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    if !read_full(r, &mut payload)? || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let klen = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    if 2 + klen > len {
        return Ok(None);
    }
    let value = payload.split_off(2 + klen);
    let key = payload[2..].to_vec();
    Ok(Some((key, value, HEADER + len as u64)))
}

/// Fills `buf`; false when the input ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Scans `path` from `start`: returns the end of the last good record and
/// how many good records follow `start`.
fn scan(path: &Path, start: u64) -> io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if start >= len {
        return Ok((start.min(len), 0));
    }
    f.seek(SeekFrom::Start(start))?;
    let mut r = io::BufReader::with_capacity(64 * 1024, f);
    let (mut end, mut count) = (start, 0);
    while let Some((_, _, size)) = read_record(&mut r)? {
        end += size;
        count += 1;
    }
    Ok((end, count))
}

fn read_cursor(dir: &Path) -> io::Result<Option<Position>> {
    match fs::read_to_string(dir.join("cursor")) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(seq)), Some(Ok(offset))) => Ok(Some(Position { seq, offset })),
                _ => {
                    tracing::warn!("spool: unreadable cursor file, replaying from the first segment");
                    Ok(None)
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_cursor(dir: &Path, pos: Position) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{} {}", pos.seq, pos.offset)?;
        f.sync_data()?;
    }
    fs::rename(tmp, dir.join("cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig { dir: dir.to_path_buf(), max_bytes, segment_bytes, sync_interval_ms: 100 }
    }

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("spool-test-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn drain(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let batch = s.read(7).unwrap();
            let Some(last) = batch.last() else { break };
            let next = last.next;
            let n = batch.len() as u64;
            all.extend(batch.into_iter().map(|r| r.value));
            s.commit(next, n).unwrap();
        }
        all
    }

    #[test]
    fn appends_read_back_in_order_across_segments_and_reopen() {
        let d = tmpdir();
        let mut s = Spool::open(cfg(&d, 1 << 20, 256)).unwrap();
        for i in 0..100u32 {
            s.append(b"k", format!("event-{i}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        assert!(fs::read_dir(&d).unwrap().count() > 3, "several segments");
        // Deliver the first 30, then "crash" and reopen.
        let first = s.read(30).unwrap();
        s.commit(first.last().unwrap().next, 30).unwrap();
        drop(s);
        let mut s = Spool::open(cfg(&d, 1 << 20, 256)).unwrap();
        assert_eq!(s.pending(), 70);
        let rest = drain(&mut s);
        let want: Vec<Vec<u8>> = (30..100).map(|i| format!("event-{i}").into_bytes()).collect();
        assert_eq!(rest, want);
        assert!(s.is_empty());
        // Drained: old segments are gone, and appends continue cleanly.
        s.append(b"k", b"after").unwrap();
        assert_eq!(drain(&mut s), vec![b"after".to_vec()]);
        let segs = fs::read_dir(&d)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count();
        assert!(segs <= 1, "{segs} segments left");
    }

    #[test]
    fn full_spool_refuses_appends_until_drained() {
        let d = tmpdir();
        let mut s = Spool::open(cfg(&d, 200, 100)).unwrap();
        let mut accepted = 0;
        let refused = loop {
            match s.append(b"key", &[7u8; 30]) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(refused, SpoolError::Full { .. }), "{refused}");
        assert!(accepted >= 4);
        assert!(s.used_bytes() <= 200);
        assert_eq!(drain(&mut s).len(), accepted);
        s.append(b"key", &[7u8; 30]).expect("room again after delivery");
        assert!(matches!(s.append(&[0u8; 70_000], b""), Err(SpoolError::TooLarge(_))));
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let d = tmpdir();
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).unwrap();
        for i in 0..10u8 {
            s.append(b"k", &[i; 20]).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        // Simulate a crash mid-write: half a record, then garbage in a CRC.
        let seg = seg_path(&d, 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 0, 0, 9]).unwrap();
        drop(f);
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).unwrap();
        assert_eq!(s.pending(), 10);
        s.append(b"k", b"after-crash").unwrap();
        let all = drain(&mut s);
        assert_eq!(all.len(), 11);
        assert_eq!(all[10], b"after-crash");

        // A flipped bit inside a record ends the log at the record before it.
        let d2 = tmpdir();
        let mut s = Spool::open(cfg(&d2, 1 << 20, 1 << 20)).unwrap();
        for i in 0..3u8 {
            s.append(b"k", &[i; 20]).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let mut bytes = fs::read(seg_path(&d2, 1)).unwrap();
        let rec = bytes.len() / 3;
        bytes[rec + 12] ^= 0xff;
        fs::write(seg_path(&d2, 1), bytes).unwrap();
        let s = Spool::open(cfg(&d2, 1 << 20, 1 << 20)).unwrap();
        assert_eq!(s.pending(), 1);
    }

    #[test]
    fn keys_and_values_round_trip() {
        let d = tmpdir();
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).unwrap();
        s.append(b"tenant:visitor", br#"{"v":1}"#).unwrap();
        s.append(b"", b"").unwrap();
        let r = s.read(10).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].key.as_slice(), r[0].value.as_slice()), (&b"tenant:visitor"[..], &br#"{"v":1}"#[..]));
        assert_eq!((r[1].key.as_slice(), r[1].value.as_slice()), (&b""[..], &b""[..]));
    }
}
