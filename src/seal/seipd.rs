//! embargo's own SEIPDv1 writer (RFC 9580 §5.13.1) over OpenSSL's EVP
//! AES-256-CFB and plain SHA-1: the packet Sequoia writes for the `compat`
//! format, without the collision-detecting SHA-1 that Sequoia computes the
//! MDC with and that dominates the cost of sealing a large attachment.
//!
//! Plain SHA-1 is enough here: the MDC is a checksum over plaintext the
//! writer itself encrypts, not a signature over data an attacker chose, so
//! collision detection protects nothing (it matters when verifying). The
//! primitives are OpenSSL's; this module only frames packets.

use std::io::{self, Write};

use openssl::sha::Sha1;
use openssl::symm::{Cipher, Crypter, Mode};
use zeroize::Zeroizing;

/// Size of the partial-body chunks of the SEIPD packet (a power of two of
/// at least 512 bytes, RFC 9580 §4.2.1.4).
const CHUNK: usize = 64 * 1024;

/// The partial body length octet for a chunk of [`CHUNK`] bytes.
const CHUNK_LENGTH_OCTET: u8 = 224 + 16;
const _: () = assert!(1 << 16 == CHUNK);

/// New-format packet tag of a SEIPD packet (tag 18).
const SEIPD_TAG: u8 = 0xC0 | 18;

/// The header of the MDC packet (tag 19, new format, length 20), which the
/// MDC itself covers.
const MDC_HEADER: [u8; 2] = [0xD3, 0x14];

/// Length of the random prefix: one AES block.
const PREFIX: usize = 16;

/// Plaintext is handed to OpenSSL in pieces of at most this size, so the
/// ciphertext for one piece always fits behind what is pending.
const PIECE: usize = 16 * 1024;

/// A streaming writer of one SEIPDv1 packet to `sink`: what is written to
/// it is the inner packet stream (the literal data packet); `finish`
/// appends the MDC packet and the last, definite-length chunk.
pub struct Seipd1Writer<W: Write> {
    sink: W,
    crypter: Crypter,
    mdc: Sha1,
    /// Packet body not yet framed (the version byte, then ciphertext).
    /// Framed only once more than a chunk is pending, because the last
    /// chunk must carry a definite length.
    pending: Vec<u8>,
    /// Whether a partial chunk (and so the packet tag) was written.
    started: bool,
}

impl<W: Write> Seipd1Writer<W> {
    /// Starts the packet, encrypting with the AES-256 `session_key`.
    pub fn new(sink: W, session_key: &[u8]) -> io::Result<Seipd1Writer<W>> {
        let cipher = Cipher::aes_256_cfb128();
        if session_key.len() != cipher.key_len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the session key has {} bytes, AES-256 needs {}",
                    session_key.len(),
                    cipher.key_len()
                ),
            ));
        }
        // OpenPGP CFB: an all-zero IV, and the random prefix in its place.
        let iv = [0u8; PREFIX];
        let crypter = Crypter::new(cipher, Mode::Encrypt, session_key, Some(&iv))?;
        let mut pending = Vec::with_capacity(CHUNK + PIECE + PREFIX);
        pending.push(1); // version
        let mut writer = Seipd1Writer {
            sink,
            crypter,
            mdc: Sha1::new(),
            pending,
            started: false,
        };
        // The prefix with its last two bytes repeated (the quick check).
        let mut prefix = Zeroizing::new([0u8; PREFIX + 2]);
        openssl::rand::rand_bytes(&mut prefix[..PREFIX])?;
        prefix[PREFIX] = prefix[PREFIX - 2];
        prefix[PREFIX + 1] = prefix[PREFIX - 1];
        writer.encrypt(&prefix[..], true)?;
        Ok(writer)
    }

    /// Encrypts `plaintext` (at most [`PIECE`] bytes) behind what is
    /// pending, adding it to the MDC when `hashed`.
    fn encrypt(&mut self, plaintext: &[u8], hashed: bool) -> io::Result<()> {
        debug_assert!(plaintext.len() <= PIECE);
        if hashed {
            self.mdc.update(plaintext);
        }
        let start = self.pending.len();
        // OpenSSL wants room for one more block than it is given.
        self.pending.resize(start + plaintext.len() + PREFIX, 0);
        let n = self.crypter.update(plaintext, &mut self.pending[start..])?;
        self.pending.truncate(start + n);
        Ok(())
    }

    /// Writes one full chunk as a partial body and keeps the rest pending.
    fn emit_chunk(&mut self) -> io::Result<()> {
        if !self.started {
            self.sink.write_all(&[SEIPD_TAG])?;
            self.started = true;
        }
        self.sink.write_all(&[CHUNK_LENGTH_OCTET])?;
        self.sink.write_all(&self.pending[..CHUNK])?;
        self.pending.drain(..CHUNK);
        Ok(())
    }

    /// Appends the MDC packet, writes what is pending with a definite
    /// length, and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.encrypt(&MDC_HEADER, true)?;
        let digest = std::mem::replace(&mut self.mdc, Sha1::new()).finish();
        self.encrypt(&digest, false)?;
        let start = self.pending.len();
        self.pending.resize(start + PREFIX, 0);
        let n = self.crypter.finalize(&mut self.pending[start..])?;
        self.pending.truncate(start + n);
        while self.pending.len() > CHUNK {
            self.emit_chunk()?;
        }
        if !self.started {
            self.sink.write_all(&[SEIPD_TAG])?;
        }
        self.sink.write_all(&definite_length(self.pending.len()))?;
        self.sink.write_all(&self.pending)?;
        self.sink.flush()?;
        Ok(self.sink)
    }
}

