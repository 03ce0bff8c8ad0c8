//! Humane durations in config files: "2.5s", "250ms", "10m"; "none" where a
//! limit may be absent. Always strings, so the unit is always visible.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::{parse_duration, SimDuration};

/// A duration written as a string with a unit, e.g. "2.5s".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub SimDuration);

/// A duration or "none" (no limit), e.g. an acquire timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurOrNone(pub Option<SimDuration>);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = StrOnly::deserialize(d)?.0;
        parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

impl<'de> Deserialize<'de> for DurOrNone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = StrOnly::deserialize(d)?.0;
        if s.trim() == "none" {
            return Ok(DurOrNone(None));
        }
        parse_duration(&s)
            .map(|v| DurOrNone(Some(v)))
            .map_err(|mut e| {
                e.allow_none = true;
                serde::de::Error::custom(e.to_string())
            })
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl Serialize for DurOrNone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_str("none"),
        }
    }
}

/// Accepts only a string, with a message that says a duration needs a unit.
struct StrOnly(String);

impl<'de> Deserialize<'de> for StrOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration as a string with a unit, such as \"2.5s\" or \"250ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOnly, E> {
                Ok(StrOnly(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}
