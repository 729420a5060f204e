//! embargo's own SEIPDv1 reader (RFC 9580 §5.13.1) over OpenSSL's AES
//! (CFB decrypted through ECB, in `seal::cfb`) and plain SHA-1: how
//! [`Opener`] opens `compat` attachments and follow-up files without
//! Sequoia's collision-detecting SHA-1. The session key still comes from
//! Sequoia or gpg (a PKESK decrypted by the opener's `DecryptionHelper`).
//!
//! # Plaintext is untrusted until `finish`
//!
//! The MDC comes after the data it covers, so a streaming reader releases
//! plaintext before it can know whether the packet was tampered with
//! (only the last 22 bytes are held back). Whatever [`Seipd1Reader`]
//! hands out is **untrusted until [`Seipd1Reader::finish`] returns `Ok`**
//! (or, equivalently, until `read` returned `Ok(0)`, which it only does
//! once the MDC and everything after it checked out). Write it somewhere
//! private (embargo uses a private temporary directory) and only publish
//! it, rename it into place, or act on it after that.
//!
//! # What is accepted
//!
//! The same as Sequoia's `Decryptor` accepts for a SEIPDv1 packet whose
//! content must be one literal data packet: the packet (optionally between
//! packets that must be ignored: Marker, Padding, non-critical tags 40–63),
//! partial or definite lengths (the first partial chunk at least 512
//! bytes), version 1, a matching quick check, then inside exactly one
//! literal data packet (old or new format; partial, definite or, old
//! format, indeterminate length) among packets to be ignored, and last the
//! 22-byte MDC packet over everything before its digest. Compressed data,
//! signatures and everything else inside are refused, as are truncation
//! anywhere and data after the MDC.
//!
//! [`Seipd1Reader::packets`] yields the content itself instead: the
//! framing, the quick check, the MDC and what follows the packet are
//! checked just the same, and the caller parses the packets inside (the
//! opener hands a signed part's, once whole, to Sequoia's verifier).
//!
//! [`Opener`]: super::Opener

use std::io::{self, Read};

use openssl::sha::Sha1;
use openssl::symm::Cipher;
use sequoia_openpgp as openpgp;

use openpgp::crypto::SessionKey;
use openpgp::types::SymmetricAlgorithm;
use zeroize::Zeroizing;

use super::cfb::CfbDecryptor;
use super::offload::Offload;

/// The MDC packet: header (tag 19, new format, length 20) and SHA-1.
const MDC_LEN: usize = 22;
const MDC_HEADER: [u8; 2] = [0xD3, 0x14];
/// AES block size, the length of the random prefix.
const BLOCK: usize = 16;
/// How much ciphertext is decrypted at a time.
const READ: usize = 64 * 1024;

const TAG_MARKER: u8 = 10;
const TAG_LITERAL: u8 = 11;
const TAG_SEIPD: u8 = 18;
const TAG_PADDING: u8 = 21;

