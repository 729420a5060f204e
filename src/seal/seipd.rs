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

use super::offload::Offload;

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
    mdc: Offload<Sha1>,
    /// Packet body not yet framed (the version byte, then ciphertext).
    /// Framed only once more than a chunk is pending, because the last
    /// chunk must carry a definite length.
    pending: Vec<u8>,
    /// Whether a partial chunk (and so the packet tag) was written.
    started: bool,
    /// Bytes of the inner packet stream written so far.
    inner: u64,
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
            mdc: Offload::new(Sha1::new()),
            pending,
            started: false,
            inner: 0,
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
            self.mdc.update(plaintext)?;
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

    /// Pads the inner stream with Marker packets so that the whole
    /// packet, behind `before` bytes of the same file (the PKESKs), ends
    /// on a size bucket ([`padded_size`]) of at least `floor` bytes, then
    /// finishes. The padding is encrypted and covered by the MDC like the
    /// rest of the inner stream; every reader skips Marker packets.
    pub fn finish_padded(mut self, before: u64, floor: u64) -> io::Result<W> {
        if let Some(amount) = padding_for(before, self.inner, floor) {
            let mut buf = Vec::with_capacity(PIECE);
            for marker in markers(amount).expect("padding_for picks a fillable amount") {
                if buf.len() + marker.len() > PIECE {
                    self.write_all(&buf)?;
                    buf.clear();
                }
                buf.extend_from_slice(marker);
            }
            self.write_all(&buf)?;
        }
        self.finish()
    }

    /// Appends the MDC packet, writes what is pending with a definite
    /// length, and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.encrypt(&MDC_HEADER, true)?;
        let mdc = std::mem::replace(&mut self.mdc, Offload::new(Sha1::new()));
        let digest = mdc.finish()?.finish();
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
        self.inner += buf.len() as u64;
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

/// Marker packets (tag 10, body "PGP", RFC 9580 §5.8), which every
/// reader ignores, in four encodings of the same packet: old format with a
/// one-, two- and four-octet length, and new format with a five-octet one.
/// RFC 9580's Padding packet would be the natural filler, but sq 0.27
/// (Sequoia 1.12, Debian 12) refuses a message that holds one.
const MARKER_5: [u8; 5] = [0xA8, 3, b'P', b'G', b'P'];
const MARKER_6: [u8; 6] = [0xA9, 0, 3, b'P', b'G', b'P'];
const MARKER_8: [u8; 8] = [0xAA, 0, 0, 0, 3, b'P', b'G', b'P'];
const MARKER_9: [u8; 9] = [0xCA, 0xFF, 0, 0, 0, 3, b'P', b'G', b'P'];

/// Marker packets that fill exactly `amount` bytes, or None when no
/// combination does (1 to 4 and 7 bytes).
fn markers(amount: u64) -> Option<impl Iterator<Item = &'static [u8]>> {
    let (q, r) = (amount / 5, amount % 5);
    // 5q + r bytes: r six-byte markers and q - r five-byte ones; the few
    // small amounts where q < r take one eight- or nine-byte marker.
    let (long8, long9, rest) = if q >= r {
        (0, 0, amount)
    } else if amount == 9 {
        (0, 1, 0)
    } else if amount >= 8 && (amount - 8) / 5 >= (amount - 8) % 5 {
        (1, 0, amount - 8)
    } else {
        return None;
    };
    let (q, r) = (rest / 5, rest % 5);
    let six = std::iter::repeat_n(&MARKER_6[..], r as usize);
    let five = std::iter::repeat_n(&MARKER_5[..], (q - r) as usize);
    let eight = std::iter::repeat_n(&MARKER_8[..], long8);
    let nine = std::iter::repeat_n(&MARKER_9[..], long9);
    Some(eight.chain(nine).chain(six).chain(five))
}

/// Whether `amount` bytes can be filled with whole Marker packets.
fn fillable(amount: u64) -> bool {
    markers(amount).is_some()
}

/// Bytes of the whole SEIPDv1 packet, as [`Seipd1Writer`] frames it, for an
/// inner packet stream of `inner` bytes.
pub(crate) fn packet_len(inner: u64) -> u64 {
    let chunk = CHUNK as u64;
    // Version, prefix with the quick check, inner stream, MDC packet.
    let body = 1 + (PREFIX as u64 + 2) + inner + 22;
    // Full chunks are framed while more than one chunk is pending.
    let full = (body - 1) / chunk;
    let last = body - full * chunk;
    1 + full * (1 + chunk) + definite_length(last as usize).len() as u64 + last
}

