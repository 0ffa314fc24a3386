//! Example step: signs a payload with HMAC-SHA256, for example to sign a
//! webhook body before a later step sends it.
//!
//! # Configuration
//!
//! - `secret` (required): the HMAC key. Its UTF-8 bytes are the key, as
//!   webhook schemes such as GitHub's use a shared secret string. Point it at
//!   a tenant secret in the workflow definition so that the host redacts it.
//!
//! # Input
//!
//! - `payload`: what to sign. A JSON string is signed as the exact UTF-8
//!   bytes of its value (without the quotes). Any other JSON value is signed
//!   as its canonical compact serialization: no whitespace, object keys
//!   sorted by their UTF-8 bytes at every level, strings escaped as
//!   `serde_json` escapes them (only `"`, `\` and control characters), and
//!   numbers with their digits as written in the input (`1.50` stays `1.50`,
//!   `-0` stays `-0`; only an exponent is spelled out, `1E3` as `1e+3`). This
//!   is not RFC 8785 (JCS), which rewrites numbers. When the receiver
//!   checks the signature against a request body, pass that body as a string
//!   so that both sides sign the same bytes.
//! - `encoding` (optional): `"hex"` (lowercase, the default) or `"base64"`
//!   (standard alphabet, padded).
//!
//! # Output
//!
//! `{"signature": "<encoded MAC>", "algorithm": "hmac-sha256"}`
//!
//! # Example
//!
//! With the config value `secret` set to `Jefe` (RFC 4231, test case 2):
//!
//! ```json
//! {"payload": "what do ya want for nothing?"}
//! ```
//!
//! gives
//!
//! ```json
//! {"signature": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "algorithm": "hmac-sha256"}
//! ```
//!
//! # Errors
//!
//! All are non-retryable: they come from the input or the configuration.
//!
//! - `missing_config`: the step has no config value `secret`.
//! - `invalid_config`: the config value `secret` is empty.
//! - `invalid_input`: the input does not have the shape above.

use std::borrow::Cow;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, Serializer};
use sha2::Sha256;
use stephost_sdk::{StepError, Value, config, export_step, log, serde_json};

/// The config key that holds the HMAC key.
pub const SECRET_KEY: &str = "secret";

/// The `algorithm` reported in every output.
pub const ALGORITHM: &str = "hmac-sha256";

/// The step's input; see the [crate documentation](crate).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// What to sign: a string's bytes, or any other value's canonical JSON.
    pub payload: Value,
    /// How to encode the signature.
    #[serde(default)]
    pub encoding: Encoding,
}

/// How the signature is written in the output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lowercase hexadecimal.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The step's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Output {
    /// The encoded MAC.
    pub signature: String,
    /// Always [`ALGORITHM`], so that receivers can check what they got.
    pub algorithm: &'static str,
}

/// Signs `input.payload` with `secret`.
///
/// This is the whole step except for reading the secret, which only works
/// inside the sandbox; keeping it apart lets the signing be tested natively.
pub fn sign(input: Input, secret: &str) -> Result<Output, StepError> {
    if secret.is_empty() {
        return Err(StepError::fatal(
            "invalid_config",
            format!("the config value `{SECRET_KEY}` is empty"),
        ));
    }
    let message = message(&input.payload)?;
    // HMAC accepts keys of any length (long ones are hashed first), so this
    // cannot fail; the error is mapped rather than unwrapped all the same.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| {
        StepError::fatal(
            "invalid_config",
            format!("the secret is not a valid key: {e}"),
        )
    })?;
    mac.update(&message);
    let tag = mac.finalize().into_bytes();
    let signature = match input.encoding {
        Encoding::Hex => hex::encode(tag),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(tag),
    };
    // The length is enough to trace a call; the payload may be sensitive.
    log::debug(format!("signed {} bytes", message.len()));
    Ok(Output {
        signature,
        algorithm: ALGORITHM,
    })
}

/// The bytes that are signed for `payload`.
fn message(payload: &Value) -> Result<Cow<'_, [u8]>, StepError> {
    match payload {
        Value::String(text) => Ok(Cow::Borrowed(text.as_bytes())),
        other => serde_json::to_vec(&Canonical(other))
            .map(Cow::Owned)
            .map_err(|e| {
                StepError::fatal(
                    "invalid_input",
                    format!("the payload cannot be serialized: {e}"),
                )
            }),
    }
}

/// Serializes a JSON value with the keys of every object sorted.
///
/// `serde_json`'s map happens to be sorted today, but only while no crate in
/// the build enables its `preserve_order` feature. Cargo unifies features
/// across a build, so relying on it could change signatures without any
/// change to this crate. Recursion is bounded by the nesting limit that
/// `serde_json` applies when it parses the input.
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => serializer.collect_seq(items.iter().map(Canonical)),
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                serializer.collect_map(entries.into_iter().map(|(k, v)| (k, Canonical(v))))
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// The exported step: [`sign`] with the configured secret.
fn sign_with_configured_secret(input: Input) -> Result<Output, StepError> {
    let secret = config::require(SECRET_KEY)?;
    sign(input, &secret)
}

