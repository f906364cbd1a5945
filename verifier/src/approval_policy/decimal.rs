//! Exact decimals for policy comparisons (`spec/policy.md`, Conventions): text compared digit
//! by digit, never through binary floating point, so `1000` equals `1000.00` and `0.1` is 0.1.

use core::cmp::Ordering;
use core::fmt;

/// Most digits (integer and fraction parts together) of a decimal (`spec/policy.md`,
/// Conventions).
pub const MAX_DECIMAL_DIGITS: usize = 40;

/// Why a text is not a decimal (`spec/policy.md`, Conventions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecimalError {
    /// Empty text, or an empty integer or fraction part (`""`, `"-"`, `".5"`, `"5."`).
    EmptyPart,
    /// A character other than an optional leading `-`, ASCII digits and one `.` (a `+`, an
    /// exponent, spaces, a thousands separator...).
    BadCharacter,
    /// More than [`MAX_DECIMAL_DIGITS`] digits.
    TooManyDigits,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::EmptyPart => "an empty integer or fraction part",
            DecimalError::BadCharacter => {
                "only an optional '-', digits and one '.' are allowed (no '+', exponent or spaces)"
            }
            DecimalError::TooManyDigits => "more than 40 digits",
        })
    }
}

/// An exact decimal, read from text: `-?[0-9]+(\.[0-9]+)?`, at most [`MAX_DECIMAL_DIGITS`]
/// digits. Ordered by value: `1000` equals `1000.00` and `-0` equals `0`.
#[derive(Clone, Copy, Debug)]
pub struct Decimal<'a> {
    negative: bool,
    /// Integer digits without leading zeros (empty for zero).
    int: &'a str,
    /// Fraction digits without trailing zeros (empty for none).
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// Parses `text` (`spec/policy.md`, Conventions); returns why it is not a decimal.
    pub fn parse(text: &'a str) -> Result<Self, DecimalError> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (int, frac) = match rest.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (rest, None),
        };
        let digits = |s: &str| -> Result<(), DecimalError> {
            if s.is_empty() {
                Err(DecimalError::EmptyPart)
            } else if !s.bytes().all(|b| b.is_ascii_digit()) {
                Err(DecimalError::BadCharacter)
            } else {
                Ok(())
            }
        };
        digits(int)?;
        if let Some(f) = frac {
            digits(f)?;
        }
        if int.len() + frac.map_or(0, str::len) > MAX_DECIMAL_DIGITS {
            return Err(DecimalError::TooManyDigits);
        }
        let int = int.trim_start_matches('0');
        let frac = frac.unwrap_or("").trim_end_matches('0');
        Ok(Decimal {
            negative: negative && !(int.is_empty() && frac.is_empty()),
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            // Without trailing zeros, byte order of the fraction digits is numeric order.
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl PartialEq for Decimal<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Decimal<'_> {}
impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}
