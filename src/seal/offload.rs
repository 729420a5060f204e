//! Hashing and writing beside the encryption: the second core's share of
//! sealing.
//!
//! AES-CFB, the cipher of the `compat` format, is serial, so one part is
//! encrypted on one core. What a part also needs (SHA-256 of the plaintext
//! for the manifest, SHA-1 of the inner stream for the MDC, and SHA-256 of
//! the ciphertext with the write to disk) does not have to wait for it:
//! an [`Offload`] runs its [`Consumer`] inline while a part is small, and
//! once it has seen [`THRESHOLD`] bytes moves it to a thread of its own
//! and hands it copies of what it is given through a bounded queue. So a
//! large part uses both cores while small reports pay for no thread, and
//! the memory per part stays bounded ([`DEPTH`] buffers per consumer).
//! Buffers that carry plaintext are wiped when dropped.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use zeroize::Zeroizing;

/// Bytes a hash takes inline before it moves to a thread.
pub const THRESHOLD: u64 = 1 << 20;

/// Buffers queued for one hash thread, at most.
const DEPTH: usize = 4;

/// What takes a part's bytes in order: a hash, or a hash and the file.
pub trait Consumer: Send + 'static {
    fn update(&mut self, data: &[u8]) -> io::Result<()>;
}

impl Consumer for sha2::Sha256 {
    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        sha2::Digest::update(self, data);
        Ok(())
    }
}

impl Consumer for openssl::sha::Sha1 {
    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        openssl::sha::Sha1::update(self, data);
        Ok(())
    }
}

type Buf = Zeroizing<Vec<u8>>;

/// A hash that moves to a thread of its own once its input is large.
pub struct Offload<H: Consumer> {
    state: State<H>,
    seen: u64,
}

enum State<H: Consumer> {
    Inline(H),
    Thread {
        work: SyncSender<Buf>,
        /// Buffers the thread is done with, for reuse (behind a lock only
        /// so the writer stays `Sync`, as Sequoia's writer stack needs).
        spare: Mutex<Receiver<Buf>>,
        thread: JoinHandle<io::Result<H>>,
        /// What is gathered for the next hand-over: small updates (a
        /// packet header, a short read) are sent [`BATCH`] bytes at a time.
        batch: Buf,
    },
    /// Only while moving between the two.
    Moving,
}

/// Bytes handed to the thread at a time. A batch never grows past it, so
/// no reallocation leaves plaintext behind unwiped.
const BATCH: usize = 64 * 1024;

fn batch_buffer() -> Buf {
    Zeroizing::new(Vec::with_capacity(BATCH))
}

impl<H: Consumer> Offload<H> {
    pub fn new(hash: H) -> Offload<H> {
        Offload {
            state: State::Inline(hash),
            seen: 0,
        }
    }

