//! Dot paths into JSON: `data.order.total`, `event.context.ip`, `body.items.0.sku`,
//! `headers.x-event-type`.
//!
//! A path is one or more non-empty segments separated by `.`. Against an object a segment is a
//! key (case-sensitive); against an array it must be a decimal index. Keys that contain a dot
//! cannot be addressed (the same limit as Knock's paths).

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PathError {}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathError> {
        if text.is_empty() {
            return Err(PathError("a path cannot be empty".into()));
        }
        for seg in text.split('.') {
            if seg.is_empty() {
                return Err(PathError(format!("`{text}` has an empty segment")));
            }
            if seg.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(PathError(format!("`{text}` contains white space")));
            }
        }
        Ok(Path { text: text.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.split('.')
    }

    /// The first segment (the namespace: `data`, `event`, `body`, `headers`, ...).
    pub fn root(&self) -> &str {
        self.text.split('.').next().unwrap_or("")
    }

    /// Resolve the segments after the root against `value`.
    pub fn resolve_rest<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        resolve(value, self.segments().skip(1))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Follow `segments` from `value`.
pub fn resolve<'a, 'b>(value: &'a Value, segments: impl IntoIterator<Item = &'b str>) -> Option<&'a Value> {
    let mut cur = value;
    for seg in segments {
        cur = match cur {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_resolves() {
        let v = json!({"a": {"b": [10, {"c": "x"}]}, "k-1": true});
        let p = Path::parse("root.a.b.1.c").unwrap();
        assert_eq!(p.root(), "root");
        assert_eq!(p.resolve_rest(&v), Some(&json!("x")));
        assert_eq!(resolve(&v, ["a", "b", "0"]), Some(&json!(10)));
        assert_eq!(resolve(&v, ["k-1"]), Some(&json!(true)));
        assert_eq!(resolve(&v, ["a", "zz"]), None);
        assert_eq!(resolve(&v, ["a", "b", "x"]), None);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in ["", ".", "a..b", "a.", ".a", "a b"] {
            assert!(Path::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
