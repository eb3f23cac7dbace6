//! Meta's timestamps: unix seconds, sent as a string almost everywhere and as an integer in
//! `user_preferences`. [`UnixTime`] reads both and writes the string form.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds since the unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(i64);

impl UnixTime {
    pub fn from_seconds(seconds: i64) -> Self {
        Self(seconds)
    }

    pub fn seconds(self) -> i64 {
        self.0
    }

    /// The instant, or `None` for a value chrono cannot represent.
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.0, 0)
    }
}

impl From<DateTime<Utc>> for UnixTime {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(instant.timestamp())
    }
}

impl Serialize for UnixTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnixTimeVisitor)
    }
}

struct UnixTimeVisitor;

impl Visitor<'_> for UnixTimeVisitor {
    type Value = UnixTime;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("unix seconds as an integer or a string of digits")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<UnixTime, E> {
        Ok(UnixTime(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<UnixTime, E> {
        i64::try_from(v).map(UnixTime).map_err(|_| E::custom("timestamp out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UnixTime, E> {
        v.trim().parse().map(UnixTime).map_err(|_| E::custom(format!("timestamp {v:?} is not unix seconds")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_integers_alike() {
        let from_string: UnixTime = serde_json::from_str(r#""1751142888""#).unwrap();
        let from_int: UnixTime = serde_json::from_str("1751142888").unwrap();
        assert_eq!(from_string, from_int);
        assert_eq!(from_int.seconds(), 1_751_142_888);
    }

    #[test]
    fn refuses_text_that_is_not_a_number() {
        assert!(serde_json::from_str::<UnixTime>(r#""yesterday""#).is_err());
        assert!(serde_json::from_str::<UnixTime>("1.5").is_err());
    }

    #[test]
    fn writes_the_string_form() {
        assert_eq!(serde_json::to_string(&UnixTime(42)).unwrap(), r#""42""#);
    }
}
