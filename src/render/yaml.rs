//! YAML-safe output of template values.
//!
//! Every `{{ value }}` in a template goes through [`write_value`]. A string
//! is written as a plain scalar only when it cannot be read back as anything
//! else (no indicator characters, no YAML 1.1 booleans or numbers); every
//! other string is JSON-quoted, which is a valid YAML double-quoted scalar.
//! So no input can add a key, end a list or start a document.

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};

/// YAML 1.1 and 1.2 words that a plain scalar would turn into a bool or null.
const RESERVED: &[&str] = &["true", "false", "yes", "no", "on", "off", "y", "n", "null"];

/// True when `s` reads back as the same string in plain (unquoted) style
/// under both YAML 1.1 and 1.2.
pub fn is_plain_safe(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    // Starting with a letter rules out numbers, dates, `-`, `*`, `&`, `!`,
    // `?`, `[`, `{`, `#`, `%`, `@`, quotes and spaces in one check.
    first.is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'/'))
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

/// Writes one scalar or collection as YAML-safe text.
pub fn write_value(out: &mut impl Write, value: &Value) -> std::fmt::Result {
    match value.kind() {
        ValueKind::String if value.is_safe() => out.write_str(value.as_str().unwrap_or_default()),
        ValueKind::String => out.write_str(&scalar(value.as_str().unwrap_or_default())),
        ValueKind::Number | ValueKind::Bool => write!(out, "{value}"),
        ValueKind::None | ValueKind::Undefined => out.write_str("null"),
        // Collections never appear bare in our templates, but if one does it
        // is written as JSON flow style, which is valid YAML.
        _ => out.write_str(&serde_json::to_string(value).map_err(|_| std::fmt::Error)?),
    }
}

/// `s` as a YAML scalar that reads back as the same string: plain when
/// [`is_plain_safe`], else JSON-quoted (`null`, `yes`, `0x1f`, `*.a.com`).
pub fn scalar(s: &str) -> std::borrow::Cow<'_, str> {
    if is_plain_safe(s) {
        s.into()
    } else {
        json_quote(s).into()
    }
}

/// A JSON string literal, which is also a YAML double-quoted scalar.
pub fn json_quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_only_when_unambiguous() {
        for ok in [
            "api.github.com",
            "istio-system",
            "sidecar.istio.io/inject",
            "V4_ONLY",
        ] {
            assert!(is_plain_safe(ok), "{ok}");
        }
        for quoted in [
            "*.wikipedia.org",
            "1password.com",
            "yes",
            "No",
            "null",
            "a: b",
            "a #b",
            "",
            "-a",
            "a\nb",
            "100m",
            "ends-",
        ] {
            assert!(!is_plain_safe(quoted), "{quoted}");
        }
    }

    proptest::proptest! {
        /// Whatever the string, it reads back as exactly that string, as
        /// the value of one key, in block context.
        #[test]
        fn any_string_round_trips(s in "\\PC*|[a-z0-9.:#&*!|>'\"%@`{}\\[\\], -]{0,12}") {
            let mut out = String::from("key: ");
            write_value(&mut out, &Value::from(s.as_str())).unwrap();
            out.push_str("\nnext: 1\n");
            let parsed: std::collections::BTreeMap<String, serde_json::Value> =
                serde_saphyr::from_str(&out).unwrap();
            proptest::prop_assert_eq!(parsed.len(), 2);
            proptest::prop_assert_eq!(parsed["key"].as_str(), Some(s.as_str()));
        }
    }

    #[test]
    fn hostile_strings_stay_one_scalar() {
        let mut out = String::new();
        write_value(&mut out, &Value::from("a.com\"\n- evil: 1")).unwrap();
        assert_eq!(out, r#""a.com\"\n- evil: 1""#);
    }
}
