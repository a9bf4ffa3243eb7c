//! RSA-2048 key pairs made for nudge's tests (PKCS#8 private, SPKI public). Test data only: they sign
//! nothing outside tests and the local dev fake.

/// Commerce's Webhooks-module key pair.
pub const COMMERCE_PRIVATE: &str = include_str!("../../keys/adobe-commerce.key.pem");
pub const COMMERCE_PUBLIC: &str = include_str!("../../keys/adobe-commerce.pub.pem");
/// Adobe I/O Events' first key pair.
pub const IO_1_PRIVATE: &str = include_str!("../../keys/adobe-io-1.key.pem");
pub const IO_1_PUBLIC: &str = include_str!("../../keys/adobe-io-1.pub.pem");
/// Adobe I/O Events' second key pair (rotation).
pub const IO_2_PRIVATE: &str = include_str!("../../keys/adobe-io-2.key.pem");
pub const IO_2_PUBLIC: &str = include_str!("../../keys/adobe-io-2.pub.pem");
/// A key pair nudge is never given.
pub const STRANGER_PRIVATE: &str = include_str!("../../keys/adobe-stranger.key.pem");
pub const STRANGER_PUBLIC: &str = include_str!("../../keys/adobe-stranger.pub.pem");
