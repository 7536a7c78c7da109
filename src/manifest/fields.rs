//! How the manifest's typed fields are written: as the text (or number) the manifest format has
//! always held, so stored manifests keep parsing and re-serialise byte for byte. Used through
//! `#[serde(with = ...)]`; the types themselves (in `pg` and `pipeline`) stay serde-free.
//!
//! Times are written in one fixed form each (`start_time` to the second, `stop_time` to the
//! millisecond, UTC with `Z`), as `backup` always wrote them; reading accepts any RFC 3339.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

use crate::pg::{PgVersion, Timeline};
use crate::repo::Digest;

/// A value written as its `Display` text and read back through `FromStr` (`Lsn`, `SystemId`).
pub mod text {
    use super::*;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// `PgVersion` as its major number (`15`).
pub mod pg_version {
    use super::*;

    pub fn serialize<S: Serializer>(v: &PgVersion, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(v.major())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PgVersion, D::Error> {
        PgVersion::new(u32::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `Timeline` as its decimal number (`2`); 0 is no timeline.
pub mod timeline {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Timeline, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(v.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timeline, D::Error> {
        match u32::deserialize(d)? {
            0 => Err(D::Error::custom("invalid timeline 0")),
            n => Ok(Timeline(n)),
        }
    }
}

pub(super) fn secs_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn millis_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| E::custom(format!("invalid time '{s}': {e}")))
}

/// A time to the second: `2026-11-21T22:00:00Z`.
pub mod time_secs {
    use super::*;

    pub fn serialize<S: Serializer>(v: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&secs_text(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        parse_time(&String::deserialize(d)?)
    }
}

/// A time to the millisecond: `2026-11-21T22:00:05.100Z`.
pub mod time_millis {
    use super::*;

    pub fn serialize<S: Serializer>(v: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&millis_text(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        parse_time(&String::deserialize(d)?)
    }
}

/// A sha256 as 64 lower-case hex digits.
pub mod digest {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        Digest::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A list of sha256s, each as [`digest`] writes it.
pub mod digests {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[Digest], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| Digest::parse(h).map_err(D::Error::custom))
            .collect()
    }
}

/// An optional sha256, as [`digest`] writes it (absent when `None`).
pub mod opt_digest {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Digest>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Digest>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| Digest::parse(&h).map_err(D::Error::custom))
            .transpose()
    }
}
