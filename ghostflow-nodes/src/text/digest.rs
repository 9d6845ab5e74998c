//! Digests: [`Hash`](struct@Hash) (MD5, SHA-1, SHA-256, SHA-512) and [`Hmac`] (signing
//! and verifying with a key from the engine's secrets).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::prelude::*;
use hmac::Mac;
use sha2::Digest;

/// How a node reads the bytes of its `data` input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// The text's UTF-8 bytes.
    #[default]
    Text,
    /// Bytes written in standard base64 (padding optional), such as the
    /// `content` of `file_read` with `format: bytes`.
    Base64,
}

impl DataFormat {
    /// The bytes of `data`.
    fn bytes(self, data: &str) -> Result<std::borrow::Cow<'_, [u8]>, NodeError> {
        match self {
            DataFormat::Text => Ok(data.as_bytes().into()),
            DataFormat::Base64 => {
                super::encoding::decode_base64(data, super::encoding::Alphabet::Standard)
                    .map(Into::into)
                    .map_err(|reason| NodeError::permanent(format!("input `data`: {reason}")))
            }
        }
    }
}

/// How a digest or signature is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigestEncoding {
    /// Lowercase hexadecimal (upper case is accepted when verifying).
    #[default]
    Hex,
    /// Standard base64, padded (padding optional when verifying).
    Base64,
}

impl DigestEncoding {
    fn encode(self, bytes: &[u8]) -> String {
        match self {
            DigestEncoding::Hex => hex(bytes),
            DigestEncoding::Base64 => BASE64.encode(bytes),
        }
    }

    /// The bytes of a signature written this way, or why it is not.
    fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        match self {
            DigestEncoding::Hex => unhex(text.trim()),
            DigestEncoding::Base64 => {
                super::encoding::decode_base64(text, super::encoding::Alphabet::Standard)
            }
        }
    }
}

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes of a hexadecimal text (either case).
fn unhex(text: &str) -> Result<Vec<u8>, String> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(format!(
            "not hexadecimal: an odd number of digits ({})",
            bytes.len()
        ));
    }
    bytes
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(format!(
                "not hexadecimal: the character at offset {} is not a hex digit",
                i * 2 + usize::from(digit(pair[0]).is_some())
            )),
        })
        .collect()
}

/// A digest algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// MD5 (128 bits). Broken for security: for checksums and legacy keys
    /// only.
    Md5,
    /// SHA-1 (160 bits). Broken for collision resistance: for legacy uses.
    Sha1,
    /// SHA-256 (256 bits).
    #[default]
    Sha256,
    /// SHA-512 (512 bits).
    Sha512,
}

impl HashAlgorithm {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Md5 => md5::Md5::digest(data).to_vec(),
            HashAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// The data to digest or sign.
#[derive(Ports, Debug)]
pub struct HashInput {
    /// The data: text, or base64 bytes with `input: base64`.
    pub data: String,
}

/// A digest.
#[derive(Ports, Debug)]
pub struct HashOutput {
    /// The digest, in hex or base64 as `output` says.
    pub digest: String,
}

/// Computes the MD5, SHA-1, SHA-256 or SHA-512 digest of a text or of
/// bytes given in base64.
///
/// The output is lowercase hex (`output: hex`, the default) or base64. For
/// a keyed signature (webhooks, API requests), use `hmac` instead.
///
/// ```yaml
/// - id: checksum
///   type: hash
///   config:
///     algorithm: sha256
///     input: base64
///     output: hex
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = HashInput, output = HashOutput, category = "text")]
#[serde(deny_unknown_fields)]
pub struct Hash {
    /// The algorithm: `md5`, `sha1`, `sha256` (the default) or `sha512`.
    #[serde(default)]
    pub algorithm: HashAlgorithm,
    /// How the `data` input is read: `text` (its UTF-8 bytes, the default)
    /// or `base64` (bytes).
    #[serde(default)]
    pub input: DataFormat,
    /// How the digest is written: `hex` (the default) or `base64`.
    #[serde(default)]
    pub output: DigestEncoding,
}

impl Run for Hash {
    async fn run(&self, input: HashInput, _ctx: &Context) -> Result<HashOutput, NodeError> {
        let data = self.input.bytes(&input.data)?;
        Ok(HashOutput {
            digest: self.output.encode(&self.algorithm.digest(&data)),
        })
    }
}

// ------------------------------------------------------------------ hmac

