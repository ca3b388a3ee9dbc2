//! Safe display of untrusted text (domains, SNI, YAML values, file names)
//! in terminals and logs.
//!
//! Anything outside printable ASCII is shown as `\u{..}`, so an input can
//! never move the cursor, fake a log line or hide characters. Long inputs are
//! cut, so one value cannot flood a terminal.

use std::fmt::Write;

/// Longest untrusted value shown, in characters.
pub const MAX_SHOWN: usize = 300;

/// `s` escaped, without quotes.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SHOWN) + 2);
    for (i, c) in s.chars().enumerate() {
        if i == MAX_SHOWN {
            let _ = write!(
                out,
                "...({} more bytes)",
                s.len() - s.char_indices().nth(i).map_or(0, |(b, _)| b)
            );
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            ' '..='~' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out
}

/// `s` escaped and wrapped in backticks, for messages.
pub fn quoted(s: &str) -> String {
    format!("`{}`", escaped(s))
}

/// Bytes that may not be UTF-8 (an SNI off the wire), escaped.
pub fn escaped_bytes(b: &[u8]) -> String {
    bytes_with(b, escaped)
}

/// A file path, escaped: a name that is not UTF-8 keeps its other bytes
/// as `\xNN` (on Unix), where `Path::display` would replace them.
pub fn path(p: &std::path::Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        escaped_bytes(p.as_os_str().as_bytes())
    }
    #[cfg(not(unix))]
    {
        escaped(&p.to_string_lossy())
    }
}

/// [`path`] wrapped in backticks, for messages.
pub fn quoted_path(p: &std::path::Path) -> String {
    format!("`{}`", path(p))
}

/// Bytes that may not be UTF-8 (an SNI off the wire), for a JSON string:
/// only what could act on a terminal or hide text is escaped (as
/// [`controls_escaped`] does), and bytes that are not UTF-8 as `\xNN`;
/// JSON itself quotes the rest.
pub fn json_bytes(b: &[u8]) -> String {
    bytes_with(b, controls_escaped)
}

/// `b`'s UTF-8 runs through `text`, the other bytes as `\xNN`; cut after
/// about [`MAX_SHOWN`] characters' worth.
fn bytes_with(b: &[u8], text: fn(&str) -> String) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        out.push_str(&text(chunk.valid()));
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
        if out.len() > MAX_SHOWN * 4 {
            break;
        }
    }
    out
}

/// `s` with only what can act on a terminal escaped: control characters
/// and the Unicode format characters that reorder or hide text (bidi
/// overrides and isolates, zero-width marks), as `\u{..}`. For a value that
/// another program reads back, such as a file name in a GitHub annotation,
/// where printable non-ASCII and `\` must stay as they are.
pub fn controls_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let hides = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || hides {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` as one word of a command we suggest: bare when it is plain, in
/// single quotes otherwise, so it pastes back as it is (non-ASCII text
/// included). A word with a character that could act on a terminal or hide
/// text is shown [`escaped`] instead, which is safe to print but not to
/// paste.
pub fn shell_word(s: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        s.to_string()
    } else if controls_escaped(s) == s {
        format!("'{}'", s.replace('\'', r"'\''"))
    } else {
        quoted(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_paste_back_as_they_are() {
        assert_eq!(shell_word("examples/egress.yaml"), "examples/egress.yaml");
        assert_eq!(shell_word("*.example.com"), "'*.example.com'");
        assert_eq!(shell_word("my file's.yaml"), r"'my file'\''s.yaml'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(
            shell_word("d\u{e9}ploiement.yaml"),
            "'d\u{e9}ploiement.yaml'"
        );
        assert_eq!(shell_word("a\u{202e}b"), "`a\\u{202e}b`");
        assert_eq!(shell_word("a\x1b[31m"), "`a\\u{1b}[31m`");
    }

    #[test]
    fn control_and_unicode_are_escaped() {
        assert_eq!(quoted("a.com\"\n- evil: 1"), "`a.com\"\\n- evil: 1`");
        assert_eq!(escaped("\u{1b}[2J\u{202e}x"), "\\u{1b}[2J\\u{202e}x");
        assert_eq!(escaped("back`tick\\"), "back\\`tick\\\\");
        assert_eq!(escaped("a\tb\r\nc"), "a\\tb\\r\\nc");
        assert_eq!(escaped_bytes(b"a\0b\xff"), "a\\u{0}b\\xff");
        assert_eq!(
            controls_escaped("d\u{e9}ploy\\x\u{1b}[31m\u{202e}.yaml"),
            "d\u{e9}ploy\\x\\u{1b}[31m\\u{202e}.yaml"
        );
    }

    #[test]
    fn paths_keep_bytes_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(b"a/\xffb\x1b.yaml"));
        assert_eq!(path(p), "a/\\xffb\\u{1b}.yaml");
    }

    #[test]
    fn long_values_are_cut() {
        let s = "a".repeat(1000);
        let e = escaped(&s);
        assert!(e.starts_with(&"a".repeat(MAX_SHOWN)));
        assert!(e.ends_with("...(700 more bytes)"), "{e}");
    }

    #[test]
    fn byte_values_are_shown_whole_up_to_the_limit_then_cut() {
        // About MAX_SHOWN characters with bytes that are not UTF-8 in
        // between: all of it is shown.
        let mut v = b"a".repeat(60);
        v.push(0xff);
        let v = [v.repeat(5), b"z".to_vec()].concat();
        let want = format!("{}z", format!("{}\\xff", "a".repeat(60)).repeat(5));
        assert_eq!(escaped_bytes(&v), want);
        assert_eq!(json_bytes(&v), want);
        // A huge value is cut, however its bytes split into UTF-8 runs.
        let huge = b"abc\xff".repeat(10_000);
        assert!(escaped_bytes(&huge).len() < 2 * MAX_SHOWN * 4);
        assert!(json_bytes(&huge).len() < 2 * MAX_SHOWN * 4);
    }
}
