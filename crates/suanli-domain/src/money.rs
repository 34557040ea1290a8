//! Money and rates.
//!
//! Money is a whole number of fen (分, the CNY minor unit) in an `i64`. Every arithmetic operation
//! is checked: an overflow is an error value, never a wrap and never a panic. Rates are basis
//! points (`8000` = 80%) and are applied with an `i128` intermediate and one rounding rule, written
//! down at [`RateBp::share_floor`].

use std::fmt;

/// An amount of money in fen. Negative amounts exist (a balance can be described as owed), but
/// every input that must be positive is checked where it enters, with [`Fen::parse_positive`]
/// or [`Fen::positive`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fen(i64);

/// Why a money amount was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} has a character that is not a digit, one '-' at the start or one '.'")]
    InvalidCharacter(String),
    #[error("amount {0:?} has more than two decimal places (the smallest unit is one fen, 0.01)")]
    TooManyDecimals(String),
    #[error("amount {0:?} does not fit in a 64-bit count of fen")]
    Overflow(String),
    #[error("amount must be positive, got {0}")]
    NotPositive(i64),
    #[error("amount must not be negative, got {0}")]
    Negative(i64),
    #[error("arithmetic on amounts overflowed")]
    ArithmeticOverflow,
}

impl Fen {
    pub const ZERO: Fen = Fen(0);
    pub const MAX: Fen = Fen(i64::MAX);

    /// Any count of fen, negative included.
    pub const fn new(fen: i64) -> Fen {
        Fen(fen)
    }

    /// An amount that must be greater than zero (a transfer, a price, a budget).
    pub fn positive(fen: i64) -> Result<Fen, MoneyError> {
        if fen > 0 { Ok(Fen(fen)) } else { Err(MoneyError::NotPositive(fen)) }
    }

    /// An amount that must be zero or more (a cap that may be zero, a balance).
    pub fn non_negative(fen: i64) -> Result<Fen, MoneyError> {
        if fen >= 0 { Ok(Fen(fen)) } else { Err(MoneyError::Negative(fen)) }
    }