/// The bucket a part of `size` bytes is padded up to: Padmé (the low bits
/// of the size cleared up to about 12 % of it, so a length leaks only
/// O(log log) bits), and never less than `floor`, so that every small part
/// (a one-line report and a 1,000-byte PoC alike) has the same size.
pub fn padded_size(size: u64, floor: u64) -> u64 {
    if size <= floor {
        return floor;
    }
    let e = 63 - size.leading_zeros() as u64; // floor(log2 size)
    let s = 64 - e.leading_zeros() as u64; // bits to represent e
    let mask = (1u64 << e.saturating_sub(s)) - 1;
    (size + mask) & !mask
}

/// How many bytes of Padding packet body make a part whose PKESKs take
/// `before` bytes and whose inner stream so far is `inner` bytes end
/// exactly on a bucket, or None when it already does. The bucket is the
/// smallest one the framing can land on exactly (a length octet that
/// grows can step over one).
fn padding_for(before: u64, inner: u64, floor: u64) -> Option<u64> {
    let size = |amount: u64| before + packet_len(inner + amount);
    let unpadded = size(0);
    let mut bucket = padded_size(unpadded, floor);
    if bucket == unpadded {
        return None;
    }
    loop {
        // The size grows with the amount: find the least amount reaching
        // the bucket, and take it if it lands exactly.
        let (mut lo, mut hi) = (0u64, bucket);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if size(mid) >= bucket {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if size(lo) == bucket && fillable(lo) {
            return Some(lo);
        }
        bucket = padded_size(bucket + 1, floor);
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
    fn packet_len_is_what_the_writer_writes() {
        let key = [9u8; 32];
        for len in (0..300)
            .chain(8300..8500)
            .chain(CHUNK as u64 - 300..CHUNK as u64 + 300)
            .chain(2 * CHUNK as u64 - 50..2 * CHUNK as u64 + 50)
        {
            let mut w = Seipd1Writer::new(Vec::new(), &key).unwrap();
            w.write_all(&vec![1u8; len as usize]).unwrap();
            assert_eq!(w.finish().unwrap().len() as u64, packet_len(len), "{len}");
        }
    }

    #[test]
    fn padded_parts_end_exactly_on_a_bucket_and_keep_their_inner_stream() {
        let key = [3u8; 32];
        let floor = 4096;
        // Sizes around the floor, the length octets, the chunks and a
        // bucket step, behind PKESKs of several sizes.
        let lengths = (0..40)
            .chain(4000..4100)
            .chain(CHUNK as u64 - 100..CHUNK as u64 + 40)
            .chain([100_000, 300_001, 1 << 20]);
        for len in lengths {
            for before in [0u64, 94, 3 * 94, 524] {
                let inner: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                let mut w = Seipd1Writer::new(Vec::new(), &key).unwrap();
                w.write_all(&inner).unwrap();
                let packet = w.finish_padded(before, floor).unwrap();
                let size = before + packet.len() as u64;
                assert_eq!(padded_size(size, floor), size, "{len} behind {before}");
                let unpadded = before + packet_len(len);
                assert!(size >= unpadded && size as f64 <= (unpadded as f64 * 1.13).max(4200.0));
                let opened = open(&packet, &key);
                assert_eq!(&opened[..inner.len()], &inner[..]);
                // What follows is nothing but Marker packets.
                let mut pad = &opened[inner.len()..];
                while !pad.is_empty() {
                    let marker: &[u8] = match pad[0] {
                        0xA8 => &MARKER_5,
                        0xA9 => &MARKER_6,
                        0xAA => &MARKER_8,
                        _ => &MARKER_9,
                    };
                    assert!(pad.starts_with(marker), "{len} behind {before}");
                    pad = &pad[marker.len()..];
                }
            }
        }
    }

    #[test]
    fn markers_fill_every_amount_but_a_few_small_ones_exactly() {
        for amount in 0..5000u64 {
            match markers(amount) {
                Some(m) => {
                    assert_eq!(m.map(|m| m.len() as u64).sum::<u64>(), amount);
                }
                None => assert!(matches!(amount, 1..=4 | 7), "{amount}"),
            }
        }
    }

    #[test]
    fn buckets_are_padme_above_the_floor() {
        assert_eq!(padded_size(1, 4096), 4096);
        assert_eq!(padded_size(4096, 4096), 4096);
        // 4097: exponent 12, 4 bits for it, 8 low bits cleared.
        assert_eq!(padded_size(4097, 4096), 4096 + 256);
        // 1 GiB + 1: exponent 30, 5 bits, 25 low bits cleared.
        assert_eq!(padded_size((1 << 30) + 1, 4096), (1 << 30) + (1 << 25));
        for size in [5000u64, 77_777, 1 << 20, 123_456_789] {
            let b = padded_size(size, 4096);
            assert!(b >= size && (b - size) as f64 <= size as f64 * 0.12);
            assert_eq!(padded_size(b, 4096), b);
        }
    }

    #[test]
    fn a_key_of_the_wrong_size_is_refused() {
        assert!(Seipd1Writer::new(Vec::new(), &[0u8; 16]).is_err());
    }
}
