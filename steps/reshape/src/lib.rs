//! Example step: builds a new JSON document from fields picked out of the
//! input.
//!
//! # Input
//!
//! - `data`: any JSON document to pick fields from.
//! - `mapping`: an object whose keys are paths in the output and whose
//!   values are paths in `data`. Each output path receives a copy of what
//!   its input path points at.
//! - `defaults` (optional): an object whose keys are output paths (the same
//!   keys as in `mapping`) and whose values are used when the input path
//!   points at nothing. A `null` in `data` is a value, not a gap, so it is
//!   copied and its default is not used.
//!
//! Paths are JSON Pointers (RFC 6901), not dotted paths: `/customer/email`,
//! `/items/0/sku`. A pointer can name any key, including keys that contain
//! dots or are empty (`/a.b` and `/` name the keys `a.b` and `""`, `~1` and
//! `~0` stand for `/` and `~`), so no key is out of reach and no path means
//! two things. The empty pointer `""` names the whole document.
//!
//! Output paths always build objects: every segment is an object key, so
//! `/items/0` makes `{"items": {"0": …}}`. To produce an array, map a whole
//! array from the input. One output path may not lie inside another (`/a`
//! and `/a/b`), because the result would depend on the order the entries are
//! applied in.
//!
//! # Output
//!
//! The built document: an object, or the value itself when the only output
//! path is `""`.
//!
//! # Example
//!
//! ```json
//! {
//!   "data": {"customer": {"email": "ada@example.com"}, "items": [{"sku": "A-1"}]},
//!   "mapping": {"/email": "/customer/email", "/first/sku": "/items/0/sku", "/phone": "/customer/phone"},
//!   "defaults": {"/phone": null}
//! }
//! ```
//!
//! gives
//!
//! ```json
//! {"email": "ada@example.com", "first": {"sku": "A-1"}, "phone": null}
//! ```
//!
//! # Errors
//!
//! Both are non-retryable, since the same input fails the same way.
//!
//! - `missing_field`: an input path points at nothing and `defaults` has no
//!   value for its output path. The message names both paths.
//! - `invalid_input`: the input does not have the shape above, a path is not
//!   a valid JSON Pointer, two output paths overlap, or `defaults` names an
//!   output path that `mapping` does not have.

use std::collections::BTreeMap;

use serde::Deserialize;
use stephost_sdk::serde_json::Map;
use stephost_sdk::{StepError, Value, export_step, log};

/// The step's input; see the [crate documentation](crate).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The document to pick fields from.
    pub data: Value,
    /// Output path → input path, both JSON Pointers.
    pub mapping: BTreeMap<String, String>,
    /// Output path → the value to use when the input path points at nothing.
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
}

/// Builds the output document that `input.mapping` describes.
pub fn reshape(input: Input) -> Result<Value, StepError> {
    let Input {
        data,
        mapping,
        mut defaults,
    } = input;

    // A default for a path that is never mapped is almost certainly a typo,
    // and it would otherwise be ignored without a word.
    if let Some(orphan) = defaults.keys().find(|k| !mapping.contains_key(*k)) {
        return Err(StepError::invalid_input(format!(
            "`defaults` has a value for `{orphan}`, which is not an output path in `mapping`"
        )));
    }

    let mut targets = Vec::with_capacity(mapping.len());
    for (output_path, input_path) in &mapping {
        // The input path is only checked here: `Value::pointer` does the
        // lookup, but it reads malformed pointers leniently (`a/b`, `~2`) as
        // "nothing there", which would turn a typo into a misleading
        // `missing_field`.
        segments("input path", input_path)?;
        targets.push(Target {
            segments: segments("output path", output_path)?,
            output_path,
            input_path,
        });
    }
    check_no_overlap(&mut targets)?;

    let mut output = Value::Object(Map::new());
    for Target {
        segments,
        output_path,
        input_path,
    } in &targets
    {
        let value = match data.pointer(input_path) {
            Some(value) => value.clone(),
            None => defaults.remove(*output_path).ok_or_else(|| {
                StepError::fatal(
                    "missing_field",
                    format!(
                        "`data` has nothing at `{input_path}` (mapped to `{output_path}`), \
                         and `defaults` has no value for `{output_path}`"
                    ),
                )
            })?,
        };
        insert(&mut output, segments, value)?;
    }
    log::debug(format!("reshaped {} fields", targets.len()));
    Ok(output)
}

export_step!(reshape);

