//! Serde helpers for the lenient values SPIRE's configuration accepts.
//!
//! Use them with `#[serde(deserialize_with = "...")]`. The `option_*`
//! variants are for `Option` fields and need `#[serde(default)]` as well, so
//! that a missing key gives `None`:
//!
//! ```
//! use std::path::Path;
//! use std::time::Duration;
//! use serde::Deserialize;
//! use spinel_config::hcl::ConfigFile;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Server {
//!     #[serde(deserialize_with = "spinel_config::de::u16_or_string")]
//!     bind_port: u16,
//!     #[serde(default, deserialize_with = "spinel_config::de::option_go_duration")]
//!     ca_ttl: Option<Duration>,
//!     #[serde(default, deserialize_with = "spinel_config::de::option_go_duration")]
//!     default_x509_svid_ttl: Option<Duration>,
//! }
//!
//! let source = "server {\n bind_port = \"8081\"\n ca_ttl = \"24h\"\n}\n";
//! let server: Server = ConfigFile::parse(Path::new("s.conf"), source)?.section("server")?;
//! assert_eq!(server.bind_port, 8081);
//! assert_eq!(server.ca_ttl, Some(Duration::from_secs(86_400)));
//! assert_eq!(server.default_x509_svid_ttl, None);
//! # Ok::<(), spinel_config::hcl::ConfigError>(())
//! ```

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error, Unexpected, Visitor};

use crate::duration::parse_go_duration;
use crate::flags::parse_go_bool;

/// An integer given either as a number (`8081`) or as a string (`"8081"`).
pub fn number_or_string<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    deserializer.deserialize_any(NumberVisitor(PhantomData))
}

/// [`number_or_string`] for an `Option` field (with `#[serde(default)]`).
pub fn option_number_or_string<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    Ok(Option::<NumberOrString<T>>::deserialize(deserializer)?.map(|n| n.0))
}

/// A port or other `u16` given as `8081` or `"8081"`.
pub fn u16_or_string<'de, D>(deserializer: D) -> Result<u16, D::Error>
where
    D: Deserializer<'de>,
{
    number_or_string(deserializer)
}

/// A boolean given as `true` or as a string Go's `strconv.ParseBool`
/// accepts (`"true"`, `"FALSE"`, `"1"`, `"f"`...).
pub fn bool_or_string<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(BoolVisitor)
}

/// A duration given as a Go duration string (`"1h30m"`) or as a
/// non-negative integer number of seconds (`5400`).
pub fn go_duration<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(DurationVisitor)
}

/// [`go_duration`] for an `Option` field (with `#[serde(default)]`).
pub fn option_go_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<GoDuration>::deserialize(deserializer)?.map(|d| d.0))
}

/// Wraps [`number_or_string`] for use inside `Option`.
struct NumberOrString<T>(T);

impl<'de, T> Deserialize<'de> for NumberOrString<T>
where
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        number_or_string(deserializer).map(NumberOrString)
    }
}

/// Wraps [`go_duration`] for use inside `Option`.
struct GoDuration(Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        go_duration(deserializer).map(GoDuration)
    }
}

struct NumberVisitor<T>(PhantomData<T>);

impl<T> Visitor<'_> for NumberVisitor<T>
where
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an integer of type {}, as a number or a string",
            type_name::<T>()
        )
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
        // `8081.0` is an integer written as a float; anything else is not.
        let text = format!("{v}");
        match text.parse::<i64>() {
            Ok(i) => self.visit_i64(i),
            Err(_) => Err(E::invalid_value(Unexpected::Float(v), &self)),
        }
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, as `true`/`false` or a string such as \"true\"")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<bool, E> {
        parse_go_bool(v).map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"1h30m\", or a whole number of seconds")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::invalid_value(Unexpected::Float(v), &self))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Duration, E> {
        parse_go_duration(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::Deserialize;

    use super::*;
    use crate::hcl::{ConfigError, ConfigFile};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default, deserialize_with = "option_number_or_string")]
        port: Option<u16>,
        #[serde(default, deserialize_with = "option_number_or_string")]
        big: Option<i64>,
        #[serde(default, deserialize_with = "option_go_duration")]
        ttl: Option<Duration>,
        #[serde(default, deserialize_with = "bool_or_string")]
        flag: bool,
    }

    #[derive(Debug, Deserialize)]
    struct Required {
        #[serde(deserialize_with = "u16_or_string")]
        port: u16,
        #[serde(deserialize_with = "go_duration")]
        ttl: Duration,
    }

    fn section(body: &str) -> Result<Section, ConfigError> {
        ConfigFile::parse(Path::new("t.conf"), &format!("s {{\n{body}\n}}\n"))?.section("s")
    }

    #[test]
    fn numbers_come_as_numbers_or_strings() {
        assert_eq!(section("port = 8081").unwrap().port, Some(8081));
        assert_eq!(section("port = \"8081\"").unwrap().port, Some(8081));
        assert_eq!(section("port = 8081.0").unwrap().port, Some(8081));
        assert_eq!(section("big = -5").unwrap().big, Some(-5));
        assert_eq!(section("big = \"-5\"").unwrap().big, Some(-5));
        assert_eq!(section("").unwrap().port, None);
    }

    #[test]
    fn bad_numbers_name_the_key_and_the_type() {
        let err = section("port = \"abc\"").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.conf:2: invalid value for `s.port`: invalid value: string \"abc\", \
             expected an integer of type u16, as a number or a string"
        );
        let err = section("port = 70000").unwrap_err().to_string();
        assert!(err.contains("integer `70000`"), "{err}");
        let err = section("port = 1.5").unwrap_err().to_string();
        assert!(err.contains("floating point `1.5`"), "{err}");
        assert!(section("port = true").is_err());
    }

    #[test]
    fn durations_come_as_go_strings_or_seconds() {
        assert_eq!(
            section("ttl = \"1h30m\"").unwrap().ttl,
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            section("ttl = 90").unwrap().ttl,
            Some(Duration::from_secs(90))
        );
        let err = section("ttl = \"-1h\"").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.conf:2: invalid value for `s.ttl`: negative duration \"-1h\" is not allowed"
        );
        assert!(section("ttl = -5").is_err());
        assert!(section("ttl = 1.5").is_err());
        assert!(section("ttl = \"1d\"")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }

    #[test]
    fn booleans_come_as_booleans_or_strings() {
        assert!(section("flag = true").unwrap().flag);
        assert!(section("flag = \"TRUE\"").unwrap().flag);
        assert!(!section("flag = \"0\"").unwrap().flag);
        assert!(section("flag = \"yes\"").is_err());
    }

    #[test]
    fn required_helpers_work_and_report_missing_keys() {
        let file = ConfigFile::parse(
            Path::new("t.conf"),
            "s {\n port = \"1\"\n ttl = \"5m\"\n}\n",
        )
        .unwrap();
        let required: Required = file.section("s").unwrap();
        assert_eq!((required.port, required.ttl), (1, Duration::from_secs(300)));
        let file = ConfigFile::parse(Path::new("t.conf"), "s {\n port = 1\n}\n").unwrap();
        let err = file.section::<Required>("s").unwrap_err().to_string();
        assert_eq!(err, "t.conf:1: missing required key `s.ttl`");
    }
}