    /// Gives `data` to the consumer. Fails when the consumer failed (a
    /// write error, at once or as soon as the thread reported it) or its
    /// thread cannot be started.
    pub fn update(&mut self, data: &[u8]) -> io::Result<()> {
        self.seen += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            match &mut self.state {
                State::Inline(hash) => {
                    hash.update(rest)?;
                    if self.seen >= THRESHOLD {
                        self.start_thread()?;
                    }
                    return Ok(());
                }
                State::Thread { batch, .. } => {
                    let n = (BATCH - batch.len()).min(rest.len());
                    batch.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if batch.len() == BATCH {
                        self.hand_over()?;
                    }
                }
                State::Moving => return Err(died()),
            }
        }
        Ok(())
    }

    /// Sends the batch to the thread, taking a spare buffer for the next.
    fn hand_over(&mut self) -> io::Result<()> {
        let State::Thread {
            work, spare, batch, ..
        } = &mut self.state
        else {
            return Err(died());
        };
        let next = match spare.get_mut().map_err(|_| died())?.try_recv() {
            Ok(mut buf) => {
                buf.clear();
                buf
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => batch_buffer(),
        };
        let full = std::mem::replace(batch, next);
        if work.send(full).is_err() {
            // The thread stopped on an error: report it.
            let state = std::mem::replace(&mut self.state, State::Moving);
            return Err(Offload { state, seen: 0 }
                .finish()
                .err()
                .unwrap_or_else(died));
        }
        Ok(())
    }

    fn start_thread(&mut self) -> io::Result<()> {
        let State::Inline(mut hash) = std::mem::replace(&mut self.state, State::Moving) else {
            return Ok(());
        };
        let (work, queue) = sync_channel::<Buf>(DEPTH);
        let (give_back, spare) = sync_channel::<Buf>(DEPTH);
        let thread = std::thread::Builder::new()
            .name("embargo-hash".into())
            .spawn(move || {
                for buf in queue {
                    hash.update(&buf)?;
                    // Kept for reuse when there is room; wiped otherwise.
                    let _ = give_back.try_send(buf);
                }
                Ok(hash)
            })?;
        self.state = State::Thread {
            work,
            spare: Mutex::new(spare),
            thread,
            batch: batch_buffer(),
        };
        Ok(())
    }

    /// The consumer, once it has taken everything given (and its thread,
    /// if any, is done).
    pub fn finish(mut self) -> io::Result<H> {
        if matches!(&self.state, State::Thread { batch, .. } if !batch.is_empty()) {
            self.hand_over()?;
        }
        match self.state {
            State::Inline(hash) => Ok(hash),
            State::Thread { work, thread, .. } => {
                drop(work);
                thread.join().map_err(|_| died())?
            }
            State::Moving => Err(died()),
        }
    }
}

fn died() -> io::Error {
    io::Error::other("a sealing thread stopped before its part was sealed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_digest_is_the_same_inline_and_on_a_thread() {
        let data: Vec<u8> = (0..3 * THRESHOLD as usize + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let expected = Sha256::digest(&data);
        for piece in [1, 1000, 65_536, 1 << 20] {
            let mut offload = Offload::new(Sha256::new());
            for chunk in data.chunks(piece) {
                offload.update(chunk).unwrap();
            }
            assert_eq!(offload.finish().unwrap().finalize(), expected, "{piece}");
        }
        // Small: never leaves the calling thread.
        let mut small = Offload::new(Sha256::new());
        small.update(b"abc").unwrap();
        assert!(matches!(small.state, State::Inline(_)));
        assert_eq!(small.finish().unwrap().finalize(), Sha256::digest(b"abc"));
    }

    /// Fails on its second call.
    struct FailsLater(u32);

    impl Consumer for FailsLater {
        fn update(&mut self, _: &[u8]) -> io::Result<()> {
            self.0 += 1;
            if self.0 > 1 {
                return Err(io::Error::other("disk full"));
            }
            Ok(())
        }
    }

    #[test]
    fn a_failing_consumer_on_its_thread_fails_the_part_soon_with_its_error() {
        let mut offload = Offload::new(FailsLater(0));
        offload.update(&vec![0u8; THRESHOLD as usize]).unwrap();
        assert!(matches!(offload.state, State::Thread { .. }));
        let mut failed = None;
        let batch = vec![1u8; BATCH];
        for _ in 0..100 {
            if let Err(e) = offload.update(&batch) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the error reaches the writer within the queue's depth");
        assert_eq!(e.to_string(), "disk full");
    }

    #[test]
    fn sha1_moves_too() {
        let data = vec![5u8; 2 * THRESHOLD as usize];
        let mut offload = Offload::new(openssl::sha::Sha1::new());
        for chunk in data.chunks(4096) {
            offload.update(chunk).unwrap();
        }
        assert!(matches!(offload.state, State::Thread { .. }));
        assert_eq!(
            offload.finish().unwrap().finish(),
            openssl::sha::sha1(&data)
        );
    }
}
