//! The seed corpora, generated from the test suite's own fixtures: the
//! invalid definitions of `host/tests/server/definitions/cases.rs` (as
//! JSON and as YAML), the definitions in docs/workflows.md, the templates
//! inside all of them, the hostile corpus of `host/tests/hostile/cases.rs`
//! (Rust and WAT components), the built test programs, and one request
//! per operation of the server's own OpenAPI document. A few hand-written
//! seeds fill in what the fixtures lack (durations, cron expressions in
//! zones with daylight-saving time).
//!
//! `examples/seeds.rs` writes them to a directory for `scripts/fuzz`;
//! `tests/regressions.rs` runs every one through its target.

#![allow(dead_code)]

use serde_json::{Value, json};

#[path = "../../../host/tests/server/definitions/cases.rs"]
mod definition_cases;

#[path = "../../../host/tests/hostile/cases.rs"]
mod hostile;

/// One seed: its target, a file name, and its bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

/// Components larger than this are left out of the `component` corpus:
/// libFuzzer mutates and re-runs its inputs thousands of times, and the
/// largest fixtures (a 2 MiB function body, 100,001 functions, the
/// template step's 1.3 MiB) take seconds each to compile or refuse, which
/// smaller inputs reach as well (10,000 functions in 72 KiB).
const MAX_COMPONENT_SEED: usize = 400 << 10;

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let definitions = definitions();
    for (i, def) in definitions.iter().enumerate() {
        seeds.push(seed(
            "definition",
            format!("def-{i:03}.json"),
            serde_json::to_vec_pretty(def).unwrap(),
        ));
        seeds.push(seed(
            "definition",
            format!("def-{i:03}.yaml"),
            serde_yaml_ng::to_string(def).unwrap().into_bytes(),
        ));
    }
    for (i, text) in templates(&definitions).into_iter().enumerate() {
        seeds.push(seed("template", format!("tpl-{i:03}"), text.into_bytes()));
    }
    for (i, text) in durations(&definitions).into_iter().enumerate() {
        seeds.push(seed("duration", format!("dur-{i:03}"), text.into_bytes()));
    }
    for (i, text) in CRONS.iter().enumerate() {
        seeds.push(seed(
            "cron",
            format!("cron-{i:03}"),
            text.as_bytes().to_vec(),
        ));
    }
    for (name, bytes) in components() {
        seeds.push(seed("component", name, bytes));
    }
    for (i, text) in requests(&definitions).into_iter().enumerate() {
        seeds.push(seed("request", format!("req-{i:03}"), text.into_bytes()));
    }
    seeds
}

fn seed(target: &'static str, name: String, data: Vec<u8>) -> Seed {
    Seed { target, name, data }
}

/// The definitions of the fixtures: every invalid case, and every JSON or
/// YAML block of docs/workflows.md that is a definition.
fn definitions() -> Vec<Value> {
    let mut out: Vec<Value> = definition_cases::cases()
        .into_iter()
        .map(|c| c.def)
        .collect();
    let doc = include_str!("../../../docs/workflows.md");
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let yaml = match line.trim() {
            "```json" => false,
            "```yaml" => true,
            _ => continue,
        };
        let block: String = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        let value: Option<Value> = if yaml {
            serde_yaml_ng::from_str(&block).ok()
        } else {
            serde_json::from_str(&block).ok()
        };
        if let Some(v) = value.filter(|v| v.get("steps").is_some()) {
            out.push(v);
        }
    }
    out
}

/// Every template string in the definitions, and a few that exercise the
/// language's loops, filters and bounds.
fn templates(definitions: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for def in definitions {
        stephost::engine::template::strings_in(def, "$", &mut found);
    }
    let mut out: Vec<String> = found.into_iter().map(|(_, s)| s.to_owned()).collect();
    out.extend(
        [
            "{{ input.items | length }}",
            "{{ input.n > 1 and input.name == 'ada' }}",
            "input.n > 1",
            "{{ steps.a.output.list | sort | join(',') }}",
            "{% for i in range(10) %}{{ i }},{% endfor %}",
            "{{ 'x' * 1000 }}",
            "{{ input.nested.a.b[0] | tojson }}",
            "{{ dict(a=1, b=[input.n]) }}",
            "{% set ns = namespace(n=0) %}{% for x in input.items %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
            "{{ steps['a'].output.text | upper }}",
            "{{ execution.id ~ '-' ~ workflow.version }}",
            "{{ missing.value }}",
            "{% if input.n %}yes{% else %}no{% endif %}",
            "{{ input.items[1:3] }}",
            "{{- input.name -}}",
        ]
        .map(str::to_owned),
    );
    out.sort();
    out.dedup();
    out
}

/// Durations and sizes: the definitions' `timeout`s and a hand-written
/// list of every form the parsers take and some they refuse.
fn durations(definitions: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = definitions
        .iter()
        .filter_map(|d| d.get("timeout").and_then(Value::as_str).map(str::to_owned))
        .collect();
    out.extend(
        [
            "30s",
            "5m",
            "1h 30m",
            "250ms",
            "7d",
            "2w",
            "PT1H",
            "P1D",
            "PT0.5S",
            "1 month",
            "-5s",
            "64MiB",
            "1.5GiB",
            "100",
            "10 KB",
            "0",
            "\"32MiB\"",
            "1048576",
        ]
        .map(str::to_owned),
    );
    out.sort();
    out.dedup();
    out
}

