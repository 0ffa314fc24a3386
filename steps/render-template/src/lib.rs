//! Example step: renders a Jinja text template with [minijinja].
//!
//! # Input
//!
//! - `template`: the template source, in Jinja syntax (`{{ customer.name }}`,
//!   `{% for item in items %}…{% endfor %}`, filters such as `upper`,
//!   `join` and `default`).
//! - `context` (optional, `{}` by default): an object whose keys are the
//!   template's variables.
//!
//! The template is rendered as plain text: nothing is HTML-escaped (use the
//! `escape` filter where that is wanted). Whitespace follows Jinja's
//! defaults, so a single newline at the very end of the template is dropped.
//! Undefined variables are errors, not empty text, because a message with a
//! silently missing name or amount is worse than a failed step. Use the
//! `default` filter or `is defined` for values that may be absent.
//!
//! Only single templates are supported: `{% include %}`, `{% extends %}` and
//! `{% import %}` have nothing to load from, so they are not built in.
//!
//! # Output
//!
//! `{"text": "<the rendered text>"}`
//!
//! # Example
//!
//! ```json
//! {
//!   "template": "Hello {{ name }}, you ordered {{ items | join(', ') }}.",
//!   "context": {"name": "Ada", "items": ["tea", "scones"]}
//! }
//! ```
//!
//! gives
//!
//! ```json
//! {"text": "Hello Ada, you ordered tea, scones."}
//! ```
//!
//! # Errors
//!
//! Both are non-retryable, since the same input fails the same way.
//!
//! - `template_error`: the template has a syntax error, uses an undefined
//!   variable, or fails while rendering (for example an unknown filter). The
//!   message is minijinja's and ends with the line, as in
//!   ``undefined value: `user.name` is undefined (in template:1)``.
//! - `invalid_input`: the input does not have the shape above.
//!
//! [minijinja]: https://docs.rs/minijinja

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use stephost_sdk::serde_json::{Map, Number};
use stephost_sdk::{StepError, Value, export_step, log};

/// The step's input; see the [crate documentation](crate).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The template source, in Jinja syntax.
    pub template: String,
    /// The template's variables.
    #[serde(default)]
    pub context: Map<String, Value>,
}

/// The step's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Output {
    /// The rendered text.
    pub text: String,
}

/// Renders `input.template` with `input.context`.
pub fn render(input: Input) -> Result<Output, StepError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // The default callback escapes by file extension, which a template
    // named `template` does not have; saying so keeps the output plain text
    // whatever that callback does in a later minijinja.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Debug mode makes an undefined-variable error name the expression
    // (`user.name`), which the step author needs to fix the template.
    env.set_debug(true);

    let context = template_map(&input.context);
    let text = env
        // Named after the input field, so that errors read `(in template:3)`.
        .render_named_str("template", &input.template, context)
        .map_err(|e| StepError::fatal("template_error", e.to_string()))?;
    log::debug(format!("rendered {} bytes", text.len()));
    Ok(Output { text })
}

export_step!(render);

/// Converts JSON into a template value.
///
/// This is done by hand rather than through minijinja's `serde` feature:
/// the workspace builds `serde_json` with `arbitrary_precision`, under which a
/// number serializes as a private one-field map, and templates would see that
/// map instead of the number. Recursion is bounded by the nesting limit that
/// `serde_json` applies when it parses the input.
fn to_template_value(value: &Value) -> minijinja::Value {
    match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => number(n),
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(items) => items.iter().map(to_template_value).collect(),
        Value::Object(map) => template_map(map),
    }
}

fn template_map(map: &Map<String, Value>) -> minijinja::Value {
    minijinja::Value::from_pairs(
        map.iter()
            .map(|(key, value)| (key.as_str(), to_template_value(value))),
    )
}

