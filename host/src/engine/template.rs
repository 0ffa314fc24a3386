//! Templates and conditions: one expression language (minijinja, the Jinja
//! dialect Kestra users know) for step inputs, step config, `if` conditions
//! and the workflow output.
//!
//! A string that is exactly one `{{ expression }}` evaluates to the
//! expression's own JSON type (`{{ steps.a.output.items }}` is the array);
//! any other string containing `{{`/`{%` renders to a string. Templates see
//! only the values handed to them (no loader, no host functions), fail on
//! undefined values, and are bounded by minijinja fuel and an output cap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use minijinja::value::ValueKind;
use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::Value;

/// Instructions one template may execute.
const FUEL: u64 = 100_000;
/// The largest value one template may produce, in bytes of JSON.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    // `new` brings the built-in filters, tests and functions; there is no
    // loader, so templates cannot include or import anything.
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env
});

/// Whether `s` holds template syntax at all.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The expression inside `s` when `s` is exactly one `{{ expression }}`.
fn sole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    // A `-` right inside the braces is whitespace control (`{{- x -}}`);
    // one after a space is a minus sign (`{{ -x }}`).
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner.trim())
}

/// `root['name']` and `root["name"]` lookups in `source`, as `root.name`:
/// minijinja reports a subscripted root without the key.
fn subscripts(source: &str, root: &str, out: &mut BTreeSet<String>) {
    let pattern = format!("{root}[");
    let mut rest = source;
    while let Some(at) = rest.find(&pattern) {
        let before_ok = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        rest = &rest[at + pattern.len()..];
        let trimmed = rest.trim_start();
        let Some(quote) = trimmed.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        let body = &trimmed[1..];
        if let Some(end) = body.find(quote)
            && before_ok
        {
            out.insert(format!("{root}.{}", &body[..end]));
        }
    }
}

/// The root names a template or condition refers to, with their nested
/// lookups (`steps.a.output`), or the syntax error.
pub fn references(source: &str, condition: bool) -> Result<BTreeSet<String>, String> {
    let vars = if let Some(expr) = expression_source(source, condition) {
        ENV.compile_expression(expr)
            .map_err(|e| describe(&e))?
            .undeclared_variables(true)
    } else {
        ENV.template_from_str(source)
            .map_err(|e| describe(&e))?
            .undeclared_variables(true)
    };
    let mut out: BTreeSet<String> = vars.into_iter().collect();
    subscripts(source, "steps", &mut out);
    subscripts(source, "secrets", &mut out);
    Ok(out)
}

/// A condition may be written bare (`input.n > 1`) or braced.
fn expression_source(source: &str, condition: bool) -> Option<&str> {
    match sole_expression(source) {
        Some(e) => Some(e),
        None if condition && !is_template(source) => Some(source.trim()),
        None => None,
    }
}

