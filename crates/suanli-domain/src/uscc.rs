//! The Unified Social Credit Code (统一社会信用代码) of GB 32100-2015.
//!
//! Eighteen characters from a 31-character set (digits and upper-case letters less I, O, S, V,
//! Z): position 1 the registration authority, position 2 the organisation kind under that
//! authority, positions 3–8 the GB/T 2260 region of registration, positions 9–17 the organisation
//! code of GB 11714 (eight characters and its own mod-11 check), position 18 a weighted mod-31
//! check over the first seventeen. Parsing checks each rule in that order and names the first
//! that fails.

use std::fmt;

use crate::region::{RegionCode, RegionError};

/// The 31 characters a code may use; a character's index is its value in the mod-31 check.
const CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weights of positions 1–17 in the check character: 3^(i−1) mod 31.
const CHECK_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
/// Weights of the eight body characters of a GB 11714 organisation code.
const ORGANISATION_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// A valid Unified Social Credit Code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uscc([u8; 18]);

/// Which rule of GB 32100-2015 a code breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsccError {
    #[error("a unified social credit code has 18 characters, got {0}")]
    WrongLength(usize),
    #[error(
        "character {position} is {found:?}, which is not in the code's 31-character set \
         (digits and capital letters except I, O, S, V, Z)"
    )]
    InvalidCharacter { position: usize, found: char },
    #[error("character 1 is {0:?}, which is not a registration authority code (1-9, A, N or Y)")]
    UnknownRegistrationAuthority(char),
    #[error("character 2 is {kind:?}, which is not an organisation kind under registration authority {authority:?}")]
    UnknownOrganisationKind { authority: char, kind: char },
    #[error("characters 3-8 are not a GB/T 2260 region: {0}")]
    Region(RegionError),
    #[error(
        "characters 9-17 are not a valid organisation code: its check character should be {expected:?}, got {found:?}"
    )]
    OrganisationCodeCheck { expected: char, found: char },
    #[error("character 18 is the check character and should be {expected:?}, got {found:?}")]
    CheckCharacter { expected: char, found: char },
}

/// The organisation kinds each registration authority may issue (GB 32100-2015, Table 1, with
/// the authorities added by later notices).
fn organisation_kinds(authority: u8) -> Option<&'static [u8]> {
    Some(match authority {
        b'1' => b"1239",   // 机构编制: 机关, 事业单位, 群众团体, 其他
        b'2' => b"19",     // 外交
        b'3' => b"123459", // 司法行政: 律师事务所, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
        b'4' => b"19",     // 文化
        b'5' => b"1239",   // 民政: 社会团体, 民办非企业单位, 基金会, 其他
        b'6' => b"19",     // 旅游
        b'7' => b"129",    // 宗教
        b'8' => b"19",     // 工会
        b'9' => b"123",    // 市场监管 (工商): 企业, 个体工商户, 农民专业合作社
        b'A' => b"19",     // 中央军委改革和编制办公室
        b'N' => b"1239",   // 农业: 组级, 村级, 乡镇级集体经济组织, 其他
        b'Y' => b"1",      // 其他
        _ => return None,
    })
}

/// A character's value in GB 11714 (digits 0–9, letters A=10 … Z=35).
fn organisation_value(character: u8) -> u32 {
    match character {
        b'0'..=b'9' => u32::from(character - b'0'),
        _ => u32::from(character - b'A') + 10,
    }
}

