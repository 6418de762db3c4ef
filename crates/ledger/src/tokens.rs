//! Amounts as people read and write them: tokens with up to nine decimals, converted exactly to
//! and from the ledger's base units (`UNITS_PER_TOKEN` of them in a token), never through a
//! float. One definition for the CLI, the ledger's error messages and anything else that shows
//! an amount, so the node and the CLI speak the same unit.

use std::fmt;

use crate::types::UNITS_PER_TOKEN;

/// Decimal places of a token: 10^DECIMALS base units make one.
pub const DECIMALS: usize = 9;
const _: () = assert!(10u64.pow(DECIMALS as u32) == UNITS_PER_TOKEN);

/// An amount of base units, displayed in tokens without trailing zeros (1500000000 -> "1.5").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tokens(pub u128);

impl From<u64> for Tokens {
    fn from(units: u64) -> Tokens {
        Tokens(u128::from(units))
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = u128::from(UNITS_PER_TOKEN);
        let (whole, frac) = (self.0 / per, self.0 % per);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:0DECIMALS$}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// Why a text is not an amount of tokens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error("amount {0:?} is not a number of tokens like 12 or 0.5 (digits and one '.', no sign)")]
    /// The text is not an unsigned decimal number.
    NotANumber(String),
    #[error("amount {text:?} has {decimals} decimals; a token has {DECIMALS} (the smallest amount is 0.000000001)")]
    /// More than nine decimals: finer than a base unit.
    TooManyDecimals {
        /// The text given.
        text: String,
        /// Its number of decimals.
        decimals: usize,
    },
    #[error("amount {0:?} is too large for a u64 of base units")]
    /// More base units than a `u64` holds.
    TooLarge(String),
}

impl Tokens {
    /// Parses a token amount (`12`, `0.5`, `1.000000001`, `.25`, `7.`) into base units, exactly.
    pub fn parse_units(s: &str) -> Result<u64, TokensError> {
        let t = s.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
            return Err(TokensError::NotANumber(s.to_string()));
        }
        if frac.len() > DECIMALS {
            return Err(TokensError::TooManyDecimals { text: s.to_string(), decimals: frac.len() });
        }
        let too_large = || TokensError::TooLarge(s.to_string());
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
        // Right-padded to nine digits: "5" is 500000000 units.
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<DECIMALS$}").parse().map_err(|_| too_large())?
        };
        whole.checked_mul(UNITS_PER_TOKEN).and_then(|w| w.checked_add(frac)).ok_or_else(too_large)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_print_as_tokens_without_trailing_zeros() {
        assert_eq!(Tokens::from(1_500_000_000).to_string(), "1.5");
        assert_eq!(Tokens::from(1).to_string(), "0.000000001");
        assert_eq!(Tokens::from(0).to_string(), "0");
        assert_eq!(Tokens::from(7_000_000_000).to_string(), "7");
        assert_eq!(Tokens(u128::from(u64::MAX) * 4).to_string(), "73786976294.83820646");
    }

    #[test]
    fn bad_amounts_are_refused_with_their_reason() {
        assert_eq!(Tokens::parse_units("0.3"), Ok(300_000_000));
        assert_eq!(Tokens::parse_units(".25"), Ok(250_000_000));
        assert_eq!(Tokens::parse_units("7."), Ok(7_000_000_000));
        for bad in ["", ".", "-1", "1e3", "1.2.3", "+5", "0x10"] {
            assert!(matches!(Tokens::parse_units(bad), Err(TokensError::NotANumber(_))), "{bad:?}");
        }
        assert!(matches!(
            Tokens::parse_units("1.0000000001"),
            Err(TokensError::TooManyDecimals { decimals: 10, .. })
        ));
        assert!(matches!(Tokens::parse_units("18446744074"), Err(TokensError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_units(units in any::<u64>()) {
            prop_assert_eq!(Tokens::parse_units(&Tokens::from(units).to_string()), Ok(units));
        }
    }
}
