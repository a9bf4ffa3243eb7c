//! Exact money: a decimal amount with its ISO 4217 currency. Amounts are never `f64`; conversion to a
//! float happens only at the edge of a statistical model or an outbound JSON number, and is explicit.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount `{0}` is not a decimal number")]
    BadAmount(String),
    #[error("currency `{0}` is not a three-letter ISO 4217 code")]
    BadCurrency(String),
    #[error("cannot add {0} to {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// A three-letter upper-case ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(|c| c.is_ascii_alphabetic()) {
            return Err(MoneyError::BadCurrency(s.to_string()));
        }
        Ok(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("currency bytes are ASCII letters by construction")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An exact amount in one currency. Serialised as `{"amount": "59.97", "currency": "USD"}` with the amount
/// as a string so no JSON reader turns it into a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }

    /// Parses a platform money string such as `"59.97"`.
    pub fn parse(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        let amount =
            Decimal::from_str(amount.trim()).map_err(|_| MoneyError::BadAmount(amount.to_string()))?;
        Ok(Money { amount, currency: Currency::parse(currency)? })
    }

    pub fn zero(currency: Currency) -> Self {
        Money { amount: Decimal::ZERO, currency }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(other.currency, self.currency));
        }
        Ok(Money { amount: self.amount + other.amount, currency: self.currency })
    }

    /// The amount as a float, for statistics and outbound JSON numbers only.
    pub fn to_f64(&self) -> f64 {
        use rust_decimal::prelude::ToPrimitive;
        self.amount.to_f64().unwrap_or(0.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimal_strings() {
        let m = Money::parse("59.97", "usd").unwrap();
        assert_eq!(m.amount.to_string(), "59.97");
        assert_eq!(m.currency.as_str(), "USD");
        let sum = m.checked_add(Money::parse("0.03", "USD").unwrap()).unwrap();
        assert_eq!(sum.amount.to_string(), "60.00");
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"amount":"59.97","currency":"USD"}"#);
    }

    #[test]
    fn rejects_bad_money() {
        assert!(Money::parse("5x", "USD").is_err());
        assert!(Money::parse("1", "US").is_err());
        let eur = Money::parse("1", "EUR").unwrap();
        assert!(Money::parse("1", "USD").unwrap().checked_add(eur).is_err());
    }
}