/// Cron expressions, each with its zone on the second line: the forms
/// docs/schedules.md describes, and zones with daylight-saving gaps and
/// repeats.
const CRONS: &[&str] = &[
    "0 2 * * *\nEurope/Berlin",
    "*/5 * * * *\nUTC",
    "0 9 * * MON-FRI\nAmerica/New_York",
    "30 2 * * *\nAmerica/New_York",
    "0 0 L * *\nUTC",
    "0 0 * * 5#3\nUTC",
    "0 0 15W * *\nUTC",
    "@daily\nAsia/Kolkata",
    "@hourly\nAustralia/Lord_Howe",
    "*/10 * * * * *\nUTC",
    "0 0 29 2 *\nPacific/Apia",
    "0 0 30 2 *\nUTC",
    "0 1-3 * 3,10 SUN\nEurope/London",
];

/// The test programs and the hostile corpus's Rust and WAT components, up
/// to [`MAX_COMPONENT_SEED`] bytes each.
fn components() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, path) in [
        ("echo", test_programs::ECHO),
        ("hostile", test_programs::HOSTILE),
        ("wrong-world", test_programs::WRONG_WORLD),
        ("step-reshape", test_programs::STEP_RESHAPE),
        ("step-hmac-sign", test_programs::STEP_HMAC_SIGN),
        ("step-render-template", test_programs::STEP_RENDER_TEMPLATE),
    ] {
        let bytes = test_programs::read(path);
        if bytes.len() <= MAX_COMPONENT_SEED {
            out.push((format!("{name}.wasm"), bytes));
        }
    }
    for case in hostile::CASES {
        if let hostile::Guest::Wat(_) = case.guest {
            let bytes = hostile::bytes(case.guest);
            if bytes.len() <= MAX_COMPONENT_SEED {
                out.push((format!("{}.wasm", case.name), bytes));
            }
        }
    }
    // A core module, where a component is expected.
    out.push((
        "core-module.wasm".into(),
        wat::parse_str("(module (func (export \"run\")))").unwrap(),
    ));
    out.push((
        "empty-component.wasm".into(),
        wat::parse_str("(component)").unwrap(),
    ));
    out
}

/// One request per operation of the OpenAPI document (path parameters
/// filled in, a JSON body where the operation takes one), and the bodies
/// the extractors must refuse clearly: a definition as JSON and as YAML,
/// malformed JSON, a wrong content type, bad query values, no token.
fn requests(definitions: &[Value]) -> Vec<String> {
    let doc = stephost_fuzz::request::openapi();
    let mut out = Vec::new();
    let paths = doc["paths"].as_object().expect("the document has paths");
    for (path, item) in paths {
        let filled = fill(path);
        for method in ["get", "put", "post", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let m = method.to_uppercase();
            if op.get("requestBody").is_some() {
                let body = body_for(path, method);
                out.push(format!(
                    "{m} {filled}\ncontent-type: application/json\n\n{body}"
                ));
                out.push(format!(
                    "{m} {filled}\ncontent-type: application/json\n\n{{\"unterminated\": "
                ));
                out.push(format!("{m} {filled}\ncontent-type: text/csv\n\na,b\n"));
            } else {
                out.push(format!("{m} {filled}"));
            }
        }
    }
    if let Some(def) = definitions.last() {
        out.push(format!(
            "PUT /v1/workflows/wf\ncontent-type: application/yaml\n\n{}",
            serde_yaml_ng::to_string(def).unwrap()
        ));
        out.push(format!(
            "PUT /v1/workflows/wf\ncontent-type: application/json\n\n{def}"
        ));
    }
    out.extend(
        [
            "GET /v1/executions?limit=abc",
            "GET /v1/executions?limit=0&cursor=%ff",
            "GET /v1/executions/exe_0?wait=-1",
            "GET /v1/audit?cursor=aud_x",
            "GET /v1/workflows\nauthorization: Bearer sht_unknown",
            "GET /v1/tenants\nauthorization: admin",
            "GET /v1/tenants\nauthorization: Basic Zm9vOmJhcg==",
            "DELETE /v1/nothing/here",
            "PATCH /v1/workflows",
            "POST /v1/executions\ncontent-type: application/json\n\n[1, 2, 3]",
            "POST /v1/executions\ncontent-type: application/json\ncontent-length: 5\n\n{}",
        ]
        .map(str::to_owned),
    );
    out
}

/// A path of the document with its parameters given plausible values.
fn fill(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let name = &rest[open + 1..close];
        out.push_str(match name {
            "tenant" => "fuzz",
            "id" | "execution_id" => "exe_00000000000000000000000000",
            "name" => "echo",
            "workflow_id" => "wf",
            "schedule_id" => "nightly",
            "token_id" => "tok_0",
            _ => "x",
        });
        rest = &rest[(close + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// A plausible JSON body for an operation.
fn body_for(path: &str, method: &str) -> Value {
    match (path, method) {
        (p, "put") if p.starts_with("/v1/workflows") => {
            json!({"steps": [{"id": "a", "step": "echo"}]})
        }
        (p, _) if p.starts_with("/v1/executions") => {
            json!({"workflow_id": "wf", "input": {"n": 1}})
        }
        (p, _) if p.starts_with("/v1/schedules") => json!({
            "schedule_id": "nightly", "workflow_id": "wf", "cron": "0 2 * * *", "timezone": "Europe/Berlin"
        }),
        (p, _) if p.starts_with("/v1/tenants") => json!({"name": "other"}),
        _ => json!({}),
    }
}
