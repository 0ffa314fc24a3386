//! Write [stephost] workflow steps in Rust.
//!
//! A step is one plain function from a deserializable input to a serializable
//! output. [`export_step!`] turns it into the `run` export of the
//! `stephost:step@0.1.0` world: the SDK parses the input JSON, calls the
//! function, and serializes its output, so the function never sees JSON text.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use stephost_sdk::{StepError, config, export_step, log};
//!
//! #[derive(Deserialize)]
//! struct Input {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Output {
//!     greeting: String,
//! }
//!
//! fn greet(input: Input) -> Result<Output, StepError> {
//!     if input.name.is_empty() {
//!         return Err(StepError::fatal("invalid_input", "`name` must not be empty"));
//!     }
//!     let salutation = config::get("salutation").unwrap_or_else(|| "Hello".to_owned());
//!     log::info(format!("greeting {}", input.name));
//!     Ok(Output {
//!         greeting: format!("{salutation}, {}!", input.name),
//!     })
//! }
//!
//! export_step!(greet);
//! # fn main() {}
//! ```
//!
//! Build the crate as a `cdylib` for the `wasm32-wasip2` target:
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! Input that does not match the input type is answered with a
//! non-retryable [`StepError`] whose code is `invalid_input` and whose
//! message names the problem, without calling the function.
//!
//! The host functions (`log`, `config`) only exist inside the sandbox. On
//! other targets they are inert (`log` does nothing, `config::get` returns
//! `None`), so the step's own logic can be unit-tested with plain
//! `cargo test`.
//!
//! [stephost]: https://github.com/stephost/stephost

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Generated bindings for the `step` world. Used by [`export_step!`]; step
/// authors do not need them.
#[doc(hidden)]
pub mod bindings {
    // The SDK carries its own copy of the WIT package, so that the crate
    // builds wherever it is copied to (a scaffold outside this repository);
    // a test keeps it identical to the repository's `wit/`.
    wit_bindgen::generate!({
        path: "wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
        default_bindings_module: "stephost_sdk::bindings",
    });
}

pub mod http;

pub use serde_json;
pub use serde_json::Value;

/// The error a step returns when it cannot produce an output.
///
/// The engine shows `code` and `message` on the failed attempt and retries
/// the step only when `retryable` is true and the workflow's retry policy
/// allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// A short machine-readable code, such as `invalid_input`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// Whether running the step again with the same input may succeed.
    pub retryable: bool,
}

impl StepError {
    /// An error that a retry cannot fix, such as bad input.
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// An error that a retry may fix, such as an unavailable dependency.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// A non-retryable `invalid_input` error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::fatal("invalid_input", message)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for StepError {}

/// Logging that is recorded against the current step attempt.
///
/// Lines appear in the execution record with their level. The host bounds
/// the total size per attempt and redacts secret values.
pub mod log {
    use crate::bindings::stephost::step::log::Level;

    fn write(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::stephost::step::log::log(level, message);
        // Outside the sandbox there is no host to log to.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (level, message);
    }

    macro_rules! level_fn {
        ($(#[$doc:meta] $name:ident => $level:ident),* $(,)?) => {$(
            #[$doc]
            pub fn $name(message: impl AsRef<str>) {
                write(Level::$level, message.as_ref());
            }
        )*};
    }

    level_fn! {
        /// Records a `trace` line.
        trace => Trace,
        /// Records a `debug` line.
        debug => Debug,
        /// Records an `info` line.
        info => Info,
        /// Records a `warn` line.
        warn => Warn,
        /// Records an `error` line.
        error => Error,
    }
}

/// The step's configuration values and secrets, as set on the workflow
/// step.
pub mod config {
    use crate::StepError;

    /// Returns the value configured for `key`, or `None` when the step has
    /// no such key (and always `None` outside the sandbox).
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::bindings::stephost::step::config::get(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = key;
            None
        }
    }

    /// Returns the value configured for `key`, or a non-retryable
    /// `missing_config` error naming the key.
    pub fn require(key: &str) -> Result<String, StepError> {
        get(key).ok_or_else(|| {
            StepError::fatal(
                "missing_config",
                format!("the step needs the config value `{key}`"),
            )
        })
    }
}

/// Runs a step function over JSON text: parses the input, calls `f` and
/// serializes its output. [`export_step!`] calls this; it is public so that
/// the JSON handling can be tested natively.
pub fn run_json<I, O, F>(input: &str, f: F) -> Result<String, StepError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(I) -> Result<O, StepError>,
{
    let input: I = serde_json::from_str(input)
        .map_err(|e| StepError::invalid_input(format!("the input does not fit: {e}")))?;
    let output = f(input)?;
    serde_json::to_string(&output).map_err(|e| {
        StepError::fatal(
            "output_not_serializable",
            format!("the output cannot be serialized: {e}"),
        )
    })
}

/// Exports a function as the step's `run`.
///
/// The function takes any `serde::Deserialize` input and returns
/// `Result<O, StepError>` for any `serde::Serialize` output `O`. Use it once
/// per crate, at the top level:
///
/// ```
/// fn step(input: stephost_sdk::Value) -> Result<stephost_sdk::Value, stephost_sdk::StepError> {
///     Ok(input)
/// }
/// stephost_sdk::export_step!(step);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_step {
    ($function:path) => {
        #[doc(hidden)]
        struct __StephostStep;

        impl $crate::bindings::Guest for __StephostStep {
            fn run(input: ::std::string::String) -> ::std::result::Result<
                ::std::string::String,
                $crate::bindings::StepError,
            > {
                $crate::run_json(&input, $function).map_err(|e| $crate::bindings::StepError {
                    code: e.code,
                    message: e.message,
                    retryable: e.retryable,
                })
            }
        }

        $crate::bindings::__export_step_world!(__StephostStep with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct In {
        n: u32,
    }

    #[test]
    fn run_json_parses_calls_and_serializes() {
        let out = run_json(r#"{"n": 2}"#, |i: In| {
            Ok(serde_json::json!({"double": i.n * 2}))
        });
        assert_eq!(out.unwrap(), r#"{"double":4}"#);
    }

    #[test]
    fn bad_input_is_a_non_retryable_invalid_input_error() {
        let err = run_json(r#"{"n": "x"}"#, |i: In| Ok(i.n)).unwrap_err();
        assert_eq!(err.code, "invalid_input");
        assert!(!err.retryable);
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn large_numbers_round_trip_exactly() {
        let text = r#"{"big":123456789012345678901234567890.000000000000000001,"s":"ünï 😀"}"#;
        let out = run_json(text, |v: Value| Ok(v)).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn the_step_error_is_passed_through() {
        let err = run_json("{}", |_: Value| -> Result<Value, _> {
            Err(StepError::retryable("busy", "try later"))
        })
        .unwrap_err();
        assert_eq!(err, StepError::retryable("busy", "try later"));
    }

    /// `sdk/wit` is a copy of the repository's `wit/`, file for file.
    #[test]
    fn the_wit_copy_matches_the_repository() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
            let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .map(|entry| {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read(&path).unwrap())
                })
                .collect();
            out.sort();
            out
        };
        let ours = files(&root.join("wit"));
        let theirs = files(&root.join("../wit"));
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&ours),
            names(&theirs),
            "sdk/wit and wit/ hold different files"
        );
        for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
            assert!(
                a == b,
                "sdk/wit/{name} differs from wit/{name}: copy wit/ into sdk/wit/"
            );
        }
    }
}