impl<W: Write> Write for Seipd1Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for piece in buf.chunks(PIECE) {
            self.encrypt(piece, true)?;
            while self.pending.len() > CHUNK {
                self.emit_chunk()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The new-format definite body length encoding of `len` (RFC 9580 §4.2.1).
pub(crate) fn definite_length(len: usize) -> Vec<u8> {
    match len {
        0..=191 => vec![len as u8],
        192..=8383 => {
            let v = len - 192;
            vec![(v >> 8) as u8 + 192, v as u8]
        }
        _ => {
            let mut out = vec![0xFF];
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decrypts `packet` (a whole SEIPDv1 packet as written) with OpenSSL
    /// and returns the inner packet stream, checking the quick check and
    /// the MDC: the framing, independently of Sequoia.
    fn open(packet: &[u8], key: &[u8]) -> Vec<u8> {
        assert_eq!(packet[0], SEIPD_TAG);
        let mut body = Vec::new();
        let mut rest = &packet[1..];
        loop {
            let first = rest[0] as usize;
            if (224..255).contains(&first) {
                let len = 1 << (first & 0x1F);
                assert_eq!(len, CHUNK);
                body.extend_from_slice(&rest[1..1 + len]);
                rest = &rest[1 + len..];
                continue;
            }
            let (len, skip) = match first {
                0..=191 => (first, 1),
                192..=223 => (((first - 192) << 8) + rest[1] as usize + 192, 2),
                _ => (
                    u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize,
                    5,
                ),
            };
            body.extend_from_slice(&rest[skip..skip + len]);
            assert_eq!(rest.len(), skip + len, "nothing after the last chunk");
            break;
        }
        assert_eq!(body[0], 1, "version 1");
        let plain =
            openssl::symm::decrypt(Cipher::aes_256_cfb128(), key, Some(&[0u8; 16]), &body[1..])
                .unwrap();
        assert_eq!(plain[14..16], plain[16..18], "quick check");
        let (covered, digest) = plain.split_at(plain.len() - 20);
        assert_eq!(&covered[covered.len() - 2..], &MDC_HEADER);
        assert_eq!(openssl::sha::sha1(covered), digest);
        covered[18..covered.len() - 2].to_vec()
    }

    #[test]
    fn inner_stream_round_trips_around_the_chunk_boundaries() {
        let key = [7u8; 32];
        // Body = 1 version + 18 prefix + inner + 22 MDC.
        let overhead = 1 + 18 + 22;
        for len in [
            0,
            1,
            CHUNK - overhead - 1,
            CHUNK - overhead,
            CHUNK - overhead + 1,
            CHUNK,
            3 * CHUNK + 5,
        ] {
            let inner: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut w = Seipd1Writer::new(Vec::new(), &key).unwrap();
            // Uneven writes cross every internal boundary.
            for piece in inner.chunks(7919) {
                w.write_all(piece).unwrap();
            }
            let packet = w.finish().unwrap();
            assert_eq!(open(&packet, &key), inner, "inner length {len}");
        }
    }

    #[test]
    fn a_key_of_the_wrong_size_is_refused() {
        assert!(Seipd1Writer::new(Vec::new(), &[0u8; 16]).is_err());
    }
}
