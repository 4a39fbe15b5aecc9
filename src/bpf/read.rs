//! Reading iterator passes: the kernel walks in one thread while the records it wrote so far
//! are counted in the caller's.
//!
//! Reading a pass is what runs it, so a read is the kernel's walk (most of a pinned scan's time
//! under emulation) and the counting of what it returned is this process's. One thread doing
//! both waits for each in turn; with a reader thread of its own the next stretch of the walk
//! overlaps the counting of the last, and on two CPUs a scan takes about the longer of the two.
//! A pass that one read holds (a small system's) gains nothing from that, and a thread costs a
//! process a stack, a malloc arena and the code that starts it: such passes are read here.
//! The reader only reads, into buffers made here and handed back and forth, so memory stays
//! flat however long the pass.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::records::RecordError;

/// Bytes per read of a pass: one fill of the kernel's seq buffer (8 pages, `bpf_seq_read`),
/// which is all a read returns. No more: a buffer made of heap memory freed before (a scan's
/// second read, say) is cleared whole, every page of it made resident.
fn read_size() -> usize {
    crate::sys::page_size() * 8
}

/// Buffers handed between the threads: one read into while the other is counted.
const BUFFERS: usize = 2;

/// What the reader hands over.
enum Chunk {
    /// A read's bytes: the first `n` of the buffer.
    Bytes(Vec<u8>, usize),
    /// The pass has no more.
    End,
    /// The read failed; nothing more comes.
    Failed(std::io::Error),
}

/// Reads `passes` one after another and hands `take` each pass's records as they arrive (the
/// bytes held): it returns how many bytes of whole records it took, and the rest, a record a read cut, comes again with the next read's bytes after it. Passes are
/// read here while each takes one read; from the first that takes more, a thread reads the rest
/// while this one counts. Fails with the position of the pass that failed: a read error, an
/// error of `take`, or a pass ending inside a record.
pub(super) fn read_alongside<R, E>(
    passes: Vec<R>,
    take: impl FnMut(&[u8]) -> Result<usize, E>,
) -> Result<(), (usize, std::io::Error)>
where
    R: Read + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut counting = Counting { take, cut: Vec::new(), pass: 0, offset: 0 };
    let [mut first, mut second] = [(); BUFFERS].map(|()| vec![0u8; read_size()]);
    let mut passes = passes.into_iter();
    while let Some(mut pass) = passes.next() {
        let n = read_once(&mut pass, &mut first).map_err(|e| (counting.pass, e))?;
        if n > 0 {
            counting.bytes(&first[..n])?;
            let more = read_once(&mut pass, &mut second).map_err(|e| (counting.pass, e))?;
            if more > 0 {
                let rest = std::iter::once(pass).chain(passes);
                return alongside(rest, Chunk::Bytes(second, more), first, counting);
            }
        }
        counting.end()?;
    }
    Ok(())
}

/// The rest of [`read_alongside`] once a pass takes more than one read: `rest` (the pass being
/// read first) in a thread of its own, which starts with buffer `empty`, while this one counts
/// `read` (that pass's last read) and whatever comes after it.
fn alongside<R, E>(
    rest: impl Iterator<Item = R> + Send,
    read: Chunk,
    empty: Vec<u8>,
    counting: Counting<impl FnMut(&[u8]) -> Result<usize, E>>,
) -> Result<(), (usize, std::io::Error)>
where
    R: Read + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    let (full, filled) = sync_channel(BUFFERS);
    let (empties, emptied) = sync_channel(BUFFERS);
    full.send(read).expect("the channel has room for a read");
    empties.send(empty).expect("the channel has room for every buffer");
    std::thread::scope(move |s| {
        s.spawn(move || reader(rest, &emptied, &full));
        // Counting drops its ends of both channels when it returns, also early: a reader
        // waiting for a buffer, or for room to hand one over, then stops, and the scope's join
        // cannot wait for it forever.
        counting.all(filled, empties)
    })
}

/// One read of `pass` into `buf`, again where a signal interrupted it.
fn read_once(pass: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match pass.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
}

/// The reader thread: every pass into the buffers `emptied` brings, each read handed to
/// `full`. Stops when the counting side has hung up.
fn reader(
    passes: impl Iterator<Item = impl Read>,
    emptied: &Receiver<Vec<u8>>,
    full: &SyncSender<Chunk>,
) {
    let mut spare = None;
    for mut pass in passes {
        loop {
            let Some(mut buf) = spare.take().or_else(|| emptied.recv().ok()) else { return };
            let (chunk, more) = match read_once(&mut pass, &mut buf) {
                Ok(0) => {
                    spare = Some(buf);
                    (Chunk::End, false)
                }
                Ok(n) => (Chunk::Bytes(buf, n), true),
                Err(e) => {
                    let _ = full.send(Chunk::Failed(e));
                    return;
                }
            };
            if full.send(chunk).is_err() {
                return;
            }
            if !more {
                break;
            }
        }
    }
}

/// The counting side: where it is in which pass, and what a read cut.
struct Counting<T> {
    take: T,
    /// A record's first bytes, which a read cut: copied out, so that its buffer can be read
    /// into again.
    cut: Vec<u8>,
    pass: usize,
    /// Bytes of the pass taken so far.
    offset: usize,
}