/// Why a SEIPDv1 packet was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeipdError {
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the session key does not decrypt this packet (quick check failed)")]
    QuickCheck,
    #[error("the modification detection code does not match: the data was tampered with")]
    BadMdc,
    #[error("the packet ends early: {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// Something other than packets to ignore follows the SEIPD packet,
    /// which ends `at` bytes into the input. (Sequoia 2.3 accepts such
    /// bytes after a SEIPD packet with partial lengths, refuses them after
    /// a single definite one; this reader always refuses them: they are
    /// not covered by the MDC.)
    #[error("data after the encrypted packet (which ends at byte {at})")]
    TrailingData { at: u64 },
    #[error("reading the packet failed: {0}")]
    Io(#[source] io::Error),
    #[error("{0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

impl From<SeipdError> for io::Error {
    fn from(e: SeipdError) -> io::Error {
        match e {
            SeipdError::Io(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

fn malformed(s: impl Into<String>) -> SeipdError {
    SeipdError::Malformed(s.into())
}

/// A packet body length (RFC 9580 §4.2).
#[derive(Clone, Copy, Debug)]
enum Len {
    Full(u32),
    Partial(u32),
    Indeterminate,
}

/// Where the rest of a packet body is.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// `left` bytes of the current chunk, then more chunks unless `last`.
    Chunk { left: u32, last: bool },
    /// Up to the end of the enclosing data.
    Indeterminate,
}

impl Body {
    fn new(len: Len) -> Body {
        match len {
            Len::Full(n) => Body::Chunk {
                left: n,
                last: true,
            },
            Len::Partial(n) => Body::Chunk {
                left: n,
                last: false,
            },
            Len::Indeterminate => Body::Indeterminate,
        }
    }
}

/// A byte source packets are parsed from.
trait Source {
    /// Reads up to `out.len()` bytes; 0 only at the end.
    fn pull(&mut self, out: &mut [u8]) -> Result<usize, SeipdError>;

    fn byte(&mut self) -> Result<Option<u8>, SeipdError> {
        let mut b = [0u8];
        Ok(match self.pull(&mut b)? {
            0 => None,
            _ => Some(b[0]),
        })
    }

    fn exact(&mut self, out: &mut [u8], what: &'static str) -> Result<(), SeipdError> {
        let mut at = 0;
        while at < out.len() {
            match self.pull(&mut out[at..])? {
                0 => return Err(SeipdError::Truncated(what)),
                n => at += n,
            }
        }
        Ok(())
    }

    /// A new-format length (after the tag), `what` naming the packet.
    fn new_length(&mut self, what: &'static str) -> Result<Len, SeipdError> {
        let first = self.byte()?.ok_or(SeipdError::Truncated(what))?;
        Ok(match first {
            0..=191 => Len::Full(first.into()),
            192..=223 => {
                let second = self.byte()?.ok_or(SeipdError::Truncated(what))?;
                Len::Full(((u32::from(first) - 192) << 8) + u32::from(second) + 192)
            }
            224..=254 => Len::Partial(1 << (first & 0x1F)),
            255 => {
                let mut b = [0u8; 4];
                self.exact(&mut b, what)?;
                Len::Full(u32::from_be_bytes(b))
            }
        })
    }

    /// A packet header, `None` at a clean end: (tag, length).
    fn header(&mut self, what: &'static str) -> Result<Option<(u8, Len)>, SeipdError> {
        let Some(ctb) = self.byte()? else {
            return Ok(None);
        };
        if ctb & 0x80 == 0 {
            return Err(malformed(format!("not a packet header: {ctb:#04x}")));
        }
        if ctb & 0x40 != 0 {
            return Ok(Some((ctb & 0x3F, self.new_length(what)?)));
        }
        let tag = (ctb >> 2) & 0x0F;
        let len = match ctb & 3 {
            0 => Len::Full(self.byte()?.ok_or(SeipdError::Truncated(what))?.into()),
            1 => {
                let mut b = [0u8; 2];
                self.exact(&mut b, what)?;
                Len::Full(u16::from_be_bytes(b).into())
            }
            2 => {
                let mut b = [0u8; 4];
                self.exact(&mut b, what)?;
                Len::Full(u32::from_be_bytes(b))
            }
            _ => Len::Indeterminate,
        };
        Ok(Some((tag, len)))
    }

    /// Reads from a packet body; 0 at its end.
    fn body(
        &mut self,
        body: &mut Body,
        out: &mut [u8],
        what: &'static str,
    ) -> Result<usize, SeipdError> {
        if out.is_empty() {
            return Ok(0);
        }
        match body {
            Body::Indeterminate => self.pull(out),
            Body::Chunk {
                left: 0,
                last: true,
            } => Ok(0),
            Body::Chunk {
                left: 0,
                last: false,
            } => {
                *body = Body::new(self.new_length(what)?);
                self.body(body, out, what)
            }
            Body::Chunk { left, .. } => {
                let want = out.len().min(*left as usize);
                let n = self.pull(&mut out[..want])?;
                if n == 0 {
                    return Err(SeipdError::Truncated(what));
                }
                *left -= n as u32;
                Ok(n)
            }
        }
    }

    fn body_exact(
        &mut self,
        body: &mut Body,
        out: &mut [u8],
        what: &'static str,
    ) -> Result<(), SeipdError> {
        let mut at = 0;
        while at < out.len() {
            match self.body(body, &mut out[at..], what)? {
                0 => return Err(SeipdError::Truncated(what)),
                n => at += n,
            }
        }
        Ok(())
    }

    /// Skips the rest of a packet body.
    fn skip(&mut self, mut body: Body, what: &'static str) -> Result<(), SeipdError> {
        let mut sink = [0u8; 4096];
        while self.body(&mut body, &mut sink, what)? > 0 {}
        Ok(())
    }
}

/// The raw input, read directly, and how much was read.
struct Raw<R>(R, u64);

impl<R: Read> Source for Raw<R> {
    fn pull(&mut self, out: &mut [u8]) -> Result<usize, SeipdError> {
        loop {
            match self.0.read(out) {
                Ok(n) => {
                    self.1 += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SeipdError::Io(e)),
            }
        }
    }
}

/// Whether a packet with `tag` is one a reader must ignore (Marker,
/// Padding, non-critical). Sequoia ignores them whatever their length
/// encoding (a bad one makes them `Unknown`, still ignored), so does this.
fn ignorable(tag: u8, _len: Len) -> Result<bool, SeipdError> {
    Ok(tag == TAG_MARKER || tag == TAG_PADDING || (40..=63).contains(&tag))
}

/// The state of the inner packet stream.
enum State {
    /// Between packets.
    Header,
    /// In the literal data packet's body.
    Literal(Body),
    /// Yielding the decrypted content as it is ([`Seipd1Reader::packets`]).
    Raw,
    /// The MDC and everything after the SEIPD packet checked out.
    Done,
    /// An error was returned; nothing more is read.
    Failed,
}

/// A streaming reader of one SEIPDv1 packet whose content is a literal
/// data packet: `read` yields the literal data. **Untrusted until
/// [`finish`](Seipd1Reader::finish) returns `Ok`** (see the module docs).
pub struct Seipd1Reader<R: Read> {
    input: Raw<R>,
    /// The rest of the SEIPD packet's body.
    outer: Body,
    crypter: CfbDecryptor,
    /// On the second core once the packet is large.
    mdc: Offload<Sha1>,
    /// Decrypted bytes not yet consumed, `plain[start..]`; the last
    /// [`MDC_LEN`] are held back until the end.
    plain: Zeroizing<Vec<u8>>,
    start: usize,
    /// Whether the SEIPD body is exhausted (and the decryptor finalized).
    eof: bool,
    /// Ciphertext read buffer.
    cipher: Vec<u8>,
    state: State,
    seen_literal: bool,
}

impl<R: Read> Seipd1Reader<R> {
    /// Starts reading the SEIPD packet at the start of `input` (its header
    /// first, possibly after packets to ignore), decrypting with
    /// `session_key` for `algo` (AES-128, -192 or -256), and checks the
    /// quick check: a wrong key is refused here.
    pub fn new(
        input: R,
        algo: SymmetricAlgorithm,
        session_key: &SessionKey,
    ) -> Result<Seipd1Reader<R>, SeipdError> {
        let cipher = match algo {
            SymmetricAlgorithm::AES128 => Cipher::aes_128_ecb(),
            SymmetricAlgorithm::AES192 => Cipher::aes_192_ecb(),
            SymmetricAlgorithm::AES256 => Cipher::aes_256_ecb(),
            other => return Err(SeipdError::Unsupported(format!("cipher {other}"))),
        };
        if session_key.len() != cipher.key_len() {
            return Err(SeipdError::Unsupported(format!(
                "a {}-byte session key for {algo}",
                session_key.len()
            )));
        }
        let mut input = Raw(input, 0);
        let len = loop {
            let (tag, len) = input
                .header("the encrypted packet")?
                .ok_or(SeipdError::Truncated("no encrypted packet"))?;
            if tag == TAG_SEIPD {
                break len;
            }
            if !ignorable(tag, len)? {
                return Err(malformed(format!("packet {tag} instead of SEIPD")));
            }
            input.skip(Body::new(len), "an ignored packet")?;
        };
        match len {
            Len::Partial(n) if n < 512 => {
                return Err(malformed("a first partial chunk under 512 bytes"));
            }
            // Version, an 8-byte prefix, the quick check, the smallest
            // literal and the MDC's digest (Sequoia's lower bound).
            Len::Full(n) if n < 1 + 8 + 2 + 6 + 20 => {
                return Err(malformed("a SEIPD packet too short to hold anything"));
            }
            Len::Indeterminate => return Err(malformed("an indeterminate SEIPD length")),
            _ => {}
        }
        let mut outer = Body::new(len);
        let mut version = [0u8];
        input.body_exact(&mut outer, &mut version, "the SEIPD packet")?;
        if version[0] != 1 {
            return Err(SeipdError::Unsupported(format!(
                "SEIPD version {}",
                version[0]
            )));
        }
        // OpenPGP CFB: an all-zero IV, the random prefix in its place.
        let crypter = CfbDecryptor::new(cipher, session_key, [0u8; BLOCK])?;
        let mut reader = Seipd1Reader {
            input,
            outer,
            crypter,
            mdc: Offload::new(Sha1::new()),
            plain: Zeroizing::new(Vec::with_capacity(READ + 2 * BLOCK + MDC_LEN)),
            start: 0,
            eof: false,
            cipher: vec![0u8; READ],
            state: State::Header,
            seen_literal: false,
        };
        let mut prefix = Zeroizing::new([0u8; BLOCK + 2]);
        while reader.plain.len() < BLOCK + 2 && !reader.eof {
            reader.fill()?;
        }
        if reader.plain.len() < BLOCK + 2 {
            return Err(SeipdError::Truncated("the random prefix"));
        }
        prefix.copy_from_slice(&reader.plain[..BLOCK + 2]);
        if prefix[BLOCK - 2..BLOCK] != prefix[BLOCK..] {
            return Err(SeipdError::QuickCheck);
        }
        reader.mdc.update(&prefix[..]).map_err(SeipdError::Io)?;
        reader.start = BLOCK + 2;
        Ok(reader)
    }

    /// Makes `read` yield the decrypted content itself, the packets
    /// inside (for a signed message: the one-pass signature, the literal
    /// data packet and the signature), for a caller that parses them
    /// itself once [`finish`](Seipd1Reader::finish) says they are whole.
    /// Call it before the first `read`.
    pub fn packets(mut self) -> Self {
        self.state = State::Raw;
        self
    }

    /// Decrypts the next piece of the SEIPD body.
    fn fill(&mut self) -> Result<(), SeipdError> {
        // Keep what is unconsumed at the front.
        if self.start > 0 {
            self.plain.drain(..self.start);
            self.start = 0;
        }
        let mut outer = self.outer;
        let n = self
            .input
            .body(&mut outer, &mut self.cipher, "the SEIPD packet")?;
        self.outer = outer;
        let at = self.plain.len();
        self.plain.resize(at + n, 0);
        if n == 0 {
            self.eof = true;
        } else {
            self.crypter
                .update(&self.cipher[..n], &mut self.plain[at..])?;
        }
        Ok(())
    }

    /// Checks the MDC (the last 22 bytes) and that only packets to be
    /// ignored follow the SEIPD packet.
    fn verify(&mut self) -> Result<(), SeipdError> {
        debug_assert!(self.eof);
        let rest = &self.plain[self.start..];
        if rest.len() != MDC_LEN {
            return Err(SeipdError::Truncated("the MDC packet"));
        }
        if rest[..2] != MDC_HEADER {
            return Err(malformed(
                "the encrypted data does not end in an MDC packet",
            ));
        }
        let mdc = std::mem::replace(&mut self.mdc, Offload::new(Sha1::new()));
        let mut mdc = mdc.finish().map_err(SeipdError::Io)?;
        mdc.update(&MDC_HEADER);
        let digest = mdc.finish();
        if !openssl::memcmp::eq(&digest, &rest[2..]) {
            return Err(SeipdError::BadMdc);
        }
        self.start = self.plain.len();
        let at = self.input.1;
        let trailing = |_| SeipdError::TrailingData { at };
        while let Some((tag, len)) = self.input.header("").map_err(trailing)? {
            if !ignorable(tag, len)? {
                return Err(SeipdError::TrailingData { at });
            }
            self.input.skip(Body::new(len), "").map_err(trailing)?;
        }
        Ok(())
    }

    /// Reads the literal data; `Ok(0)` only once everything verified.
    fn read_inner(&mut self, out: &mut [u8]) -> Result<usize, SeipdError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(malformed("reading after an error")),
                State::Raw => {
                    let n = Inner(self).pull(out)?;
                    if n > 0 || out.is_empty() {
                        return Ok(n);
                    }
                    self.verify()?;
                    self.state = State::Done;
                }
                State::Literal(body) => {
                    let mut body = *body;
                    let n = Inner(self).body(&mut body, out, "the literal data packet")?;
                    self.state = if n == 0 {
                        State::Header
                    } else {
                        State::Literal(body)
                    };
                    if n > 0 || out.is_empty() {
                        return Ok(n);
                    }
                }
                State::Header => {
                    let Some((tag, len)) = Inner(self).header("a packet inside")? else {
                        if !self.seen_literal {
                            return Err(malformed("no literal data packet inside"));
                        }
                        self.verify()?;
                        self.state = State::Done;
                        continue;
                    };
                    if ignorable(tag, len)? {
                        Inner(self).skip(Body::new(len), "an ignored packet")?;
                        continue;
                    }
                    if tag != TAG_LITERAL {
                        return Err(malformed(format!(
                            "packet {tag} inside, where only literal data is expected"
                        )));
                    }
                    if self.seen_literal {
                        return Err(malformed("a second literal data packet"));
                    }
                    self.seen_literal = true;
                    match len {
                        Len::Partial(n) if n < 512 => {
                            return Err(malformed("a first partial chunk under 512 bytes"));
                        }
                        Len::Full(n) if n < 6 => {
                            return Err(malformed("a literal data packet under 6 bytes"));
                        }
                        _ => {}
                    }
                    let mut body = Body::new(len);
                    let what = "the literal data packet";
                    let mut head = [0u8; 2];
                    Inner(self).body_exact(&mut body, &mut head, what)?;
                    // The file name, then the date.
                    let mut skip = [0u8; 255 + 4];
                    let meta = &mut skip[..usize::from(head[1]) + 4];
                    Inner(self).body_exact(&mut body, meta, what)?;
                    self.state = State::Literal(body);
                }
            }
        }
    }

    /// Reads and discards what is left, and returns `Ok` only if the whole
    /// packet checked out: the quick check, the framing, the MDC, nothing
    /// after it. Only then may what `read` returned be trusted.
    pub fn finish(mut self) -> Result<(), SeipdError> {
        let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
        loop {
            match self.read_inner(&mut buf[..]) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
    }
}

impl<R: Read> Read for Seipd1Reader<R> {
    /// Untrusted plaintext until `Ok(0)` (see the module docs).
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_inner(out).map_err(|e| {
            self.state = State::Failed;
            e.into()
        })
    }
}

/// The decrypted content of the SEIPD packet, without the last 22 bytes
/// (the MDC), hashed into the MDC as it is consumed.
struct Inner<'a, R: Read>(&'a mut Seipd1Reader<R>);

