//! Early writeback for large files that end with an fsync.
//!
//! A file written fast and then fsynced waits twice: first for the writes
//! to reach the page cache, then for all of it to reach the disk, because
//! the kernel starts writing dirty pages back only once a share of memory
//! is dirty. [`Writeback`] asks for the disk's work early: every
//! [`STEP`] bytes, a thread of its own calls `fdatasync` on a second
//! handle of the file while the writer goes on, so the final fsync finds
//! little left to do and a large part is durable about when its last byte
//! is written. Small files never start the thread. The final fsync stays
//! the caller's: this only moves work earlier, it never replaces it.

use std::fs::File;
use std::io;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Bytes written between two early writeback requests.
pub const STEP: u64 = 16 * 1024 * 1024;

/// Early writeback of one file being written.
#[derive(Default)]
pub struct Writeback {
    written: u64,
    next: u64,
    flusher: Option<(SyncSender<()>, JoinHandle<io::Result<()>>)>,
}

impl Writeback {
    pub fn new() -> Writeback {
        Writeback {
            written: 0,
            next: STEP,
            flusher: None,
        }
    }

    /// Notes that `n` more bytes were written to `file`; past every
    /// [`STEP`] bytes, asks for them to be written back (a request made
    /// while one runs is folded into it).
    pub fn wrote(&mut self, file: &File, n: usize) -> io::Result<()> {
        self.written += n as u64;
        if self.written < self.next {
            return Ok(());
        }
        self.next = self.written + STEP;
        if self.flusher.is_none() {
            let handle = file.try_clone()?;
            let (ask, asked) = sync_channel::<()>(1);
            let thread = std::thread::Builder::new()
                .name("embargo-writeback".into())
                .spawn(move || {
                    for () in asked {
                        handle.sync_data()?;
                    }
                    Ok(())
                })?;
            self.flusher = Some((ask, thread));
        }
        if let Some((ask, _)) = &self.flusher {
            match ask.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                // The thread stopped on an error; `finish` returns it.
                Err(TrySendError::Disconnected(())) => {}
            }
        }
        Ok(())
    }

    /// Waits for the early writeback to stop and returns its error, if
    /// any. The caller fsyncs the file afterwards as it always would.
    pub fn finish(self) -> io::Result<()> {
        match self.flusher {
            None => Ok(()),
            Some((ask, thread)) => {
                drop(ask);
                thread
                    .join()
                    .map_err(|_| io::Error::other("the writeback thread stopped"))?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_large_file_is_written_back_early_and_a_small_one_starts_no_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = File::create(dir.path().join("small")).unwrap();
        let mut wb = Writeback::new();
        small.write_all(b"abc").unwrap();
        wb.wrote(&small, 3).unwrap();
        assert!(wb.flusher.is_none());
        wb.finish().unwrap();

        let path = dir.path().join("large");
        let mut large = File::create(&path).unwrap();
        let mut wb = Writeback::new();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..(2 * STEP as usize / chunk.len() + 1) {
            large.write_all(&chunk).unwrap();
            wb.wrote(&large, chunk.len()).unwrap();
        }
        assert!(wb.flusher.is_some());
        wb.finish().unwrap();
        large.sync_all().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (2 * STEP as usize / chunk.len() + 1) as u64 * chunk.len() as u64
        );
    }
}