/// Converts a JSON number into the narrowest template number that holds it
/// exactly: integers stay integers (up to 128 bits), so `{{ 3 }}` renders
/// `3`, not `3.0`.
fn number(n: &Number) -> minijinja::Value {
    if let Some(i) = n.as_i64() {
        return minijinja::Value::from(i);
    }
    if let Some(u) = n.as_u64() {
        return minijinja::Value::from(u);
    }
    let text = n.to_string();
    if let Ok(i) = text.parse::<i128>() {
        return minijinja::Value::from(i);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => minijinja::Value::from(f),
        // Beyond what f64 or i128 hold: keep the digits, so that printing
        // the value still shows the number as written.
        _ => minijinja::Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use stephost_sdk::run_json;
    use stephost_sdk::serde_json::{self, json};

    use super::*;

    fn run(input: Value) -> Result<String, StepError> {
        let text = run_json(&input.to_string(), render)?;
        let output: Value = serde_json::from_str(&text).expect("the output is JSON");
        Ok(output["text"]
            .as_str()
            .expect("`text` is a string")
            .to_owned())
    }

    fn template_error(template: &str, context: Value) -> String {
        let e = run(json!({"template": template, "context": context})).unwrap_err();
        assert_eq!(e.code, "template_error");
        assert!(!e.retryable);
        e.message
    }

    #[test]
    fn the_documented_example_works() {
        let text = run(json!({
            "template": "Hello {{ name }}, you ordered {{ items | join(', ') }}.",
            "context": {"name": "Ada", "items": ["tea", "scones"]}
        }));
        assert_eq!(text.unwrap(), "Hello Ada, you ordered tea, scones.");
    }

    #[test]
    fn the_output_is_the_text_under_a_text_key() {
        let out = run_json(r#"{"template": "x{{ 1 + 1 }}"}"#, render).unwrap();
        assert_eq!(out, r#"{"text":"x2"}"#);
    }

    #[test]
    fn loops_conditions_filters_and_nested_values_render() {
        let template = "{% for line in order.lines %}{{ loop.index }}. {{ line.sku | upper }} x{{ line.qty }}\n{% endfor %}\
                        {% if order.rush %}RUSH{% else %}normal{% endif %} {{ order.note | default('-') }}";
        let text = run(json!({
            "template": template,
            "context": {"order": {"lines": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 1}], "rush": false}}
        }));
        assert_eq!(text.unwrap(), "1. A-1 x2\n2. B-2 x1\nnormal -");
    }

    #[test]
    fn numbers_keep_their_kind_and_size() {
        let text = run(json!({
            "template": "{{ i }} {{ i + 1 }} {{ f }} {{ big }} {{ neg }}",
            "context": {"i": 3, "f": 2.5, "big": 18446744073709551615u64, "neg": -7}
        }));
        assert_eq!(text.unwrap(), "3 4 2.5 18446744073709551615 -7");
    }

    #[test]
    fn integers_wider_than_64_bits_and_floats_beyond_f64_survive() {
        // Built from text: `json!` cannot express these numbers. The digits
        // are kept, with the exponent as `serde_json` spells it.
        let input = r#"{"template": "{{ wide }} {{ wide + 1 }} {{ vast }}",
                        "context": {"wide": 123456789012345678901234567890, "vast": 1e400}}"#;
        let out = run_json(input, render).unwrap();
        assert_eq!(
            out,
            r#"{"text":"123456789012345678901234567890 123456789012345678901234567891 1e+400"}"#
        );
    }

    #[test]
    fn nothing_is_html_escaped_and_escape_is_available() {
        let text = run(json!({
            "template": "{{ s }} {{ s | escape }}",
            "context": {"s": "<b>&</b>"}
        }));
        assert_eq!(text.unwrap(), "<b>&</b> &lt;b&gt;&amp;&lt;&#x2f;b&gt;");
    }

    #[test]
    fn a_final_newline_is_dropped_as_in_jinja() {
        let text = run(json!({"template": "line\n\n"}));
        assert_eq!(text.unwrap(), "line\n");
    }

    #[test]
    fn an_undefined_variable_is_a_template_error_naming_it() {
        assert_eq!(
            template_error("Hi {{ user.name }}", json!({"user": {}})),
            "undefined value: `user.name` is undefined (in template:1)"
        );
        assert_eq!(
            template_error("\n{% for x in xs %}{% endfor %}", json!({})),
            "undefined value: `xs` is undefined (in template:2)"
        );
    }

    #[test]
    fn a_syntax_error_is_a_template_error_with_its_line() {
        assert_eq!(
            template_error("ok\n{{ name ", json!({"name": "x"})),
            "syntax error: unexpected end of input, expected end of variable block (in template:2)"
        );
    }

    #[test]
    fn an_unknown_filter_or_a_loader_tag_is_a_template_error() {
        assert_eq!(
            template_error("{{ 1 | frobnicate }}", json!({})),
            "unknown filter: filter frobnicate is unknown (in template:1)"
        );
        let message = template_error("{% include 'other.txt' %}", json!({}));
        assert!(message.starts_with("syntax error"), "{message}");
    }

    #[test]
    fn input_of_the_wrong_shape_is_invalid_input() {
        for input in [
            json!({}),
            json!({"template": 1}),
            json!({"template": "x", "context": ["not", "an", "object"]}),
            json!({"template": "x", "extra": 1}),
        ] {
            let e = run(input.clone()).unwrap_err();
            assert_eq!(e.code, "invalid_input", "{input}");
            assert!(!e.retryable);
        }
    }
}