impl<R: Read> Source for Inner<'_, R> {
    fn pull(&mut self, out: &mut [u8]) -> Result<usize, SeipdError> {
        let r = &mut *self.0;
        loop {
            let held = r.plain.len() - r.start;
            let avail = held.saturating_sub(MDC_LEN);
            if avail > 0 {
                let n = avail.min(out.len());
                let piece = &r.plain[r.start..r.start + n];
                out[..n].copy_from_slice(piece);
                r.mdc.update(piece).map_err(SeipdError::Io)?;
                r.start += n;
                return Ok(n);
            }
            if r.eof {
                return Ok(0);
            }
            r.fill()?;
        }
    }
}

/// Decrypts `packet` (a SEIPD packet, as [`Seipd1Reader::new`] takes it)
/// into memory: the literal data, only if all of it checked out.
pub fn open_to_vec(
    packet: &[u8],
    algo: SymmetricAlgorithm,
    session_key: &SessionKey,
) -> Result<Zeroizing<Vec<u8>>, SeipdError> {
    read_to_vec(Seipd1Reader::new(packet, algo, session_key)?)
}

/// [`open_to_vec`] in [`Seipd1Reader::packets`] mode: the decrypted
/// content, only if the framing, the MDC and what follows checked out.
pub fn packets_to_vec(
    packet: &[u8],
    algo: SymmetricAlgorithm,
    session_key: &SessionKey,
) -> Result<Zeroizing<Vec<u8>>, SeipdError> {
    read_to_vec(Seipd1Reader::new(packet, algo, session_key)?.packets())
}