export_step!(sign_with_configured_secret);

#[cfg(test)]
mod tests {
    use stephost_sdk::run_json;
    use stephost_sdk::serde_json::json;

    use super::*;

    /// RFC 4231, test case 2.
    const JEFE_KEY: &str = "Jefe";
    const JEFE_DATA: &str = "what do ya want for nothing?";
    const JEFE_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const JEFE_BASE64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

    /// Runs the step on JSON text, as the sandbox would, with `secret`.
    fn run(input: &str, secret: &str) -> Result<Value, StepError> {
        let text = run_json(input, |i: Input| sign(i, secret))?;
        Ok(serde_json::from_str(&text).expect("the output is JSON"))
    }

    fn signed(signature: &str) -> Value {
        json!({"signature": signature, "algorithm": "hmac-sha256"})
    }

    #[test]
    fn rfc_4231_test_case_1() {
        let key = "\x0b".repeat(20);
        let out = run(r#"{"payload": "Hi There"}"#, &key).unwrap();
        assert_eq!(
            out,
            signed("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
    }

    #[test]
    fn rfc_4231_test_case_2_in_hex_and_base64() {
        let input = json!({"payload": JEFE_DATA});
        assert_eq!(run(&input.to_string(), JEFE_KEY).unwrap(), signed(JEFE_HEX));
        let input = json!({"payload": JEFE_DATA, "encoding": "hex"});
        assert_eq!(run(&input.to_string(), JEFE_KEY).unwrap(), signed(JEFE_HEX));
        let input = json!({"payload": JEFE_DATA, "encoding": "base64"});
        assert_eq!(
            run(&input.to_string(), JEFE_KEY).unwrap(),
            signed(JEFE_BASE64)
        );
    }

    #[test]
    fn a_json_payload_is_signed_as_sorted_compact_json_with_numbers_as_written() {
        // Keys out of order, whitespace, non-ASCII text, and numbers that a
        // round trip through f64 or i64 would change.
        let input = r#"{"payload": {
            "é": "\n",
            "b": {"z": 12345678901234567890123, "y": "é😀"},
            "a": [true, null, "x", 1.50, -0, 1e3, 2E-2]
        }}"#;
        let expected = r#"{"a":[true,null,"x",1.50,-0,1e+3,2e-2],"b":{"y":"é😀","z":12345678901234567890123},"é":"\n"}"#;
        let parsed: Input = serde_json::from_str(input).unwrap();
        assert_eq!(&*message(&parsed.payload).unwrap(), expected.as_bytes());
        // Computed independently, with Python's `hmac` over `expected`.
        assert_eq!(
            run(input, JEFE_KEY).unwrap(),
            signed("1fbd26b6f07b16473c6ce8f5323cfaf72b67acd59cba29ae4d9164326c797711")
        );
    }

    #[test]
    fn a_string_is_signed_without_quotes_and_null_as_its_json() {
        assert_eq!(&*message(&json!("a\"b")).unwrap(), b"a\"b");
        assert_eq!(&*message(&json!(null)).unwrap(), b"null");
        assert_eq!(
            run(r#"{"payload": null}"#, JEFE_KEY).unwrap(),
            signed("b09e6f1855dfd1a631cb713e575c5a26f385f16e2f7c014867205f423f1e9fe9")
        );
    }

    #[test]
    fn without_the_config_value_the_step_fails_with_missing_config() {
        // Outside the sandbox `config::get` finds nothing, which is exactly
        // the case of a workflow step that does not set `secret`.
        let e = run_json(r#"{"payload": "x"}"#, sign_with_configured_secret).unwrap_err();
        assert_eq!(e.code, "missing_config");
        assert!(!e.retryable);
        assert!(e.message.contains("`secret`"), "{}", e.message);
    }

    #[test]
    fn an_empty_secret_is_invalid_config() {
        let e = run(r#"{"payload": "x"}"#, "").unwrap_err();
        assert_eq!(
            e,
            StepError::fatal("invalid_config", "the config value `secret` is empty")
        );
    }

    #[test]
    fn input_of_the_wrong_shape_is_invalid_input() {
        for input in [
            r#"{}"#,
            r#"{"payload": "x", "encoding": "base32"}"#,
            r#"{"payload": "x", "encoding": "HEX"}"#,
            r#"{"payload": "x", "extra": 1}"#,
            r#""just a string""#,
        ] {
            let e = run(input, JEFE_KEY).unwrap_err();
            assert_eq!(e.code, "invalid_input", "{input}");
            assert!(!e.retryable);
        }
    }
}