/// The hash function of an HMAC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (older webhooks).
    Sha1,
    /// HMAC-SHA256 (the default; most webhooks and APIs).
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// What an [`Hmac`] node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacMode {
    /// Output the signature of the data.
    #[default]
    Sign,
    /// Compare the `signature` input with the data's signature, in
    /// constant time.
    Verify,
}

/// What a verifying [`Hmac`] node does when the signature does not match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMismatch {
    /// Fail the node (permanently): the flow stops unless its `on_error`
    /// policy says otherwise.
    #[default]
    Fail,
    /// Output `valid: false` and go on.
    Output,
}

/// How a secret's text becomes the key's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// The secret's UTF-8 bytes (the default).
    #[default]
    Text,
    /// The secret is base64 (standard alphabet, padding optional).
    Base64,
}

/// The data to sign or verify, and the signature to check.
#[derive(Ports, Debug)]
pub struct HmacInput {
    /// The data: text, or base64 bytes with `input: base64`. For a
    /// webhook, the raw request body, exactly as received.
    pub data: String,
    /// The signature to check (required with `mode: verify`), such as the
    /// value of a webhook's signature header; `prefix` is removed first.
    pub signature: Option<String>,
}

/// The outcome of an [`Hmac`] node.
#[derive(Ports, Debug)]
pub struct HmacOutput {
    /// The signature, `prefix` first (with `mode: sign`; empty when
    /// verifying, so the expected value is never shown).
    pub signature: Option<String>,
    /// Whether the signature matches (with `mode: verify`; empty when
    /// signing).
    pub valid: Option<bool>,
}

/// Signs data with an HMAC keyed by a secret, or verifies a signature in
/// constant time (for webhook signatures).
///
/// The key is read from the engine's secrets, named by `key_secret`; it
/// never appears in the config, an output, an event or an error. With
/// `mode: sign` the node outputs the signature (hex or base64, after
/// `prefix`). With `mode: verify` it compares the `signature` input with
/// the data's own signature in constant time and outputs `valid: true`, or
/// on a mismatch fails (`on_mismatch: fail`, the default) or outputs
/// `valid: false` (`on_mismatch: output`). A signature that is missing,
/// lacks the prefix, or is not hex/base64 is a mismatch.
///
/// ```yaml
/// - id: check_signature
///   type: hmac
///   config:
///     mode: verify
///     algorithm: sha256
///     key_secret: GITHUB_WEBHOOK_SECRET
///     prefix: "sha256="
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = HmacInput, output = HmacOutput, category = "text")]
#[serde(deny_unknown_fields)]
pub struct Hmac {
    /// `sign` (the default) or `verify`.
    #[serde(default)]
    pub mode: HmacMode,
    /// The hash function: `sha1`, `sha256` (the default) or `sha512`.
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// The name of the secret holding the key.
    pub key_secret: String,
    /// How the secret's text becomes the key: `text` (the default) or
    /// `base64`.
    #[serde(default)]
    pub key_format: KeyFormat,
    /// How the `data` input is read: `text` (the default) or `base64`.
    #[serde(default)]
    pub input: DataFormat,
    /// How signatures are written: `hex` (the default) or `base64`.
    #[serde(default)]
    pub output: DigestEncoding,
    /// Text before the signature, such as `sha256=`: added when signing,
    /// required and removed when verifying.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// With `mode: verify`, what a mismatch does: `fail` (the default) or
    /// `output` (`valid: false`).
    #[serde(default)]
    pub on_mismatch: OnMismatch,
}

impl Hmac {
    /// A signing node with HMAC-SHA256, keyed by the secret `key_secret`.
    pub fn sign(key_secret: impl Into<String>) -> Self {
        Hmac {
            mode: HmacMode::Sign,
            algorithm: HmacAlgorithm::Sha256,
            key_secret: key_secret.into(),
            key_format: KeyFormat::Text,
            input: DataFormat::Text,
            output: DigestEncoding::Hex,
            prefix: String::new(),
            on_mismatch: OnMismatch::Fail,
        }
    }

    /// A verifying node with HMAC-SHA256, keyed by the secret `key_secret`.
    pub fn verify(key_secret: impl Into<String>) -> Self {
        Hmac {
            mode: HmacMode::Verify,
            ..Hmac::sign(key_secret)
        }
    }