fn read_to_vec(mut reader: Seipd1Reader<&[u8]>) -> Result<Zeroizing<Vec<u8>>, SeipdError> {
    let mut out = Zeroizing::new(Vec::new());
    let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
    loop {
        match reader.read_inner(&mut buf[..])? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The same bytes opened by Sequoia's `Decryptor` with a fixed session
/// key, accepting only what [`Seipd1Reader`] is meant to accept (an
/// encrypted literal, no compression, no signatures): the oracle the tests
/// and the fuzz target compare with.
#[doc(hidden)]
pub fn open_with_sequoia(
    packet: &[u8],
    algo: SymmetricAlgorithm,
    session_key: &SessionKey,
) -> Result<Zeroizing<Vec<u8>>, String> {
    use openpgp::parse::Parse;
    use openpgp::parse::stream::{
        DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
    };

    struct Fixed {
        algo: SymmetricAlgorithm,
        key: SessionKey,
    }
    impl VerificationHelper for Fixed {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
            let layers: Vec<_> = structure.into_iter().collect();
            match layers.as_slice() {
                [MessageLayer::Encryption { .. }] => Ok(()),
                _ => Err(anyhow::anyhow!("not just an encrypted literal")),
            }
        }
    }
    impl DecryptionHelper for Fixed {
        fn decrypt(
            &mut self,
            _: &[openpgp::packet::PKESK],
            _: &[openpgp::packet::SKESK],
            _: Option<SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
        ) -> openpgp::Result<Option<openpgp::Cert>> {
            if decrypt(Some(self.algo), &self.key) {
                Ok(None)
            } else {
                Err(anyhow::anyhow!("the session key does not fit"))
            }
        }
    }

    // Sequoia 2.3 panics (an unwrap in `PacketParser::decrypt`, after
    // the quick check) when the SEIPD body has fewer than 40 bytes after
    // the version or its framing breaks early: its MDC reserve then fails
    // to consume the prefix. Both are refusals anyway, so the oracle
    // refuses them itself.
    match seipd_body_len(packet) {
        Some((n, true)) if !(1 + BLOCK + 2..1 + BLOCK + 2 + MDC_LEN).contains(&n) => {}
        None => {}
        Some((n, complete)) => {
            return Err(format!(
                "a SEIPD body of {n} bytes{} (Sequoia would panic)",
                if complete {
                    ""
                } else {
                    ", then broken framing"
                }
            ));
        }
    }
    let helper = Fixed {
        algo,
        key: session_key.clone(),
    };
    let policy = openpgp::policy::StandardPolicy::new();
    // A small buffer: with Sequoia's default (25 MiB held back) the fuzz
    // target ran 27 inputs a second, with this one about 100.
    let mut d = DecryptorBuilder::from_bytes(packet)
        .map_err(|e| format!("{e:#}"))?
        .buffer_size(64 * 1024)
        .with_policy(&policy, None, helper)
        .map_err(|e| format!("{e:#}"))?;
    let mut out = Zeroizing::new(Vec::new());
    d.read_to_end(&mut out).map_err(|e| format!("{e:#}"))?;
    if !d.message_processed() {
        return Err("the message ended early".into());
    }
    Ok(out)
}

/// How many bytes of SEIPD packet body (its version byte included) the
/// first SEIPD packet in `bytes` has, and whether its framing is whole;
/// `None` when there is no SEIPD header.
fn seipd_body_len(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut input = Raw(bytes, 0);
    let len = loop {
        let (tag, len) = input.header("").ok()??;
        if tag == TAG_SEIPD {
            break len;
        }
        input.skip(Body::new(len), "").ok()?;
    };
    let mut body = Body::new(len);
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match input.body(&mut body, &mut buf, "") {
            Ok(0) => return Some((total, true)),
            Ok(n) => total += n,
            Err(_) => return Some((total, false)),
        }
    }
}

