//! The [`Base64`] node, and base64 decoding with messages that say where
//! a text is not base64.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ghostflow::prelude::*;

/// A base64 alphabet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alphabet {
    /// `A-Z a-z 0-9 + /` (RFC 4648 section 4; MIME, most APIs).
    #[default]
    Standard,
    /// `A-Z a-z 0-9 - _` (RFC 4648 section 5; URLs, file names, JWT).
    UrlSafe,
}

impl Alphabet {
    fn name(self) -> &'static str {
        match self {
            Alphabet::Standard => "standard",
            Alphabet::UrlSafe => "URL-safe",
        }
    }

    /// The engine that decodes this alphabet, padded or not.
    fn decoder(self) -> GeneralPurpose {
        let config = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(false);
        match self {
            Alphabet::Standard => GeneralPurpose::new(&base64::alphabet::STANDARD, config),
            Alphabet::UrlSafe => GeneralPurpose::new(&base64::alphabet::URL_SAFE, config),
        }
    }
}

/// Decodes base64 in `alphabet`, padded or not, ignoring ASCII whitespace
/// (line breaks of MIME bodies). The error says where the text breaks.
pub(crate) fn decode_base64(text: &str, alphabet: Alphabet) -> Result<Vec<u8>, String> {
    let has_space = text.bytes().any(|b| b.is_ascii_whitespace());
    let compact: std::borrow::Cow<'_, str> = if has_space {
        text.chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    alphabet.decoder().decode(compact.as_bytes()).map_err(|e| {
        let hint = |byte: u8| match (alphabet, byte) {
            (Alphabet::Standard, b'-' | b'_') => {
                "; `-` and `_` belong to the URL-safe alphabet (`alphabet: url_safe`)"
            }
            (Alphabet::UrlSafe, b'+' | b'/') => {
                "; `+` and `/` belong to the standard alphabet (`alphabet: standard`)"
            }
            _ => "",
        };
        let spaces = if has_space {
            " (not counting whitespace)"
        } else {
            ""
        };
        match e {
            base64::DecodeError::InvalidByte(at, b'=') => format!(
                "not valid {} base64: `=` at offset {at}{spaces} is padding in the wrong place",
                alphabet.name()
            ),
            base64::DecodeError::InvalidByte(at, byte) => {
                let (shown, at) = show_byte(compact.as_bytes(), at, byte);
                format!(
                    "not valid {} base64: {shown} at offset {at}{spaces} is not in the alphabet{}",
                    alphabet.name(),
                    hint(byte)
                )
            }
            base64::DecodeError::InvalidLength(_) => format!(
                "not valid {} base64: {} characters cannot be base64 (a last group of one character)",
                alphabet.name(),
                compact.len()
            ),
            base64::DecodeError::InvalidLastSymbol(at, byte) => format!(
                "not valid {} base64: the last character `{}` at offset {at}{spaces} has bits that encode nothing (the text was cut or altered)",
                alphabet.name(),
                char::from(byte)
            ),
            base64::DecodeError::InvalidPadding => format!(
                "not valid {} base64: wrong padding (`=` must only complete the last group)",
                alphabet.name()
            ),
        }
    })
}

/// The character that byte offset `at` of `text` is part of, for
/// messages, and where it starts.
fn show_byte(text: &[u8], at: usize, byte: u8) -> (String, usize) {
    if byte.is_ascii_graphic() {
        return (format!("`{}`", char::from(byte)), at);
    }
    // The text came from a `str`: walk back to the start of the character.
    let start = (0..=at.min(text.len().saturating_sub(1)))
        .rev()
        .find(|&i| (text[i] & 0xc0) != 0x80)
        .unwrap_or(at);
    let shown = std::str::from_utf8(&text[start..])
        .ok()
        .and_then(|s| s.chars().next());
    match shown {
        Some(c) if !c.is_control() && !c.is_ascii() => (format!("`{c}`"), start),
        Some(c) => (format!("the character U+{:04X}", u32::from(c)), start),
        None => (format!("the byte 0x{byte:02x}"), at),
    }
}

/// What a [`Base64`] node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Base64Mode {
    /// Text (its UTF-8 bytes) to base64.
    #[default]
    Encode,
    /// Base64 to text; the bytes must be UTF-8.
    Decode,
}

/// A text.
#[derive(Ports, Debug)]
pub struct Base64Text {
    /// The text: to encode, or base64 to decode.
    pub text: String,
}

/// The result.
#[derive(Ports, Debug)]
pub struct Base64Output {
    /// The base64 (encoding) or the decoded text (decoding).
    pub text: String,
}