/// One entry of the mapping, with its output path split into keys.
#[derive(Debug)]
struct Target<'a> {
    segments: Vec<String>,
    output_path: &'a str,
    input_path: &'a str,
}

/// Splits a JSON Pointer into its unescaped reference tokens. `what` names
/// the pointer in the error.
fn segments(what: &str, pointer: &str) -> Result<Vec<String>, StepError> {
    let tokens = match pointer.strip_prefix('/') {
        Some(rest) => rest.split('/').map(unescape).collect(),
        None if pointer.is_empty() => Ok(Vec::new()),
        None => Err("it must be empty or start with `/`"),
    };
    tokens.map_err(|why| {
        StepError::invalid_input(format!(
            "{what} `{pointer}` in `mapping` is not a JSON Pointer: {why}"
        ))
    })
}

/// Turns `~1` into `/` and `~0` into `~`, and rejects any other `~`.
fn unescape(token: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err("`~` must be followed by `0` or `1`"),
        }
    }
    Ok(out)
}

/// Rejects output paths of which one lies inside another.
///
/// After sorting, a path that is a prefix of others sorts directly before the
/// first of them (everything in between shares the prefix too), so comparing
/// neighbours finds every overlap.
fn check_no_overlap(targets: &mut [Target<'_>]) -> Result<(), StepError> {
    targets.sort_by(|a, b| a.segments.cmp(&b.segments));
    for (outer, inner) in targets.iter().zip(targets.iter().skip(1)) {
        if inner.segments.starts_with(&outer.segments) {
            return Err(StepError::invalid_input(format!(
                "output paths `{}` and `{}` overlap: one would be written inside the other",
                outer.output_path, inner.output_path
            )));
        }
    }
    Ok(())
}

/// Stores `value` at `segments` under `root`, creating objects on the way.
fn insert(root: &mut Value, segments: &[String], value: Value) -> Result<(), StepError> {
    let mut node = root;
    for key in segments {
        // `check_no_overlap` keeps values off the paths to other values, so
        // every node passed through is an object this function created. The
        // error is a guard, not an expected outcome.
        let Value::Object(map) = node else {
            return Err(StepError::fatal(
                "internal",
                "an output path runs through a value",
            ));
        };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    *node = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use stephost_sdk::run_json;
    use stephost_sdk::serde_json::json;

    use super::*;

    fn run(input: Value) -> Result<Value, StepError> {
        let text = run_json(&input.to_string(), reshape)?;
        Ok(stephost_sdk::serde_json::from_str(&text).expect("the output is JSON"))
    }

    fn err(input: Value) -> StepError {
        let e = run(input).expect_err("the step should fail");
        assert!(!e.retryable, "{e}");
        e
    }

    #[test]
    fn the_documented_example_works() {
        let out = run(json!({
            "data": {"customer": {"email": "ada@example.com"}, "items": [{"sku": "A-1"}]},
            "mapping": {"/email": "/customer/email", "/first/sku": "/items/0/sku", "/phone": "/customer/phone"},
            "defaults": {"/phone": null}
        }));
        assert_eq!(
            out.unwrap(),
            json!({"email": "ada@example.com", "first": {"sku": "A-1"}, "phone": null})
        );
    }

    #[test]
    fn nested_outputs_share_parents_and_values_are_copied_whole() {
        let out = run(json!({
            "data": {"order": {"id": 7, "lines": [1, 2], "total": {"amount": "9.99", "currency": "EUR"}}},
            "mapping": {
                "/order/id": "/order/id",
                "/order/lines": "/order/lines",
                "/money": "/order/total",
                "/again": "/order/id"
            }
        }));
        assert_eq!(
            out.unwrap(),
            json!({
                "order": {"id": 7, "lines": [1, 2]},
                "money": {"amount": "9.99", "currency": "EUR"},
                "again": 7
            })
        );
    }

    #[test]
    fn escaped_keys_with_slashes_tildes_dots_and_empty_names_are_reachable() {
        let out = run(json!({
            "data": {"a/b": 1, "m~n": 2, "x.y": 3, "": 4},
            "mapping": {"/slash": "/a~1b", "/tilde": "/m~0n", "/dot": "/x.y", "/empty": "/", "/out~1key": "/a~1b"}
        }));
        assert_eq!(
            out.unwrap(),
            json!({"slash": 1, "tilde": 2, "dot": 3, "empty": 4, "out/key": 1})
        );
    }

    #[test]
    fn the_empty_pointer_names_the_whole_document() {
        let data = json!({"keep": ["all", {"of": "it"}]});
        let whole = run(json!({"data": data.clone(), "mapping": {"/copy": ""}}));
        assert_eq!(whole.unwrap(), json!({"copy": data}));
        let subtree = run(json!({"data": data, "mapping": {"": "/keep/1"}}));
        assert_eq!(subtree.unwrap(), json!({"of": "it"}));
    }

    #[test]
    fn an_empty_mapping_gives_an_empty_object() {
        assert_eq!(run(json!({"data": 1, "mapping": {}})).unwrap(), json!({}));
    }

    #[test]
    fn null_is_copied_and_a_default_is_used_only_for_a_gap() {
        let out = run(json!({
            "data": {"present": null},
            "mapping": {"/a": "/present", "/b": "/absent", "/c": "/list/5"},
            "defaults": {"/a": "unused", "/b": {"fallback": true}, "/c": 0}
        }));
        assert_eq!(
            out.unwrap(),
            json!({"a": null, "b": {"fallback": true}, "c": 0})
        );
    }

    #[test]
    fn a_missing_field_without_default_names_both_paths() {
        let e = err(json!({
            "data": {"customer": {}},
            "mapping": {"/email": "/customer/email"}
        }));
        assert_eq!(e.code, "missing_field");
        assert_eq!(
            e.message,
            "`data` has nothing at `/customer/email` (mapped to `/email`), \
             and `defaults` has no value for `/email`"
        );
    }

    #[test]
    fn array_indexes_out_of_range_or_malformed_are_missing() {
        for path in ["/items/1", "/items/01", "/items/-", "/items/x"] {
            let e = err(json!({"data": {"items": [1]}, "mapping": {"/v": path}}));
            assert_eq!(e.code, "missing_field", "{path}");
        }
    }

    #[test]
    fn malformed_pointers_are_invalid_input() {
        let cases = [
            (
                json!({"customer.email": "/x"}),
                "output path `customer.email` in `mapping` is not a JSON Pointer: \
                 it must be empty or start with `/`",
            ),
            (
                json!({"/x": "customer.email"}),
                "input path `customer.email` in `mapping` is not a JSON Pointer: \
                 it must be empty or start with `/`",
            ),
            (
                json!({"/x": "/a~2"}),
                "input path `/a~2` in `mapping` is not a JSON Pointer: \
                 `~` must be followed by `0` or `1`",
            ),
            (
                json!({"/x~": "/a"}),
                "output path `/x~` in `mapping` is not a JSON Pointer: \
                 `~` must be followed by `0` or `1`",
            ),
        ];
        for (mapping, message) in cases {
            let e = err(json!({"data": {"a": 1}, "mapping": mapping}));
            assert_eq!(e.code, "invalid_input");
            assert_eq!(e.message, message);
        }
    }

    #[test]
    fn overlapping_output_paths_are_invalid_input() {
        let e = err(json!({
            "data": {"a": {"x": 1}, "b": 2},
            "mapping": {"/out": "/a", "/out/b": "/b", "/z": "/b"}
        }));
        assert_eq!(e.code, "invalid_input");
        assert_eq!(
            e.message,
            "output paths `/out` and `/out/b` overlap: one would be written inside the other"
        );
        let e = err(json!({"data": 1, "mapping": {"": "", "/a": ""}}));
        assert!(e.message.contains("`` and `/a` overlap"), "{}", e.message);
    }

    #[test]
    fn paths_that_only_share_a_key_prefix_do_not_overlap() {
        let out = run(json!({"data": 1, "mapping": {"/a": "", "/ab": "", "/a~1b": ""}}));
        assert_eq!(out.unwrap(), json!({"a": 1, "ab": 1, "a/b": 1}));
    }

    #[test]
    fn a_default_for_an_unmapped_path_is_invalid_input() {
        let e = err(json!({
            "data": {},
            "mapping": {"/email": "/email"},
            "defaults": {"/emial": "none"}
        }));
        assert_eq!(e.code, "invalid_input");
        assert_eq!(
            e.message,
            "`defaults` has a value for `/emial`, which is not an output path in `mapping`"
        );
    }

    #[test]
    fn input_of_the_wrong_shape_is_invalid_input() {
        for input in [
            json!({"mapping": {}}),
            json!({"data": {}}),
            json!({"data": {}, "mapping": {"/a": 1}}),
            json!({"data": {}, "mapping": {}, "extra": true}),
            json!(["not", "an", "object"]),
        ] {
            assert_eq!(err(input.clone()).code, "invalid_input", "{input}");
        }
    }
}