/// Opens `packet` with both [`open_to_vec`] and [`open_with_sequoia`] and
/// returns the new reader's verdict (`Some` plaintext or `None`), or why
/// the two disagree: one accepting what the other refuses, or different
/// plaintext. The one allowed difference: bytes after a SEIPD packet that
/// Sequoia ignores and this reader refuses ([`SeipdError::TrailingData`]),
/// when without them both accept the same plaintext. For the tests and the
/// fuzz target.
#[doc(hidden)]
pub fn differential(
    packet: &[u8],
    algo: SymmetricAlgorithm,
    session_key: &SessionKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    let ours = open_to_vec(packet, algo, session_key);
    // What the literal mode takes, the packets mode takes too (it checks
    // the same framing and MDC, and leaves the inside to its caller).
    if ours.is_ok()
        && let Err(e) = packets_to_vec(packet, algo, session_key)
    {
        return Err(format!("only the packets mode refuses: {e}"));
    }
    let theirs = open_with_sequoia(packet, algo, session_key);
    match (ours, theirs) {
        (Ok(a), Ok(b)) if a == b => Ok(Some(a)),
        (Ok(_), Ok(_)) => Err("the readers return different plaintext".into()),
        (Err(_), Err(_)) => Ok(None),
        (Ok(_), Err(e)) => Err(format!("only Sequoia refuses: {e}")),
        (Err(SeipdError::TrailingData { at }), Ok(b)) => {
            let end = usize::try_from(at).map_err(|_| "an offset past usize")?;
            match open_to_vec(&packet[..end], algo, session_key) {
                Ok(a) if a == b => Ok(None),
                _ => Err(format!(
                    "only the new reader refuses data after byte {at}, and not because of it"
                )),
            }
        }
        (Err(e), Ok(_)) => Err(format!("only the new reader refuses: {e}")),
    }
}

/// The session key (AES-256) of the `seipd_reader` fuzz target.
#[doc(hidden)]
pub const FUZZ_KEY: [u8; 32] = [0x42; 32];

/// The SEIPD packet a `seipd_reader` fuzz input stands for: after a first
/// byte that is even, the rest as is; odd, the rest is the inner packet
/// stream, sealed under [`FUZZ_KEY`] with a valid MDC (so the fuzzer
/// reaches the inner framing). `None` for an empty input.
#[doc(hidden)]
pub fn fuzz_packet(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return Some(rest.to_vec());
    }
    let mut w = super::seipd::Seipd1Writer::new(Vec::new(), &FUZZ_KEY).ok()?;
    w.write_all(rest).ok()?;
    w.finish().ok()
}