impl Uscc {
    /// Parses a code, checking every rule of the standard.
    pub fn parse(text: &str) -> Result<Uscc, UsccError> {
        let length = text.chars().count();
        if length != 18 {
            return Err(UsccError::WrongLength(length));
        }
        let bytes: [u8; 18] = text.as_bytes().try_into().map_err(|_| {
            // 18 characters but not 18 bytes: some character is not ASCII.
            let (index, found) = text.chars().enumerate().find(|(_, c)| !c.is_ascii()).unwrap_or((0, '?'));
            UsccError::InvalidCharacter { position: index + 1, found }
        })?;
        let mut values = [0u32; 18];
        for (index, &byte) in bytes.iter().enumerate() {
            let value = CHARSET.iter().position(|&c| c == byte);
            values[index] =
                value.ok_or(UsccError::InvalidCharacter { position: index + 1, found: char::from(byte) })? as u32;
        }
        let authority = bytes[0];
        let kinds =
            organisation_kinds(authority).ok_or(UsccError::UnknownRegistrationAuthority(char::from(authority)))?;
        if !kinds.contains(&bytes[1]) {
            return Err(UsccError::UnknownOrganisationKind {
                authority: char::from(authority),
                kind: char::from(bytes[1]),
            });
        }
        let region = std::str::from_utf8(&bytes[2..8]).expect("checked ASCII");
        RegionCode::parse(region).map_err(UsccError::Region)?;
        let weighted: u32 =
            bytes[8..16].iter().zip(ORGANISATION_WEIGHTS).map(|(&c, w)| organisation_value(c) * w).sum();
        let expected = match 11 - weighted % 11 {
            10 => b'X',
            11 => b'0',
            digit => b'0' + digit as u8,
        };
        if bytes[16] != expected {
            return Err(UsccError::OrganisationCodeCheck {
                expected: char::from(expected),
                found: char::from(bytes[16]),
            });
        }
        let expected = check_character(&values[..17]);
        if bytes[17] != expected {
            return Err(UsccError::CheckCharacter { expected: char::from(expected), found: char::from(bytes[17]) });
        }
        Ok(Uscc(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a parsed code is ASCII")
    }

    /// The region of registration, positions 3–8.
    pub fn region(&self) -> RegionCode {
        RegionCode::parse(&self.as_str()[2..8]).expect("checked at parse")
    }

    /// Builds a valid code from its first 16 characters, computing both check characters. Tests,
    /// demos and simulations use it to make codes that are valid without being anyone's.
    pub fn with_check_characters(first_sixteen: &str) -> Result<Uscc, UsccError> {
        if first_sixteen.len() != 16 {
            return Err(UsccError::WrongLength(first_sixteen.chars().count() + 2));
        }
        let weighted: u32 = first_sixteen.as_bytes()[8..16]
            .iter()
            .zip(ORGANISATION_WEIGHTS)
            .map(|(&c, w)| organisation_value(c.to_ascii_uppercase()) * w)
            .sum();
        let organisation_check = match 11 - weighted % 11 {
            10 => 'X',
            11 => '0',
            digit => char::from(b'0' + digit as u8),
        };
        let seventeen = format!("{first_sixteen}{organisation_check}");
        let values: Vec<u32> =
            seventeen.bytes().map(|b| CHARSET.iter().position(|&c| c == b).unwrap_or(0) as u32).collect();
        let last = char::from(check_character(&values));
        Uscc::parse(&format!("{seventeen}{last}"))
    }
}

fn check_character(values: &[u32]) -> u8 {
    let weighted: u32 = values.iter().zip(CHECK_WEIGHTS).map(|(v, w)| v * w).sum();
    CHARSET[((31 - weighted % 31) % 31) as usize]
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uscc({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example code printed in GB 32100-2015 and in most explanations of it.
    const STANDARD_EXAMPLE: &str = "91350100M000100Y43";

    #[test]
    fn accepts_the_standard_example_and_generated_codes() {
        let code = Uscc::parse(STANDARD_EXAMPLE).unwrap();
        assert_eq!(code.region().to_string(), "350100");
        assert_eq!(code.to_string(), STANDARD_EXAMPLE);
        let built = Uscc::with_check_characters("91310115MA1K3YJ1").unwrap();
        assert_eq!(built.region().to_string(), "310115");
        assert_eq!(Uscc::with_check_characters("91350100M000100Y").unwrap().as_str(), STANDARD_EXAMPLE);
    }

    #[test]
    fn refuses_each_kind_of_fault() {
        let check = |text: &str, expect: UsccError| assert_eq!(Uscc::parse(text), Err(expect), "{text}");
        check("91350100M000100Y4", UsccError::WrongLength(17));
        check("91350100M000100Y433", UsccError::WrongLength(19));
        check("91350100M000100Y4３", UsccError::InvalidCharacter { position: 18, found: '３' });
        check("91350100M000I00Y43", UsccError::InvalidCharacter { position: 13, found: 'I' });
        check("91350100m000100Y43", UsccError::InvalidCharacter { position: 9, found: 'm' });
        check("B1350100M000100Y43", UsccError::UnknownRegistrationAuthority('B'));
        check("94350100M000100Y43", UsccError::UnknownOrganisationKind { authority: '9', kind: '4' });
        check("91990100M000100Y43", UsccError::Region(RegionError::UnknownProvince("990100".into())));
        check("91350100M000100Y53", UsccError::OrganisationCodeCheck { expected: '4', found: '5' });
        check("91350100M000100Y44", UsccError::CheckCharacter { expected: '3', found: '4' });
    }

    proptest::proptest! {
        /// Changing any one character of a valid code to another character of the set is always
        /// caught by some rule: the mod-31 check detects every single substitution.
        #[test]
        fn every_single_substitution_is_caught(position in 0usize..18, replacement in 0usize..31) {
            let mut bytes = STANDARD_EXAMPLE.as_bytes().to_vec();
            proptest::prop_assume!(bytes[position] != CHARSET[replacement]);
            bytes[position] = CHARSET[replacement];
            let text = String::from_utf8(bytes).unwrap();
            proptest::prop_assert!(Uscc::parse(&text).is_err(), "{} was accepted", text);
        }
    }
}
