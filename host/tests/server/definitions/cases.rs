//! The invalid definitions, each with the path and message its 422 must
//! name.

use serde_json::{Value, json};

/// One invalid definition and the problem it must produce.
pub(super) struct Case {
    /// What the case is about, for failure messages.
    pub(super) what: &'static str,
    /// The body PUT to `/v1/workflows/wf`.
    pub(super) def: Value,
    /// The JSON path one entry of `errors` must have.
    pub(super) path: &'static str,
    /// A substring of that entry's `message` ("" for any).
    pub(super) message: &'static str,
}

pub(super) fn case(
    what: &'static str,
    def: Value,
    path: &'static str,
    message: &'static str,
) -> Case {
    Case {
        what,
        def,
        path,
        message,
    }
}

/// `{"steps": [step]}`, for cases about one step.
fn one(step: Value) -> Value {
    json!({ "steps": [step] })
}

/// A digest that no registered version has.
const UNKNOWN_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

pub(super) fn cases() -> Vec<Case> {
    let unknown_digest_step = format!("echo@{UNKNOWN_DIGEST}");
    vec![
        // Shape problems: found by `Definition::from_value`.
        case(
            "the body is not an object",
            json!([{"id": "a", "step": "echo"}]),
            "$",
            "must be an object",
        ),
        case(
            "unknown top-level field",
            json!({"steps": [{"id": "a", "step": "echo"}], "tasks": []}),
            "$.tasks",
            "unknown field `tasks`",
        ),
        case(
            "a step with neither `step` nor `wait`",
            one(json!({"id": "a"})),
            "$.steps[0].step",
            "missing field `step` (or `wait`",
        ),
        case(
            "a step with both `step` and `wait`",
            one(json!({"id": "a", "step": "echo", "wait": {"for": "1m"}})),
            "$.steps[0].wait",
            "either `step` or `wait`, not both",
        ),
        case(
            "a wait for two things",
            one(json!({"id": "a", "wait": {"for": "1m", "signal": "go"}})),
            "$.steps[0].wait",
            "exactly one of `for`, `until` and `signal`",
        ),
        case(
            "a wait for nothing",
            one(json!({"id": "a", "wait": {}})),
            "$.steps[0].wait",
            "exactly one of `for`, `until` and `signal`",
        ),
        case(
            "a wait for a bad duration",
            one(json!({"id": "a", "wait": {"for": "soon"}})),
            "$.steps[0].wait.for",
            "not a duration",
        ),
        case(
            "a signal timeout that is not a duration",
            one(json!({"id": "a", "wait": {"signal": "go", "timeout": "later"}})),
            "$.steps[0].wait.timeout",
            "not a duration",
        ),
        case(
            "a timeout on a wait for time",
            one(json!({"id": "a", "wait": {"for": "1m", "timeout": "1h"}})),
            "$.steps[0].wait.timeout",
            "applies only to a wait for a `signal`",
        ),
        case(
            "a bad signal name",
            one(json!({"id": "a", "wait": {"signal": "no spaces"}})),
            "$.steps[0].wait.signal",
            "not a valid signal name",
        ),
        case(
            "a signal schema that is not a schema",
            one(json!({"id": "a", "wait": {"signal": "go", "schema": {"type": 12}}})),
            "$.steps[0].wait.schema",
            "not a valid JSON Schema",
        ),
        case(
            "an unknown wait field",
            one(json!({"id": "a", "wait": {"for": "1m", "every": "1m"}})),
            "$.steps[0].wait.every",
            "unknown field `every`",
        ),
        case(
            "a wait step with limits",
            one(json!({"id": "a", "wait": {"for": "1m"}, "limits": {"fuel": 5}})),
            "$.steps[0].limits",
            "a wait step has no `limits`",
        ),
        case(
            "a wait until a template of a non-ancestor",
            json!({"steps": [
                {"id": "a", "wait": {"until": "{{ steps.b.output.at }}"}},
                {"id": "b", "step": "echo"}]}),
            "$.steps[0].wait.until",
            "not an ancestor",
        ),
        case(
            "unknown step field",
            one(json!({"id": "a", "step": "echo", "type": "io.kestra.Log"})),
            "$.steps[0].type",
            "unknown field `type`",
        ),
        case(
            "missing `steps`",
            json!({"description": "no steps"}),
            "$.steps",
            "missing field `steps`",
        ),
        case(
            "`steps` is not an array",
            json!({"steps": {"a": {"step": "echo"}}}),
            "$.steps",
            "must be an array",
        ),
        case(
            "a step is not an object",
            json!({"steps": ["echo"]}),
            "$.steps[0]",
            "must be an object",
        ),
        case(
            "missing step `id`",
            one(json!({"step": "echo"})),
            "$.steps[0].id",
            "missing field `id`",
        ),
        case(
            "step `id` is not a string",
            one(json!({"id": 7, "step": "echo"})),
            "$.steps[0].id",
            "must be a string",
        ),
        case(
            "missing `step`",
            json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b"}]}),
            "$.steps[1].step",
            "missing field `step`",
        ),
        case(
            "`needs` is not a list of ids",
            json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo", "needs": "a"}]}),
            "$.steps[1].needs",
            "invalid type",
        ),
        case(
            "`if` is not a string",
            one(json!({"id": "a", "step": "echo", "if": true})),
            "$.steps[0].if",
            "invalid type",
        ),
        case(
            "`continue_on_error` is not a boolean",
            one(json!({"id": "a", "step": "echo", "continue_on_error": "yes"})),
            "$.steps[0].continue_on_error",
            "invalid type",
        ),
        case(
            "`config` is not an object",
            one(json!({"id": "a", "step": "echo", "config": ["x"]})),
            "$.steps[0].config",
            "invalid type",
        ),
        case(
            "unknown field in `limits`",
            one(json!({"id": "a", "step": "echo", "limits": {"cpu": 2}})),
            "$.steps[0].limits.cpu",
            "unknown field `cpu`",
        ),
        case(
            "fuel is not a number",
            one(json!({"id": "a", "step": "echo", "limits": {"fuel": "lots"}})),
            "$.steps[0].limits.fuel",
            "invalid type",
        ),
        case(
            "negative max_attempts",
            one(json!({"id": "a", "step": "echo", "retry": {"max_attempts": -1}})),
            "$.steps[0].retry.max_attempts",
            "`-1` is out of range",
        ),
        case(
            "a needs entry that is not a string",
            one(json!({"id": "a", "step": "echo", "needs": [7]})),
            "$.steps[0].needs[0]",
            "expected a string",
        ),
        case(
            "unknown backoff",
            one(json!({"id": "a", "step": "echo", "retry": {"backoff": "linear"}})),
            "$.steps[0].retry.backoff",
            "unknown variant `linear`",
        ),
        case(
            "unknown `retry_on` outcome",
            one(json!({"id": "a", "step": "echo", "retry": {"retry_on": ["failed"]}})),
            "$.steps[0].retry.retry_on[0]",
            "unknown variant `failed`",
        ),
        case(
            "workflow `timeout` is a number",
            json!({"timeout": 30, "steps": [{"id": "a", "step": "echo"}]}),
            "$.timeout",
            "invalid type",
        ),
        case(
            "`input_schema` is not an object",
            json!({"input_schema": "object", "steps": [{"id": "a", "step": "echo"}]}),
            "$.input_schema",
            "must be a JSON Schema",
        ),
        // Meaning problems: found by `Definition::validate`.
        case(
            "`id` does not match the path",
            json!({"id": "other", "steps": [{"id": "a", "step": "echo"}]}),
            "$.id",
            "does not match the workflow id `wf`",
        ),
        case(
            "no steps",
            json!({"steps": []}),
            "$.steps",
            "at least one step",
        ),
        case(
            "duplicate step ids",
            json!({"steps": [{"id": "a", "step": "echo"}, {"id": "a", "step": "echo"}]}),
            "$.steps[1].id",
            "duplicate step id `a`",
        ),
        case(
            "invalid characters in a step id",
            one(json!({"id": "send email!", "step": "echo"})),
            "$.steps[0].id",
            "not a valid step id",
        ),
        case(
            "a step id that starts with `_`",
            one(json!({"id": "_a", "step": "echo"})),
            "$.steps[0].id",
            "not a valid step id",
        ),
        case(
            "invalid characters in a step name",
            one(json!({"id": "a", "step": "my step"})),
            "$.steps[0].step",
            "not a valid step name",
        ),
        case(
            "unregistered step",
            one(json!({"id": "a", "step": "nope"})),
            "$.steps[0].step",
            "no step named `nope` is registered",
        ),
        case(
            "pinned digest that is no version of the step",
            one(json!({"id": "a", "step": unknown_digest_step})),
            "$.steps[0].step",
            "has no version with digest",
        ),
        case(
            "malformed digest",
            one(json!({"id": "a", "step": "echo@sha256:abc"})),
            "$.steps[0].step",
            "is not a digest",
        ),
        case(
            "digest without its algorithm",
            one(json!({"id": "a", "step": format!("echo@{}", &UNKNOWN_DIGEST[7..])})),
            "$.steps[0].step",
            "is not a digest",
        ),
        case(
            "`needs` names an unknown step",
            json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo", "needs": ["a", "ghost"]}]}),
            "$.steps[1].needs[1]",
            "no step has the id `ghost`",
        ),
        case(
            "a step needs itself",
            one(json!({"id": "a", "step": "echo", "needs": ["a"]})),
            "$.steps[0].needs[0]",
            "cannot need itself",
        ),
        case(
            "a cycle a -> b -> a (at a)",
            json!({"steps": [
                {"id": "a", "step": "echo", "needs": ["b"]},
                {"id": "b", "step": "echo", "needs": ["a"]}]}),
            "$.steps[0].needs",
            "step `a` is part of a cycle",
        ),
        case(
            "a cycle a -> b -> a (at b)",
            json!({"steps": [
                {"id": "a", "step": "echo", "needs": ["b"]},
                {"id": "b", "step": "echo", "needs": ["a"]}]}),
            "$.steps[1].needs",
            "step `b` is part of a cycle",
        ),
        case(
            "a cycle through the implicit previous-step need",
            json!({"steps": [
                {"id": "a", "step": "echo", "needs": ["c"]},
                {"id": "b", "step": "echo"},
                {"id": "c", "step": "echo"}]}),
            "$.steps[2].needs",
            "step `c` is part of a cycle",
        ),
        case(
            "input refers to a step that is not an ancestor",
            json!({"steps": [
                {"id": "a", "step": "echo"},
                {"id": "b", "step": "echo", "needs": [], "input": {"x": "{{ steps.a.output }}"}}]}),
            "$.steps[1].input.x",
            "not an ancestor",
        ),
        case(
            "a subscripted reference to a step that is not an ancestor",
            json!({"steps": [
                {"id": "a-1", "step": "echo"},
                {"id": "b", "step": "echo", "needs": [], "input": "{{ steps['a-1'].output }}"}]}),
            "$.steps[1].input",
            "not an ancestor",
        ),
        case(
            "fuel of zero",
            one(json!({"id": "a", "step": "echo", "limits": {"fuel": 0}})),
            "$.steps[0].limits.fuel",
            "above zero",
        ),
        case(
            "input refers to a later step",
            json!({"steps": [
                {"id": "a", "step": "echo", "input": "{{ steps.b.output }}"},
                {"id": "b", "step": "echo"}]}),
            "$.steps[0].input",
            "not an ancestor",
        ),
        case(
            "a condition refers to its own step",
            one(json!({"id": "a", "step": "echo", "if": "steps.a.status == 'succeeded'"})),
            "$.steps[0].if",
            "not an ancestor",
        ),
        case(
            "input refers to an unknown step",
            one(json!({"id": "a", "step": "echo", "input": {"x": ["{{ steps.ghost.output }}"]}})),
            "$.steps[0].input.x[0]",
            "no step has that id",
        ),
        case(
            "output refers to an unknown step",
            json!({"steps": [{"id": "a", "step": "echo"}], "output": "{{ steps.ghost.output }}"}),
            "$.output",
            "no step has that id",
        ),
        case(
            "unparsable template in input",
            one(json!({"id": "a", "step": "echo", "input": {"to": "{{ input.email "}})),
            "$.steps[0].input.to",
            "does not parse",
        ),
        case(
            "unparsable block tag in input",
            one(json!({"id": "a", "step": "echo", "input": "{% for x in input.items %}{{ x }}"})),
            "$.steps[0].input",
            "does not parse",
        ),
        case(
            "unparsable bare condition",
            one(json!({"id": "a", "step": "echo", "if": "input.n >"})),
            "$.steps[0].if",
            "does not parse",
        ),
        case(
            "unparsable braced condition",
            one(json!({"id": "a", "step": "echo", "if": "{{ input.n == }}"})),
            "$.steps[0].if",
            "does not parse",
        ),
        case(
            "unparsable template in config",
            one(json!({"id": "a", "step": "echo", "config": {"url": "{{ input.url"}})),
            "$.steps[0].config.url",
            "does not parse",
        ),
        case(
            "unknown template variable",
            one(json!({"id": "a", "step": "echo", "input": {"x": "{{ inputs.x }}"}})),
            "$.steps[0].input.x",
            "unknown variable `inputs`",
        ),
        case(
            "Kestra-style `outputs` variable",
            json!({"steps": [{"id": "a", "step": "echo"}], "output": "{{ outputs.a.value }}"}),
            "$.output",
            "unknown variable `outputs`",
        ),
        case(
            "unknown variable in a condition",
            one(json!({"id": "a", "step": "echo", "if": "vars.enabled"})),
            "$.steps[0].if",
            "unknown variable `vars`",
        ),
        case(
            "a secret in `input`",
            one(json!({"id": "a", "step": "echo", "input": {"key": "{{ secrets.API_KEY }}"}})),
            "$.steps[0].input.key",
            "secrets may only be used in a step's `config`",
        ),
        case(
            "a secret in `if`",
            one(json!({"id": "a", "step": "echo", "if": "secrets.FLAG == 'on'"})),
            "$.steps[0].if",
            "secrets may only be used",
        ),
        case(
            "a secret in `output`",
            json!({"steps": [{"id": "a", "step": "echo"}], "output": {"k": "{{ secrets.API_KEY }}"}}),
            "$.output.k",
            "secrets may only be used",
        ),
        case(
            "config value that is an object",
            one(json!({"id": "a", "step": "echo", "config": {"headers": {"x": "y"}}})),
            "$.steps[0].config.headers",
            "must be a string, number or boolean",
        ),
        case(
            "config value that is null",
            one(json!({"id": "a", "step": "echo", "config": {"mode": null}})),
            "$.steps[0].config.mode",
            "must be a string, number or boolean",
        ),
        case(
            "fuel above the server ceiling",
            one(json!({"id": "a", "step": "echo", "limits": {"fuel": 100_000_000_001u64}})),
            "$.steps[0].limits.fuel",
            "above the server ceiling",
        ),
        case(
            "timeout above the server ceiling of 15 minutes",
            one(json!({"id": "a", "step": "echo", "limits": {"timeout": "16m"}})),
            "$.steps[0].limits.timeout",
            "above the server ceiling",
        ),
        case(
            "memory above the server ceiling of 1 GiB",
            one(json!({"id": "a", "step": "echo", "limits": {"memory": "2GiB"}})),
            "$.steps[0].limits.memory",
            "above the server ceiling",
        ),
        case(
            "memory in bytes above the server ceiling",
            one(json!({"id": "a", "step": "echo", "limits": {"memory": 1_073_741_825u64}})),
            "$.steps[0].limits.memory",
            "above the server ceiling",
        ),
        case(
            "bad duration in step limits",
            one(json!({"id": "a", "step": "echo", "limits": {"timeout": "soon"}})),
            "$.steps[0].limits.timeout",
            "is not a duration",
        ),
        case(
            "zero step timeout",
            one(json!({"id": "a", "step": "echo", "limits": {"timeout": "0s"}})),
            "$.steps[0].limits.timeout",
            "must be above zero",
        ),
        case(
            "bad memory size",
            one(json!({"id": "a", "step": "echo", "limits": {"memory": "64 parsecs"}})),
            "$.steps[0].limits.memory",
            "unknown size unit",
        ),
        case(
            "memory that is neither a size nor a count",
            one(json!({"id": "a", "step": "echo", "limits": {"memory": -1}})),
            "$.steps[0].limits.memory",
            "is not a size",
        ),
        case(
            "retry with max_attempts 0",
            one(json!({"id": "a", "step": "echo", "retry": {"max_attempts": 0}})),
            "$.steps[0].retry.max_attempts",
            "must be from 1 to 100",
        ),
        case(
            "workflow retry with too many attempts",
            json!({"retry": {"max_attempts": 101}, "steps": [{"id": "a", "step": "echo"}]}),
            "$.retry.max_attempts",
            "must be from 1 to 100",
        ),
        case(
            "retry with a bad initial_delay",
            one(
                json!({"id": "a", "step": "echo", "retry": {"max_attempts": 3, "initial_delay": "a bit"}}),
            ),
            "$.steps[0].retry.initial_delay",
            "is not a duration",
        ),
        case(
            "retry with a bad max_delay",
            json!({"retry": {"max_delay": "forever"}, "steps": [{"id": "a", "step": "echo"}]}),
            "$.retry.max_delay",
            "is not a duration",
        ),
        case(
            "jitter above 1",
            one(json!({"id": "a", "step": "echo", "retry": {"jitter": 1.5}})),
            "$.steps[0].retry.jitter",
            "fraction from 0 to 1",
        ),
        case(
            "negative jitter",
            one(json!({"id": "a", "step": "echo", "retry": {"jitter": -0.1}})),
            "$.steps[0].retry.jitter",
            "fraction from 0 to 1",
        ),
        case(
            "bad workflow timeout",
            json!({"timeout": "1 fortnight", "steps": [{"id": "a", "step": "echo"}]}),
            "$.timeout",
            "is not a duration",
        ),
        case(
            "negative workflow timeout",
            json!({"timeout": "-5m", "steps": [{"id": "a", "step": "echo"}]}),
            "$.timeout",
            "is negative",
        ),
        case(
            "zero workflow timeout",
            json!({"timeout": "PT0S", "steps": [{"id": "a", "step": "echo"}]}),
            "$.timeout",
            "must be above zero",
        ),
        case(
            "malformed input_schema",
            json!({"input_schema": {"type": "no-such-type"}, "steps": [{"id": "a", "step": "echo"}]}),
            "$.input_schema.type",
            "not a valid JSON Schema",
        ),
        case(
            "malformed nested input_schema",
            json!({"input_schema": {"type": "object", "properties": {"n": {"minimum": "one"}}},
                   "steps": [{"id": "a", "step": "echo"}]}),
            "$.input_schema.properties.n.minimum",
            "not a valid JSON Schema",
        ),
    ]
}
