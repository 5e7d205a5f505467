//! Bounded pieces of the JSON request header: `parameters` objects hold at
//! most [`MAX_PARAMETERS`] scalar values (the protocol allows only strings,
//! numbers and booleans there), so no request can hide a large tree in them.

use crate::limits::MAX_PARAMETERS;
use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A `parameters` object: at most [`MAX_PARAMETERS`] entries, each a string,
/// number or boolean.
#[derive(Debug, Default)]
pub struct Parameters(pub Map<String, Value>);

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ParametersVisitor)
    }
}

struct ParametersVisitor;

impl<'de> Visitor<'de> for ParametersVisitor {
    type Value = Parameters;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an object of at most {MAX_PARAMETERS} parameters (strings, numbers or booleans)"
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parameters, A::Error> {
        let mut out = Map::new();
        while let Some((key, Scalar(value))) = map.next_entry::<String, Scalar>()? {
            if out.len() == MAX_PARAMETERS {
                return Err(A::Error::custom(format!(
                    "more than {MAX_PARAMETERS} parameters, over the limit"
                )));
            }
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "parameter '{key}' is given twice; give each parameter once"
                )));
            }
            out.insert(key, value);
        }
        Ok(Parameters(out))
    }
}

/// A JSON document that should be an object whose keys are each given once
/// (serde_json's own map keeps the last of a key given twice, silently),
/// read in one pass: its entries in order, or what kind of value it is
/// instead.
#[derive(Debug)]
pub enum UniqueObject {
    /// An object's entries, in order.
    Entries(Vec<(String, Value)>),
    /// Not an object: "a list", "a string", ... for the refusal.
    Not(&'static str),
}

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
        let mut out: Vec<(String, Value)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            if out.iter().any(|(k, _)| *k == key) {
                return Err(A::Error::custom(format!(
                    "key '{key}' is given twice; give each input and parameter once"
                )));
            }
            out.push((key, value));
        }
        Ok(UniqueObject::Entries(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueObject, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(UniqueObject::Not("a list"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<UniqueObject, E> {
        Ok(UniqueObject::Not("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<UniqueObject, E> {
        Ok(UniqueObject::Not("a number"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<UniqueObject, E> {
        Ok(UniqueObject::Not("a number"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<UniqueObject, E> {
        Ok(UniqueObject::Not("a number"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<UniqueObject, E> {
        Ok(UniqueObject::Not("a string"))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<UniqueObject, E> {
        Ok(UniqueObject::Not("null"))
    }
}

/// Any JSON value, each object's keys given once at every depth.
/// serde_json keeps the last of a key given twice, silently, where Triton
/// keeps the first: a proxy checking one and anemone using the other would
/// disagree on what a body says (`{"log_info": false, "log_info": true}`).
/// Control bodies (load, unload, logging, trace, settings) are read
/// through it: [`strict_from_slice`].
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some((key, StrictValue(value))) = map.next_entry::<String, StrictValue>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "key '{key}' is given twice; give each key once"
                )));
            }
            out.insert(key, value);
        }
        Ok(StrictValue(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element::<StrictValue>()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_string())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
}

/// `T` from JSON `body`, refusing a key given twice at any depth
/// ([`StrictValue`]).
pub fn strict_from_slice<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, serde_json::Error> {
    let StrictValue(value) = serde_json::from_slice(body)?;
    serde_json::from_value(value)
}

/// A parameter's value: a string, number or boolean.
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a parameter value (a string, number or boolean)")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(Value::from(v)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(Value::from(v)))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
        serde_json::Number::from_f64(v)
            .map(|n| Scalar(Value::Number(n)))
            .ok_or_else(|| E::custom("a parameter must be a finite number"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(Value::String(v.to_string())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(Value::String(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        let e = serde_json::from_str::<Parameters>(r#"{"timeout": 1, "timeout": 60000000}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameter 'timeout' is given twice"), "{e}");
        for body in [
            r#"{"log_info": false, "log_info": true}"#,
            r#"{"parameters": {"config": "a", "config": "b"}}"#,
            r#"{"parameters": {"k": {"string_value": "a", "string_value": "b"}}}"#,
            r#"[{"a": 1, "a": 2}]"#,
        ] {
            let e = strict_from_slice::<Value>(body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("is given twice"), "{body}: {e}");
        }
        let v: Value =
            strict_from_slice(br#"{"a": [1, {"b": null}], "c": 1.5, "d": "x"}"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, {"b": null}], "c": 1.5, "d": "x"})
        );
    }

    #[test]
    fn parameters_are_scalars_and_few() {
        let p: Parameters =
            serde_json::from_str(r#"{"a": 1, "b": "x", "c": true, "d": -2.5}"#).unwrap();
        assert_eq!(p.0.len(), 4);
        let e = serde_json::from_str::<Parameters>(r#"{"a": [1, 2]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a parameter value"), "{e}");
        let many: Map<String, Value> = (0..=MAX_PARAMETERS)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        let e = serde_json::from_str::<Parameters>(&Value::Object(many).to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 128 parameters"), "{e}");
    }
}

/// `json` with the bare tokens `NaN`, `Infinity` and `-Infinity` (outside
/// strings) quoted, so that a JSON parser reads them as the strings the
/// tensor decoder takes for non-finite floats; `None` when it has none.
/// Clients that write non-finite floats as JavaScript does send them so
/// (tritonclient's `set_data_from_numpy(..., binary_data=False)`), and
/// Triton reads them (rapidjson's `kParseNanAndInfFlag`). Only tried on a
/// body that does not parse: the common path reads the body once.
pub fn quote_non_finite(json: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(json.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some(token) = TOKENS.iter().find(|t| json[i..].starts_with(t)) {
            let end = i + token.len();
            let bounded = json
                .get(end)
                .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_');
            if bounded {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
                i = end;
                changed = true;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod non_finite_tests {
    use super::quote_non_finite;

    #[test]
    fn bare_non_finite_floats_are_quoted_outside_strings_only() {
        let body = br#"{"data":[NaN,Infinity,-Infinity,1.5],"id":"NaN Infinity \"NaN\""}"#;
        let quoted = quote_non_finite(body).unwrap();
        assert_eq!(
            std::str::from_utf8(&quoted).unwrap(),
            r#"{"data":["NaN","Infinity","-Infinity",1.5],"id":"NaN Infinity \"NaN\""}"#
        );
        assert!(serde_json::from_slice::<serde_json::Value>(&quoted).is_ok());
        assert_eq!(quote_non_finite(br#"{"data":[1,2],"id":"NaN"}"#), None);
        // Not a token of its own: left for the parser to refuse.
        assert_eq!(quote_non_finite(b"[NaNa]"), None);
    }
}
