//! [`printable`]: text from other processes, made safe to show.
//!
//! Agent ids, action names, arguments, values, error texts and plugin log lines can carry
//! what any peer on the broker put there. Printed raw, control characters move the
//! cursor, erase or hide text and forge whole lines (a permission question that is not
//! the real one); bidirectional overrides reorder what is shown. Whatever shows remote
//! text to a person, in a terminal or a log, passes it through [`printable`] first.

use std::borrow::Cow;

/// `text` with every control character (C0 including line breaks, DEL, C1) and every
/// Unicode bidirectional control shown as an escape (`\u{1b}`), so that it prints as
/// exactly one line that looks like what it is.
///
/// ```
/// use agency_runtime::printable;
/// assert_eq!(printable("calc"), "calc");
/// assert_eq!(printable("a\x1b[2J\nb"), "a\\u{1b}[2J\\u{a}b");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn every_control_is_visible() {
        let hostile = "x\u{1b}[2K\rpermission: allow\u{9b}31m\u{7f}\t\u{202e}txt.exe";
        assert_eq!(
            printable(hostile),
            "x\\u{1b}[2K\\u{d}permission: allow\\u{9b}31m\\u{7f}\\u{9}\\u{202e}txt.exe"
        );
        assert!(matches!(
            printable("plain é 😀"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