    /// The key's bytes, from the secret.
    fn key(&self, ctx: &Context) -> Result<Vec<u8>, NodeError> {
        let secret = ctx.secret(&self.key_secret)?;
        match self.key_format {
            KeyFormat::Text => Ok(secret.expose().as_bytes().to_vec()),
            // The message says what is wrong with the text, never the text.
            KeyFormat::Base64 => {
                super::encoding::decode_base64(secret.expose(), super::encoding::Alphabet::Standard)
                    .map_err(|_| {
                        NodeError::permanent(format!(
                            "config.key_format: secret `{}` is not valid base64",
                            self.key_secret
                        ))
                    })
            }
        }
    }
}

/// A keyed MAC of any of the supported hash functions.
enum AnyMac {
    Sha1(hmac::Hmac<sha1::Sha1>),
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

impl AnyMac {
    fn new(algorithm: HmacAlgorithm, key: &[u8], data: &[u8]) -> Self {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail.
        fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> M {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            mac.update(data);
            mac
        }
        match algorithm {
            HmacAlgorithm::Sha1 => AnyMac::Sha1(keyed(key, data)),
            HmacAlgorithm::Sha256 => AnyMac::Sha256(keyed(key, data)),
            HmacAlgorithm::Sha512 => AnyMac::Sha512(keyed(key, data)),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            AnyMac::Sha1(m) => m.finalize().into_bytes().to_vec(),
            AnyMac::Sha256(m) => m.finalize().into_bytes().to_vec(),
            AnyMac::Sha512(m) => m.finalize().into_bytes().to_vec(),
        }
    }

    /// Whether `expected` is the MAC, compared in constant time.
    fn verify(self, expected: &[u8]) -> bool {
        match self {
            AnyMac::Sha1(m) => m.verify_slice(expected).is_ok(),
            AnyMac::Sha256(m) => m.verify_slice(expected).is_ok(),
            AnyMac::Sha512(m) => m.verify_slice(expected).is_ok(),
        }
    }
}

impl Run for Hmac {
    async fn run(&self, input: HmacInput, ctx: &Context) -> Result<HmacOutput, NodeError> {
        let key = self.key(ctx)?;
        let data = self.input.bytes(&input.data)?;
        let mac = AnyMac::new(self.algorithm, &key, &data);
        match self.mode {
            HmacMode::Sign => Ok(HmacOutput {
                signature: Some(format!(
                    "{}{}",
                    self.prefix,
                    self.output.encode(&mac.finalize())
                )),
                valid: None,
            }),
            HmacMode::Verify => {
                let Some(given) = input.signature else {
                    return Err(NodeError::permanent(
                        "input `signature`: missing; `mode: verify` needs the signature to check",
                    ));
                };
                let checked = given
                    .trim()
                    .strip_prefix(self.prefix.as_str())
                    .ok_or_else(|| format!("it does not start with `{}`", self.prefix))
                    .and_then(|rest| self.output.decode(rest))
                    .map(|expected| mac.verify(&expected));
                match (checked, self.on_mismatch) {
                    (Ok(true), _) => Ok(HmacOutput {
                        signature: None,
                        valid: Some(true),
                    }),
                    (_, OnMismatch::Output) => Ok(HmacOutput {
                        signature: None,
                        valid: Some(false),
                    }),
                    (Ok(false), OnMismatch::Fail) => Err(NodeError::permanent(
                        "input `signature`: the signature does not match the data",
                    )),
                    (Err(reason), OnMismatch::Fail) => Err(NodeError::permanent(format!(
                        "input `signature`: not a valid signature: {reason}"
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_says_where_it_breaks() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
        assert_eq!(unhex("0001ABff").unwrap(), vec![0, 1, 0xab, 0xff]);
        assert_eq!(
            unhex("abc").unwrap_err(),
            "not hexadecimal: an odd number of digits (3)"
        );
        assert_eq!(
            unhex("00zz").unwrap_err(),
            "not hexadecimal: the character at offset 2 is not a hex digit"
        );
        assert_eq!(
            unhex("0z").unwrap_err(),
            "not hexadecimal: the character at offset 1 is not a hex digit"
        );
    }

    #[test]
    fn digests_match_known_values() {
        // Test vectors of the standards (RFC 1321, FIPS 180).
        let abc = b"abc";
        assert_eq!(
            hex(&HashAlgorithm::Md5.digest(abc)),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hex(&HashAlgorithm::Sha1.digest(abc)),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&HashAlgorithm::Sha256.digest(abc)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hex(&HashAlgorithm::Sha512.digest(abc)).starts_with("ddaf35a193617aba"));
        // RFC 4231, test case 2.
        let mac = AnyMac::new(
            HmacAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        assert_eq!(
            hex(&mac.finalize()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