/// Encodes a text as base64, or decodes base64 into a text.
///
/// Both the standard alphabet (`+`, `/`) and the URL-safe one (`-`, `_`)
/// are supported. Encoding pads with `=` unless `pad: false`; decoding
/// accepts padded and unpadded input and ignores whitespace such as line
/// breaks. Decoded bytes must be UTF-8 text: the error says at which byte
/// they are not. (For bytes that are not text, keep them in base64: the
/// `hash`, `hmac` and `file_write` nodes read base64 directly.)
///
/// ```yaml
/// - id: decode_token_payload
///   type: base64
///   config:
///     mode: decode
///     alphabet: url_safe
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Base64Text, output = Base64Output, category = "text")]
#[serde(deny_unknown_fields)]
pub struct Base64 {
    /// `encode` (the default) or `decode`.
    #[serde(default)]
    pub mode: Base64Mode,
    /// `standard` (the default) or `url_safe`.
    #[serde(default)]
    pub alphabet: Alphabet,
    /// When encoding, whether to end with `=` padding (default true).
    /// Decoding accepts either.
    #[serde(default = "crate::yes")]
    pub pad: bool,
}

impl Default for Base64 {
    /// Encoding, standard alphabet, padded: what an empty config means.
    fn default() -> Self {
        Base64 {
            mode: Base64Mode::Encode,
            alphabet: Alphabet::Standard,
            pad: true,
        }
    }
}

impl Run for Base64 {
    async fn run(&self, input: Base64Text, _ctx: &Context) -> Result<Base64Output, NodeError> {
        let text = match self.mode {
            Base64Mode::Encode => {
                let engine = match (self.alphabet, self.pad) {
                    (Alphabet::Standard, true) => general_purpose::STANDARD,
                    (Alphabet::Standard, false) => general_purpose::STANDARD_NO_PAD,
                    (Alphabet::UrlSafe, true) => general_purpose::URL_SAFE,
                    (Alphabet::UrlSafe, false) => general_purpose::URL_SAFE_NO_PAD,
                };
                engine.encode(input.text.as_bytes())
            }
            Base64Mode::Decode => {
                let bytes = decode_base64(&input.text, self.alphabet)
                    .map_err(|reason| NodeError::permanent(format!("input `text`: {reason}")))?;
                String::from_utf8(bytes).map_err(|e| {
                    let at = e.utf8_error().valid_up_to();
                    let byte = e.as_bytes()[at];
                    NodeError::permanent(format!(
                        "input `text`: the decoded bytes are not UTF-8 text: the byte 0x{byte:02x} at offset {at} (of {}) starts no valid character",
                        e.as_bytes().len()
                    ))
                })?
            }
        };
        Ok(Base64Output { text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_what_an_empty_config_means() {
        let empty: Base64 = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(
            serde_json::to_value(&empty).unwrap(),
            serde_json::to_value(Base64::default()).unwrap()
        );
    }

    #[test]
    fn decoding_accepts_padding_either_way_and_says_where_it_breaks() {
        for text in ["aGk=", "aGk", "aG\r\nk="] {
            assert_eq!(decode_base64(text, Alphabet::Standard).unwrap(), b"hi");
        }
        assert_eq!(
            decode_base64("-_8", Alphabet::UrlSafe).unwrap(),
            [0xfb, 0xff]
        );
        assert_eq!(
            decode_base64("-_8", Alphabet::Standard).unwrap_err(),
            "not valid standard base64: `-` at offset 0 is not in the alphabet; `-` and `_` belong to the URL-safe alphabet (`alphabet: url_safe`)"
        );
        assert_eq!(
            decode_base64("+/8=", Alphabet::UrlSafe).unwrap_err(),
            "not valid URL-safe base64: `+` at offset 0 is not in the alphabet; `+` and `/` belong to the standard alphabet (`alphabet: standard`)"
        );
        assert_eq!(
            decode_base64("aGké", Alphabet::Standard).unwrap_err(),
            "not valid standard base64: `é` at offset 3 is not in the alphabet"
        );
        assert_eq!(
            decode_base64("aGk=aGk=", Alphabet::Standard).unwrap_err(),
            "not valid standard base64: `=` at offset 3 is padding in the wrong place"
        );
        assert!(
            decode_base64("aGkxa", Alphabet::Standard)
                .unwrap_err()
                .contains("5 characters cannot be base64")
        );
        assert!(
            decode_base64("aGl=", Alphabet::Standard)
                .unwrap_err()
                .contains("has bits that encode nothing")
        );
    }
}
