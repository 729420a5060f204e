//! CFB-128 decryption (the mode of OpenPGP's SEIPDv1, with an all-zero IV)
//! computed from OpenSSL's AES in ECB mode.
//!
//! CFB encryption is serial, but decryption is not: plaintext block `i` is
//! ciphertext block `i` XOR AES(ciphertext block `i - 1`), and every
//! ciphertext block is known up front. OpenSSL's own CFB decrypts one
//! block at a time (about 0.5 GB/s here); handing it all the feedback
//! blocks of a buffer at once in ECB mode lets AES-NI work on several
//! blocks in parallel (about 5.5 GB/s), which is what GnuPG's libgcrypt
//! does too. AES is OpenSSL's; this module only arranges its input and
//! XORs its output, and its tests compare it with OpenSSL's CFB on every
//! split of the input.

use openssl::error::ErrorStack;
use openssl::symm::{Cipher, Crypter, Mode};
use zeroize::Zeroizing;

const BLOCK: usize = 16;

/// A streaming CFB-128 decryptor.
pub struct CfbDecryptor {
    ecb: Crypter,
    /// The last complete ciphertext block (the IV at first).
    feedback: [u8; BLOCK],
    /// The keystream block for the block in progress, and how many of its
    /// bytes are used (0: at a block boundary).
    keystream: Zeroizing<[u8; BLOCK]>,
    used: usize,
    /// The ciphertext bytes of the block in progress.
    next: [u8; BLOCK],
    /// ECB input (feedback blocks) and output (keystream), reused.
    feed: Vec<u8>,
    stream: Zeroizing<Vec<u8>>,
}

impl CfbDecryptor {
    /// `cipher` is one of OpenSSL's AES ECB ciphers; `key` its key.
    pub fn new(cipher: Cipher, key: &[u8], iv: [u8; BLOCK]) -> Result<CfbDecryptor, ErrorStack> {
        let mut ecb = Crypter::new(cipher, Mode::Encrypt, key, None)?;
        ecb.pad(false);
        Ok(CfbDecryptor {
            ecb,
            feedback: iv,
            keystream: Zeroizing::new([0u8; BLOCK]),
            used: 0,
            next: [0u8; BLOCK],
            feed: Vec::new(),
            stream: Zeroizing::new(Vec::new()),
        })
    }

    /// Decrypts `input` into `out[..input.len()]`.
    pub fn update(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), ErrorStack> {
        let out = &mut out[..input.len()];
        let mut i = 0;
        // The rest of a block begun by the previous call.
        if self.used > 0 {
            i = self.partial(input, out, 0);
        }
        let full = (input.len() - i) / BLOCK * BLOCK;
        if full > 0 {
            let blocks = &input[i..i + full];
            self.feed.clear();
            self.feed.extend_from_slice(&self.feedback);
            self.feed.extend_from_slice(&blocks[..full - BLOCK]);
            self.stream.resize(full + BLOCK, 0);
            let n = self.ecb.update(&self.feed, &mut self.stream)?;
            debug_assert_eq!(n, full);
            for ((o, c), k) in out[i..i + full]
                .iter_mut()
                .zip(blocks)
                .zip(&self.stream[..])
            {
                *o = c ^ k;
            }
            self.feedback.copy_from_slice(&blocks[full - BLOCK..]);
            i += full;
        }
        // A block that this call begins but does not end.
        if i < input.len() {
            let mut block = [0u8; BLOCK + BLOCK];
            let n = self.ecb.update(&self.feedback, &mut block)?;
            debug_assert_eq!(n, BLOCK);
            self.keystream.copy_from_slice(&block[..BLOCK]);
            self.partial(input, out, i);
        }
        Ok(())
    }

    /// Continues the block in progress from `input[i..]`; returns where it
    /// stopped (the block's end or the input's).
    fn partial(&mut self, input: &[u8], out: &mut [u8], mut i: usize) -> usize {
        while self.used < BLOCK && i < input.len() {
            self.next[self.used] = input[i];
            out[i] = input[i] ^ self.keystream[self.used];
            self.used += 1;
            i += 1;
        }
        if self.used == BLOCK {
            self.feedback = self.next;
            self.used = 0;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypts_as_openssl_cfb_does_on_every_split() {
        let key = [0x5Au8; 32];
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 13 % 256) as u8).collect();
        let iv = [0u8; BLOCK];
        let cipher =
            openssl::symm::encrypt(Cipher::aes_256_cfb128(), &key, Some(&iv), &plain).unwrap();
        for first in 0..40 {
            for second in [1usize, 5, 16, 17, 31, 32, 100, 1000] {
                let mut d = CfbDecryptor::new(Cipher::aes_256_ecb(), &key, iv).unwrap();
                let mut out = vec![0u8; cipher.len()];
                let mut at = 0;
                let mut step = first;
                while at < cipher.len() {
                    let end = (at + step).min(cipher.len());
                    d.update(&cipher[at..end], &mut out[at..end]).unwrap();
                    at = end;
                    step = second;
                }
                assert_eq!(out, plain, "pieces of {first} then {second}");
            }
        }
    }

    #[test]
    fn aes128_and_aes192_too() {
        for (ecb, cfb, len) in [
            (Cipher::aes_128_ecb(), Cipher::aes_128_cfb128(), 16),
            (Cipher::aes_192_ecb(), Cipher::aes_192_cfb128(), 24),
        ] {
            let key = vec![7u8; len];
            let plain = vec![9u8; 77];
            let c = openssl::symm::encrypt(cfb, &key, Some(&[0u8; 16]), &plain).unwrap();
            let mut d = CfbDecryptor::new(ecb, &key, [0u8; 16]).unwrap();
            let mut out = vec![0u8; c.len()];
            d.update(&c, &mut out).unwrap();
            assert_eq!(out, plain);
        }
    }
}