impl<T, E> Counting<T>
where
    T: FnMut(&[u8]) -> Result<usize, E>,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Hands `take` a read's bytes, after what the read before cut.
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
        let pass = self.pass;
        let taken = |used: Result<usize, E>| used.map_err(|e| (pass, super::invalid(e)));
        let used = if self.cut.is_empty() {
            let used = taken((self.take)(bytes))?;
            self.cut.extend_from_slice(&bytes[used..]);
            used
        } else {
            self.cut.extend_from_slice(bytes);
            let used = taken((self.take)(&self.cut))?;
            self.cut.drain(..used);
            used
        };
        self.offset += used;
        Ok(())
    }

    /// The pass is over: nothing of it may be left cut.
    fn end(&mut self) -> Result<(), (usize, std::io::Error)> {
        if !self.cut.is_empty() {
            let cut = RecordError::Truncated { offset: self.offset };
            return Err((self.pass, super::invalid(cut)));
        }
        (self.pass, self.offset) = (self.pass + 1, 0);
        Ok(())
    }

    /// Counts what the reader hands over until it stops, giving every buffer back once
    /// counted.
    fn all(
        mut self,
        filled: Receiver<Chunk>,
        empties: SyncSender<Vec<u8>>,
    ) -> Result<(), (usize, std::io::Error)> {
        for chunk in filled {
            match chunk {
                Chunk::Bytes(buf, n) => {
                    self.bytes(&buf[..n])?;
                    // The reader may have stopped: its buffer is then of no use.
                    let _ = empties.send(buf);
                }
                Chunk::End => self.end()?,
                Chunk::Failed(e) => return Err((self.pass, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Hands out `step` bytes a read, as a pass cut anywhere by the kernel's seq buffer.
    pub(in crate::bpf) struct Trickle<'a>(pub(in crate::bpf) &'a [u8], pub(in crate::bpf) usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Takes whole 3-byte records and keeps the first byte of each (the tests' passes tell
    /// theirs apart by it).
    fn triples(seen: &mut Vec<u8>) -> impl FnMut(&[u8]) -> Result<usize, RecordError> + '_ {
        |bytes| {
            let whole = bytes.len() / 3 * 3;
            seen.extend(bytes[..whole].chunks(3).map(|r| r[0]));
            Ok(whole)
        }
    }

    #[test]
    fn every_pass_is_taken_whole_however_its_reads_cut_it() {
        let [a, b]: [Vec<u8>; 2] = [1u8..=40, 41..=70].map(|r| r.flat_map(|n| [n, 0, 0]).collect());
        let want: Vec<u8> = (1..=70).collect();
        for step in [1, 2, 5, 64, read_size()] {
            let mut seen = Vec::new();
            read_alongside(vec![Trickle(&a, step), Trickle(&b, step)], triples(&mut seen))
                .expect("whole records");
            assert_eq!(seen, want, "{step} bytes a read");
        }
    }

    #[test]
    fn a_pass_ending_inside_a_record_fails_at_that_record() {
        let a = [7u8; 6];
        let b = [9u8; 7];
        let mut seen = Vec::new();
        let (pass, e) = read_alongside(vec![Trickle(&a, 4), Trickle(&b, 4)], triples(&mut seen))
            .expect_err("the second pass is cut");
        assert_eq!(pass, 1);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "BPF record cut short at byte 6");
        assert_eq!(seen, [7, 7, 9, 9]);
    }

    /// Counts its reads in `reads`, and fails read number `fails` (from 1).
    struct Failing<'a> {
        reads: &'a std::sync::atomic::AtomicUsize,
        fails: usize,
    }

    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == self.fails {
                return Err(std::io::Error::other("the walk failed"));
            }
            buf[..3].copy_from_slice(&[5, 0, 0]);
            Ok(3)
        }
    }

    #[test]
    fn a_failed_read_is_the_error_of_its_pass_and_ends_the_reading() {
        // The second read is this thread's, the third the reader thread's.
        for fails in [1, 2, 3] {
            let reads = [(); 2].map(|()| std::sync::atomic::AtomicUsize::new(0));
            let passes = reads.iter().map(|reads| Failing { reads, fails }).collect();
            let mut seen = Vec::new();
            let (pass, e) =
                read_alongside(passes, triples(&mut seen)).expect_err("the first pass fails");
            assert_eq!((pass, e.to_string()), (0, "the walk failed".to_string()));
            assert_eq!(seen, vec![5; fails - 1]);
            // The second pass is never run.
            assert_eq!(reads.map(|r| r.into_inner()), [fails, 0]);
        }
    }

    #[test]
    fn counting_that_fails_stops_the_reader() {
        // Far more than the buffers hold: the reader must stop, not wait to hand it over.
        let long = vec![0u8; 100 * read_size()];
        let mut calls = 0;
        // The third read's bytes come from the reader thread.
        let (pass, e) = read_alongside(vec![Trickle(&long, 3), Trickle(&long, 3)], |_| {
            calls += 1;
            match calls {
                3 => Err(RecordError::Truncated { offset: 0 }),
                _ => Ok(3),
            }
        })
        .expect_err("counting fails");
        assert_eq!((pass, calls), (0, 3));
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
