//! Reply codes: 135 random bits and one check character in Crockford
//! base32, shown as seven groups of four (`7KQ3-M2XD-A9TF-…`). A person can
//! copy one: case does not matter, `O` reads as `0` and `I`/`L` as `1`,
//! spaces and dashes are ignored, and a mistyped character is caught by
//! the check character before anything is looked up.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Crockford's check symbols beyond the alphabet (values 32–36).
const CHECK_EXTRA: &[u8; 5] = b"*~$=U";
/// Data characters (27 × 5 = 135 random bits).
pub const DATA_CHARS: usize = 27;
/// The longest input the parser looks at (a code with generous spacing).
pub const MAX_INPUT_BYTES: usize = 200;

/// A reply code. Secret: zeroized on drop, never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq, Zeroize)]
#[zeroize(drop)]
pub struct ReplyCode {
    /// The 27 data characters, canonical (upper case, `0`/`1` for look-alikes).
    data: [u8; DATA_CHARS],
}

/// Why a typed code is not a code. No variant quotes the input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeError {
    #[error("a reply code has 28 characters (seven groups of four); this has {0}")]
    Length(usize),
    #[error(
        "a reply code holds only letters, digits and its check symbol (spaces and dashes are ignored)"
    )]
    Character,
    #[error("the reply code has a typo: check each character against the one you were given")]
    Check,
}

impl ReplyCode {
    /// A fresh random code.
    pub fn generate() -> ReplyCode {
        let mut data = [0u8; DATA_CHARS];
        for c in &mut data {
            *c = ALPHABET[usize::from(rand::random::<u8>() & 31)];
        }
        ReplyCode { data }
    }

    /// Parses what a reporter typed or pasted.
    pub fn parse(input: &str) -> Result<ReplyCode, CodeError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(CodeError::Length(input.chars().count()));
        }
        let mut chars = Zeroizing::new(Vec::with_capacity(DATA_CHARS + 1));
        for c in input.chars() {
            match c {
                ' ' | '-' | '\t' | '\n' | '\r' => {}
                c if c.is_ascii() => chars.push(canonical(c as u8).ok_or(CodeError::Character)?),
                _ => return Err(CodeError::Character),
            }
        }
        if chars.len() != DATA_CHARS + 1 {
            return Err(CodeError::Length(chars.len()));
        }
        let mut data = [0u8; DATA_CHARS];
        data.copy_from_slice(&chars[..DATA_CHARS]);
        if !data.iter().all(|c| ALPHABET.contains(c)) {
            return Err(CodeError::Character);
        }
        let code = ReplyCode { data };
        if code.check() != chars[DATA_CHARS] {
            return Err(CodeError::Check);
        }
        Ok(code)
    }

    /// The canonical form Argon2id is given (27 characters, no check).
    pub fn secret(&self) -> &[u8] {
        &self.data
    }

    /// Crockford's check symbol: the value mod 37.
    fn check(&self) -> u8 {
        let mut rem: u32 = 0;
        for c in self.data {
            let v = ALPHABET.iter().position(|a| *a == c).unwrap_or(0) as u32;
            rem = (rem * 32 + v) % 37;
        }
        let rem = rem as usize;
        if rem < 32 {
            ALPHABET[rem]
        } else {
            CHECK_EXTRA[rem - 32]
        }
    }

    /// The code as shown once to the reporter. The returned string is
    /// zeroized on drop.
    pub fn display(&self) -> Zeroizing<String> {
        let mut all: Vec<u8> = self.data.to_vec();
        all.push(self.check());
        let mut out = Zeroizing::new(String::with_capacity(35));
        for (i, c) in all.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(*c as char);
        }
        all.zeroize();
        out
    }
}

/// A typed character in canonical form: upper case, `O`→`0`, `I`/`L`→`1`;
/// check symbols pass as they are. `None` for anything else.
fn canonical(c: u8) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    match c {
        b'O' => Some(b'0'),
        b'I' | b'L' => Some(b'1'),
        c if ALPHABET.contains(&c) || CHECK_EXTRA.contains(&c) => Some(c),
        _ => None,
    }
}

impl fmt::Debug for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_survives_how_people_copy_it() {
        let code = ReplyCode::generate();
        let shown = code.display();
        assert_eq!(shown.len(), 28 + 6);
        assert_eq!(ReplyCode::parse(&shown).unwrap(), code);
        let sloppy = shown
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(ReplyCode::parse(&sloppy).unwrap(), code);
        assert!(!format!("{code:?}").contains(&shown[..4]));
    }

    #[test]
    fn typos_and_junk_are_told_apart_from_unknown_codes() {
        let shown = ReplyCode::generate().display().to_string();
        // One character changed: the check catches it.
        let mut typo: Vec<char> = shown.chars().collect();
        typo[0] = if typo[0] == '2' { '3' } else { '2' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(ReplyCode::parse(&typo), Err(CodeError::Check));
        assert_eq!(ReplyCode::parse("abc"), Err(CodeError::Length(3)));
        assert_eq!(
            ReplyCode::parse(&format!("{shown}é")),
            Err(CodeError::Character)
        );
        assert!(ReplyCode::parse(&"A".repeat(10_000)).is_err());
    }

    #[test]
    fn codes_carry_135_random_bits() {
        // 27 characters of 5 bits; two fresh codes never collide in practice.
        let a = ReplyCode::generate();
        let b = ReplyCode::generate();
        assert_ne!(a, b);
        assert_eq!(a.secret().len() * 5, 135);
    }
}
