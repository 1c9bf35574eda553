//! Text shown in logs and messages.

use std::borrow::Cow;

/// The most characters of one piece of client text (a name, a datatype, a
/// reference…) that an error message repeats: [`clip`].
pub const CLIP_CHARS: usize = 200;

/// The most bytes of a whole error message as it leaves a server (a gRPC
/// status message, an HTTP `{"error": …}`): [`cap_message`]. grpcio clients
/// (tritonclient) drop an answer whose metadata passes 8–16 KiB, and would
/// report RESOURCE_EXHAUSTED instead of the real error.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// What [`clip`] and [`cap_message`] put where they cut.
const CUT: &str = "… (cut)";

/// `text` with every control character (newline, carriage return, escape…)
/// written as a Rust escape, so one guest record is one host log line and
/// cannot forge others or drive a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// At most [`CLIP_CHARS`] characters of client text, for an error message
/// to repeat, marked `… (cut)` when cut: an echoed 17,000-character name
/// must not make the status too large for a client's metadata limit.
pub fn clip(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(CLIP_CHARS) {
        Some((i, _)) => format!("{}{CUT}", &s[..i]).into(),
        None => s.into(),
    }
}

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] bytes on a character
/// boundary, marked `… (cut)` when cut. The last guard where a server
/// turns an error into a status or an HTTP body, whatever the message
/// echoes.
pub fn cap_message(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES - CUT.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = message;
    out.truncate(end);
    out.push_str(CUT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_character() {
        assert_eq!(clip("model"), "model");
        let exact = "é".repeat(CLIP_CHARS);
        assert_eq!(clip(&exact), exact.as_str());
        let long = "é".repeat(17_000);
        let clipped = clip(&long);
        assert!(clipped.ends_with("… (cut)"), "{clipped}");
        assert_eq!(
            clipped.chars().count(),
            CLIP_CHARS + "… (cut)".chars().count()
        );
    }

    #[test]
    fn cap_message_holds_the_byte_limit_on_a_character_boundary() {
        assert_eq!(cap_message("short".into()), "short");
        let exact = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(cap_message(exact.clone()), exact);
        for filler in ["x", "é", "€", "😀"] {
            let capped = cap_message(filler.repeat(17_000));
            assert!(capped.len() <= MAX_MESSAGE_BYTES, "{}", capped.len());
            assert!(capped.len() > MAX_MESSAGE_BYTES - 16, "{}", capped.len());
            assert!(capped.ends_with("… (cut)"));
        }
    }
}