/// Every template string inside `value`, with its JSON path below `path`.
pub fn strings_in<'v>(value: &'v Value, path: &str, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::String(s) if is_template(s) => out.push((path.to_owned(), s)),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings_in(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                strings_in(v, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// A template that failed at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{source_text}` at {path} failed: {message}")]
pub struct TemplateError {
    /// The template's text.
    pub source_text: String,
    /// Where it is in the definition.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// What templates can see.
#[derive(Debug, Clone)]
pub struct Scope {
    root: JValue,
}

impl Scope {
    /// A scope from a JSON object of root names.
    pub fn new(root: &Value) -> Self {
        Self {
            root: to_jinja(root),
        }
    }

    /// Renders every template inside `value`; other values pass through.
    pub fn render(&self, value: &Value, path: &str) -> Result<Value, TemplateError> {
        let out = self.render_inner(value, path)?;
        let size = serde_json::to_string(&out).map_or(usize::MAX, |s| s.len());
        if size > MAX_OUTPUT_BYTES {
            return Err(TemplateError {
                source_text: abbreviate(&value.to_string()),
                path: path.to_owned(),
                message: format!(
                    "the result is {size} bytes, above the limit of {MAX_OUTPUT_BYTES}"
                ),
            });
        }
        Ok(out)
    }

    fn render_inner(&self, value: &Value, path: &str) -> Result<Value, TemplateError> {
        match value {
            Value::String(s) if is_template(s) => self.render_str(s, path),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.render_inner(v, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.render_inner(v, &format!("{path}.{k}"))?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn render_str(&self, source: &str, path: &str) -> Result<Value, TemplateError> {
        let fail = |message: String| TemplateError {
            source_text: abbreviate(source),
            path: path.to_owned(),
            message,
        };
        if let Some(expr) = sole_expression(source) {
            let value = ENV
                .compile_expression(expr)
                .and_then(|e| e.eval(self.root.clone()))
                .map_err(|e| fail(describe(&e)))?;
            return from_jinja(&value).map_err(fail);
        }
        let text = ENV
            .render_str(source, self.root.clone())
            .map_err(|e| fail(describe(&e)))?;
        if text.len() > MAX_OUTPUT_BYTES {
            return Err(fail(format!(
                "the result is {} bytes, above the limit of {MAX_OUTPUT_BYTES}",
                text.len()
            )));
        }
        Ok(Value::String(text))
    }

    /// Evaluates a condition to its truthiness.
    pub fn condition(&self, source: &str, path: &str) -> Result<bool, TemplateError> {
        let fail = |message: String| TemplateError {
            source_text: abbreviate(source),
            path: path.to_owned(),
            message,
        };
        match expression_source(source, true) {
            Some(expr) => ENV
                .compile_expression(expr)
                .and_then(|e| e.eval(self.root.clone()))
                .map(|v| v.is_true())
                .map_err(|e| fail(describe(&e))),
            None => {
                let text = ENV
                    .render_str(source, self.root.clone())
                    .map_err(|e| fail(describe(&e)))?;
                Ok(!matches!(
                    text.trim(),
                    "" | "false" | "False" | "0" | "none" | "None"
                ))
            }
        }
    }
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() <= 200 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(200).collect::<String>())
    }
}

/// minijinja's message with its detail, without the synthetic template
/// name, so that users read what failed and where.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    if let Some(detail) = e.detail()
        && !msg.contains(detail)
    {
        msg = format!("{msg}: {detail}");
    }
    msg.replace(" (in <string>:1)", "")
        .replace(" (in <expression>:1)", "")
}

/// JSON to a template value. Numbers keep their exact value where an
/// integer type holds them; other numbers become floats.
fn to_jinja(v: &Value) -> JValue {
    match v {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                JValue::from(i)
            } else if let Some(u) = n.as_u64() {
                JValue::from(u)
            } else if let Ok(i) = n.as_str().parse::<i128>() {
                JValue::from(i)
            } else if let Ok(u) = n.as_str().parse::<u128>() {
                JValue::from(u)
            } else {
                JValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(items) => JValue::from(items.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(map) => JValue::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// A template value back to JSON; undefined values are errors.
fn from_jinja(v: &JValue) -> Result<Value, String> {
    Ok(match v.kind() {
        ValueKind::Undefined => return Err("undefined value".into()),
        ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(v.is_true()),
        ValueKind::Number => {
            if let Ok(i) = i64::try_from(v.clone()) {
                Value::from(i)
            } else if let Ok(i) = i128::try_from(v.clone()) {
                serde_json::to_value(i).map_err(|e| e.to_string())?
            } else if let Ok(u) = u128::try_from(v.clone()) {
                serde_json::to_value(u).map_err(|e| e.to_string())?
            } else {
                let f = f64::try_from(v.clone()).map_err(|e| e.to_string())?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{f} is not a JSON number"))?
            }
        }
        ValueKind::String => Value::String(v.as_str().unwrap_or_default().to_owned()),
        ValueKind::Seq | ValueKind::Iterable => Value::Array(
            v.try_iter()
                .map_err(|e| e.to_string())?
                .map(|item| from_jinja(&item))
                .collect::<Result<_, _>>()?,
        ),
        ValueKind::Map => {
            let mut out = serde_json::Map::new();
            for key in v.try_iter().map_err(|e| e.to_string())? {
                let item = v.get_item(&key).map_err(|e| e.to_string())?;
                let key = match key.as_str() {
                    Some(k) => k.to_owned(),
                    None => key.to_string(),
                };
                out.insert(key, from_jinja(&item)?);
            }
            Value::Object(out)
        }
        _ => Value::String(v.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new(&json!({
            "input": {"customer_email": "a@b.c", "n": 3, "big": 123456789012345678901234567890u128},
            "steps": {"lookup": {"status": "succeeded", "output": {"items": [1, 2], "contact": {"id": "c-1"}}}},
            "execution": {"id": "e-1"},
        }))
    }

    #[test]
    fn a_sole_expression_keeps_its_json_type() {
        let s = scope();
        let v = s
            .render(
                &json!({"items": "{{ steps.lookup.output.items }}", "n": "{{ input.n + 1 }}",
                         "big": "{{ input.big }}", "obj": "{{ steps.lookup.output.contact }}",
                         "text": "to {{ input.customer_email }}", "plain": 5}),
                "$.input",
            )
            .unwrap();
        assert_eq!(
            v,
            json!({"items": [1, 2], "n": 4, "big": 123456789012345678901234567890u128,
                   "obj": {"id": "c-1"}, "text": "to a@b.c", "plain": 5})
        );
    }

    #[test]
    fn a_missing_field_names_the_template_and_the_path() {
        let err = scope()
            .render(
                &json!({"to": "{{ input.nope.deeper }}"}),
                "$.steps[0].input",
            )
            .unwrap_err();
        assert_eq!(err.path, "$.steps[0].input.to");
        assert_eq!(err.source_text, "{{ input.nope.deeper }}");
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn conditions_bare_or_braced() {
        let s = scope();
        assert!(s.condition("input.n > 2", "$").unwrap());
        assert!(!s.condition("{{ input.n > 5 }}", "$").unwrap());
        assert!(
            s.condition("steps.lookup.status == 'succeeded'", "$")
                .unwrap()
        );
    }

    #[test]
    fn evaluation_is_bounded() {
        let err = scope()
            .render(
                &json!("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"),
                "$",
            )
            .unwrap_err();
        assert!(err.message.contains("fuel"), "{err}");
    }

    #[test]
    fn a_minus_sign_is_not_whitespace_control() {
        let s = scope();
        assert_eq!(s.render(&json!("{{ -input.n }}"), "$").unwrap(), json!(-3));
        assert_eq!(s.render(&json!("{{- input.n -}}"), "$").unwrap(), json!(3));
        assert!(!s.condition("{{ -input.n > 0 }}", "$").unwrap());
    }

    #[test]
    fn subscripted_steps_and_secrets_are_references_too() {
        let refs = references("{{ steps['a-b'].output }} {{ secrets[\"KEY\"] }}", false).unwrap();
        assert!(refs.contains("steps.a-b"), "{refs:?}");
        assert!(refs.contains("secrets.KEY"), "{refs:?}");
    }

    #[test]
    fn references_list_nested_lookups_and_reject_bad_syntax() {
        let refs = references("{{ steps.a.output.x }} and {{ input.y }}", false).unwrap();
        assert!(refs.contains("steps.a.output.x"), "{refs:?}");
        assert!(references("{{ steps.a.output", false).is_err());
        assert!(
            references("steps.b.status == 'skipped'", true)
                .unwrap()
                .iter()
                .any(|r| r.starts_with("steps.b"))
        );
    }
}