    /// Whole yuan, checked.
    pub fn from_yuan(yuan: i64) -> Result<Fen, MoneyError> {
        yuan.checked_mul(100).map(Fen).ok_or(MoneyError::ArithmeticOverflow)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    /// Parses a decimal yuan amount: `"1234.56"`, `"1234.5"`, `"1234"`, `"-0.01"`. Thousands
    /// separators, exponents, spaces and a `+` sign are refused, so one spelling means one amount.
    pub fn parse(text: &str) -> Result<Fen, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match body.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (body, None),
        };
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !is_digits(whole) || !fraction.is_none_or(|f| !f.is_empty() && is_digits(f)) {
            return Err(MoneyError::InvalidCharacter(text.to_owned()));
        }
        let fraction = fraction.unwrap_or("");
        if fraction.len() > 2 {
            return Err(MoneyError::TooManyDecimals(text.to_owned()));
        }
        let overflow = || MoneyError::Overflow(text.to_owned());
        let mut fen: i64 = 0;
        for digit in whole.bytes().chain(fraction.bytes()).chain(std::iter::repeat_n(b'0', 2 - fraction.len())) {
            fen = fen.checked_mul(10).and_then(|f| f.checked_add(i64::from(digit - b'0'))).ok_or_else(overflow)?;
        }
        Ok(Fen(if negative { -fen } else { fen }))
    }

    /// Parses like [`Fen::parse`] and requires the amount to be greater than zero.
    pub fn parse_positive(text: &str) -> Result<Fen, MoneyError> {
        Fen::positive(Fen::parse(text)?.0)
    }

    pub fn checked_add(self, other: Fen) -> Result<Fen, MoneyError> {
        self.0.checked_add(other.0).map(Fen).ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn checked_sub(self, other: Fen) -> Result<Fen, MoneyError> {
        self.0.checked_sub(other.0).map(Fen).ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn checked_mul(self, factor: i64) -> Result<Fen, MoneyError> {
        self.0.checked_mul(factor).map(Fen).ok_or(MoneyError::ArithmeticOverflow)
    }

    /// The amount in words as written on Chinese financial documents (人民币大写), for example
    /// `壹仟贰佰叁拾肆元伍角陆分` for ¥1,234.56 and `壹佰元整` for ¥100.00.
    ///
    /// Rules, following the People's Bank of China rules for filling in bills: a run of zeros
    /// inside the number is read as one 零; a ten at the head is written 壹拾; an amount with no
    /// fen ends in 整; zero jiao between yuan and fen is read 零. Amounts of 10^16 yuan and more
    /// nest 亿 (亿亿), since no larger unit is in common use.
    pub fn to_chinese_uppercase(self) -> String {
        const DIGITS: [char; 10] = ['零', '壹', '贰', '叁', '肆', '伍', '陆', '柒', '捌', '玖'];
        let magnitude = self.0.unsigned_abs();
        let yuan = magnitude / 100;
        let jiao = (magnitude / 10 % 10) as usize;
        let fen = (magnitude % 10) as usize;
        let mut out = String::new();
        if self.0 < 0 {
            out.push('负');
        }
        if yuan > 0 {
            out.push_str(&uppercase_integer(yuan));
            out.push('元');
        }
        if jiao > 0 {
            out.push(DIGITS[jiao]);
            out.push('角');
        } else if yuan > 0 && fen > 0 {
            out.push('零');
        }
        if fen > 0 {
            out.push(DIGITS[fen]);
            out.push('分');
        } else if yuan == 0 && jiao == 0 {
            out.push_str("零元整");
        } else {
            out.push('整');
        }
        out
    }
}

/// Reads a positive integer in uppercase Chinese numerals, grouping by 万 and 亿.
fn uppercase_integer(n: u64) -> String {
    const DIGITS: [char; 10] = ['零', '壹', '贰', '叁', '肆', '伍', '陆', '柒', '捌', '玖'];
    const PLACES: [&str; 4] = ["", "拾", "佰", "仟"];
    debug_assert!(n > 0);
    if n >= 100_000_000 {
        let (high, low) = (n / 100_000_000, n % 100_000_000);
        let mut out = uppercase_integer(high);
        out.push('亿');
        if low > 0 {
            if low < 10_000_000 {
                out.push('零');
            }
            out.push_str(&uppercase_integer(low));
        }
        return out;
    }
    if n >= 10_000 {
        let (high, low) = (n / 10_000, n % 10_000);
        let mut out = uppercase_integer(high);
        out.push('万');
        if low > 0 {
            if low < 1_000 {
                out.push('零');
            }
            out.push_str(&uppercase_integer(low));
        }
        return out;
    }
    // Below ten thousand: digits with place names, one 零 for each run of inner zeros.
    let mut out = String::new();
    let mut pending_zero = false;
    for place in (0..4).rev() {
        let digit = (n / 10u64.pow(place as u32) % 10) as usize;
        if digit == 0 {
            pending_zero = !out.is_empty();
            continue;
        }
        if pending_zero {
            out.push('零');
            pending_zero = false;
        }
        out.push(DIGITS[digit]);
        out.push_str(PLACES[place]);
    }
    out
}

impl fmt::Display for Fen {
    /// `¥1,234,567.89`, with a leading `-` for negative amounts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.unsigned_abs();
        let yuan = (magnitude / 100).to_string();
        let mut grouped = String::with_capacity(yuan.len() + yuan.len() / 3);
        for (index, digit) in yuan.chars().enumerate() {
            if index > 0 && (yuan.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}¥{grouped}.{:02}", magnitude % 100)
    }
}

/// A rate in basis points, from 0 (0%) to 10,000 (100%).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateBp(u16);

/// Why a rate was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate must be between 0 and 10000 basis points (0% to 100%), got {0}")]
    OutOfRange(i64),
}

impl RateBp {
    pub const ZERO: RateBp = RateBp(0);
    pub const FULL: RateBp = RateBp(10_000);

    pub fn new(basis_points: i64) -> Result<RateBp, RateError> {
        match u16::try_from(basis_points) {
            Ok(bp) if bp <= 10_000 => Ok(RateBp(bp)),
            _ => Err(RateError::OutOfRange(basis_points)),
        }
    }

    pub const fn basis_points(self) -> u16 {
        self.0
    }

    /// The share of `amount` at this rate, rounded toward negative infinity (floor) to whole fen.
    ///
    /// This is the one rounding rule for subsidies: the voucher pays `floor(amount × rate)` and
    /// the enterprise pays the rest, so rounding never takes a fen from the programme's budget
    /// that the rate does not cover. The product is formed in `i128`, so it cannot overflow, and
    /// the result has a magnitude no larger than `amount`, so it always fits back into `i64`.
    pub fn share_floor(self, amount: Fen) -> Fen {
        let product = i128::from(amount.fen()) * i128::from(self.0);
        let share = product.div_euclid(10_000);
        Fen(i64::try_from(share).expect("a share of at most 100% fits the amount's type"))
    }
}

