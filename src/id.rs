//! Report IDs: 100 random (or HMAC-derived) bits in upper-case Crockford
//! base32, grouped by five: `K7Q3M-2XDA9-TF4BC-1ZP0R` (docs/format.md).

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CHARS: usize = 20;

/// The name of one sealed report. Only valid IDs can be built, so an ID is
/// always safe to use as a path component.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportId(String);

/// A string that is not a report ID.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a report ID (expected five groups of five characters like K7Q3M-2XDA9-TF4BC-1ZP0R)"
)]
pub struct InvalidId(String);

impl ReportId {
    /// A fresh ID from the operating system's random generator.
    pub fn random() -> ReportId {
        let mut bytes = [0u8; 13];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ReportId::from_bits(&bytes)
    }

    /// The ID of a message that arrived by mail: the same bytes always give
    /// the same ID, so a message fetched twice is sealed once.
    pub fn for_message(secret: &[u8], raw: &[u8]) -> ReportId {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(raw);
        ReportId::from_bits(&mac.finalize().into_bytes())
    }

    /// Encodes the first 100 bits of `bytes` (at least 13 bytes).
    fn from_bits(bytes: &[u8]) -> ReportId {
        let mut out = String::with_capacity(CHARS + 3);
        for i in 0..CHARS {
            let bit = i * 5;
            let (byte, shift) = (bit / 8, bit % 8);
            let window = (u16::from(bytes[byte]) << 8) | u16::from(bytes[byte + 1]);
            let value = (window >> (11 - shift)) & 0x1f;
            if i > 0 && i % 5 == 0 {
                out.push('-');
            }
            out.push(char::from(ALPHABET[usize::from(value)]));
        }
        ReportId(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ReportId {
    type Err = InvalidId;

    /// Accepts the canonical form, and lower case or `O`/`I`/`L` typos as
    /// Crockford base32 allows, normalising them.
    fn from_str(s: &str) -> Result<ReportId, InvalidId> {
        let invalid = || InvalidId(s.chars().take(40).collect());
        let mut out = String::with_capacity(CHARS + 3);
        let mut count = 0;
        for (i, group) in s.split('-').enumerate() {
            if i >= 4 || group.len() != 5 {
                return Err(invalid());
            }
            if i > 0 {
                out.push('-');
            }
            for c in group.chars() {
                let c = match c.to_ascii_uppercase() {
                    'O' => '0',
                    'I' | 'L' => '1',
                    c => c,
                };
                if !ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
                    return Err(invalid());
                }
                out.push(c);
                count += 1;
            }
        }
        if count != CHARS {
            return Err(invalid());
        }
        Ok(ReportId(out))
    }
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReportId({})", self.0)
    }
}

impl serde::Serialize for ReportId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ReportId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_documented_shape_and_differ() {
        let a = ReportId::random();
        let b = ReportId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 23);
        let groups: Vec<&str> = a.as_str().split('-').collect();
        assert_eq!(groups.len(), 4);
        assert!(groups.iter().all(|g| g.len() == 5));
        assert_eq!(a.as_str().parse::<ReportId>().unwrap(), a);
    }

    #[test]
    fn encoding_matches_crockford_base32() {
        // 0xff… encodes to all Z; 0x00… to all 0; 0x84 0x21 0x08 0x42 0x10 → 1s.
        assert_eq!(
            ReportId::from_bits(&[0xff; 13]).as_str(),
            "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"
        );
        assert_eq!(
            ReportId::from_bits(&[0; 13]).as_str(),
            "00000-00000-00000-00000"
        );
        let ones = [
            0x08, 0x42, 0x10, 0x84, 0x21, 0x08, 0x42, 0x10, 0x84, 0x21, 0x08, 0x42, 0x10,
        ];
        assert_eq!(
            ReportId::from_bits(&ones).as_str(),
            "11111-11111-11111-11111"
        );
    }

    #[test]
    fn message_ids_are_stable_and_keyed() {
        let a = ReportId::for_message(b"secret", b"mail");
        assert_eq!(a, ReportId::for_message(b"secret", b"mail"));
        assert_ne!(a, ReportId::for_message(b"other", b"mail"));
        assert_ne!(a, ReportId::for_message(b"secret", b"mail2"));
    }

    #[test]
    fn parsing_normalises_and_rejects() {
        let id: ReportId = "k7q3m-2xda9-tf4bc-1zpor".parse().unwrap();
        assert_eq!(id.as_str(), "K7Q3M-2XDA9-TF4BC-1ZP0R");
        for bad in [
            "",
            "../../etc",
            "K7Q3M-2XDA9-TF4BC",
            "K7Q3M-2XDA9-TF4BC-1ZP0RR",
            "K7Q3M-2XDA9-TF4BC-1ZP0U",
            "K7Q3M/2XDA9/TF4BC/1ZP0R",
            "é7Q3M-2XDA9-TF4BC-1ZP0R",
        ] {
            assert!(bad.parse::<ReportId>().is_err(), "{bad}");
        }
    }
}