impl fmt::Display for RateBp {
    /// `80%`, `12.5%`, `0.01%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 100, self.0 % 100);
        if fraction == 0 {
            write!(f, "{whole}%")
        } else if fraction % 10 == 0 {
            write!(f, "{whole}.{}%", fraction / 10)
        } else {
            write!(f, "{whole}.{fraction:02}%")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_each_spelling() {
        let check = |text: &str, fen: i64| assert_eq!(Fen::parse(text), Ok(Fen(fen)), "{text}");
        check("1234.56", 123_456);
        check("1234.5", 123_450);
        check("1234", 123_400);
        check("0.01", 1);
        check("-0.01", -1);
        check("92233720368547758.07", i64::MAX);
    }

    #[test]
    fn parse_refuses_each_fault() {
        let check = |text: &str, expect: MoneyError| assert_eq!(Fen::parse(text), Err(expect), "{text}");
        check("", MoneyError::Empty);
        check("12a", MoneyError::InvalidCharacter("12a".into()));
        check("1,234", MoneyError::InvalidCharacter("1,234".into()));
        check("+1", MoneyError::InvalidCharacter("+1".into()));
        check(".5", MoneyError::InvalidCharacter(".5".into()));
        check("5.", MoneyError::InvalidCharacter("5.".into()));
        check("1.2.3", MoneyError::InvalidCharacter("1.2.3".into()));
        check("--1", MoneyError::InvalidCharacter("--1".into()));
        check("1.234", MoneyError::TooManyDecimals("1.234".into()));
        check("92233720368547758.08", MoneyError::Overflow("92233720368547758.08".into()));
        assert_eq!(Fen::parse_positive("0"), Err(MoneyError::NotPositive(0)));
        assert_eq!(Fen::parse_positive("-3"), Err(MoneyError::NotPositive(-300)));
    }

    #[test]
    fn display_groups_thousands() {
        let check = |fen: i64, text: &str| assert_eq!(Fen(fen).to_string(), text);
        check(0, "¥0.00");
        check(5, "¥0.05");
        check(123_456, "¥1,234.56");
        check(123_456_789, "¥1,234,567.89");
        check(100_000, "¥1,000.00");
        check(-123_456, "-¥1,234.56");
        check(i64::MIN, "-¥92,233,720,368,547,758.08");
    }

    #[test]
    fn chinese_uppercase_follows_the_bill_rules() {
        let check = |fen: i64, text: &str| assert_eq!(Fen(fen).to_chinese_uppercase(), text, "{fen}");
        check(0, "零元整");
        check(1, "壹分");
        check(50, "伍角整");
        check(56, "伍角陆分");
        check(100, "壹元整");
        check(1_000, "壹拾元整");
        check(10_000, "壹佰元整");
        check(123_456, "壹仟贰佰叁拾肆元伍角陆分");
        check(100_007, "壹仟元零柒分");
        check(100_100, "壹仟零壹元整");
        check(10_010_000, "壹拾万零壹佰元整");
        check(10_001_000, "壹拾万零壹拾元整");
        check(60_000_000_000, "陆亿元整");
        check(100_000_000_100, "壹拾亿零壹元整");
        check(1_000_100_000_000, "壹佰亿零壹佰万元整");
        check(123_456_789_012, "壹拾贰亿叁仟肆佰伍拾陆万柒仟捌佰玖拾元壹角贰分");
        check(-250, "负贰元伍角整");
    }

    #[test]
    fn rates_are_bounded_and_floor() {
        assert_eq!(RateBp::new(10_001), Err(RateError::OutOfRange(10_001)));
        assert_eq!(RateBp::new(-1), Err(RateError::OutOfRange(-1)));
        let rate = RateBp::new(8_000).unwrap();
        assert_eq!(rate.share_floor(Fen(999)), Fen(799));
        assert_eq!(rate.share_floor(Fen(i64::MAX)), Fen(i64::MAX / 10 * 8 + 5));
        assert_eq!(RateBp::FULL.share_floor(Fen(i64::MAX)), Fen(i64::MAX));
        assert_eq!(rate.to_string(), "80%");
        assert_eq!(RateBp::new(1_250).unwrap().to_string(), "12.5%");
        assert_eq!(RateBp::new(1).unwrap().to_string(), "0.01%");
    }

    proptest::proptest! {
        #[test]
        fn display_then_parse_round_trips(fen in -i64::MAX..=i64::MAX) {
            let shown = Fen(fen).to_string().replace(['¥', ','], "");
            proptest::prop_assert_eq!(Fen::parse(&shown), Ok(Fen(fen)));
        }

        #[test]
        fn share_never_exceeds_the_amount(fen in 0..=i64::MAX, bp in 0i64..=10_000) {
            let share = RateBp::new(bp).unwrap().share_floor(Fen(fen));
            proptest::prop_assert!(share.fen() >= 0 && share.fen() <= fen);
        }
    }
}
