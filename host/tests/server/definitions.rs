//! Workflow definition validation end to end: every invalid definition is
//! refused with a 422 problem whose `errors` name the JSON path of what is
//! wrong, and nothing is stored; a definition using every feature is
//! accepted, read back as written, and run.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Resp, Server, resp, start};

mod cases;

use cases::{Case, case, cases};

fn errors(r: &Resp) -> Vec<(String, String)> {
    r.body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or_default().to_owned(),
                        e["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `r` is the 422 problem `c` expects; the reason when it is not.
fn check(c: &Case, r: &Resp) -> Result<(), String> {
    if r.status != StatusCode::UNPROCESSABLE_ENTITY {
        return Err(format!("status {} instead of 422: {}", r.status, r.body));
    }
    if r.content_type != "application/problem+json" {
        return Err(format!("content type `{}`", r.content_type));
    }
    if r.body["status"] != 422 {
        return Err(format!("problem status: {}", r.body));
    }
    if r.body["detail"] != "the workflow definition is invalid" {
        return Err(format!("problem detail: {}", r.body));
    }
    let found = errors(r);
    if found
        .iter()
        .any(|(path, message)| path == c.path && message.contains(c.message))
    {
        Ok(())
    } else {
        Err(format!(
            "no error at `{}` containing `{}`; errors: {found:?}",
            c.path, c.message
        ))
    }
}

/// A tenant with `echo` and `hostile` registered.
async fn tenant(s: &Server) -> String {
    let t = s.tenant("acme").await;
    for (name, path) in [
        ("echo", test_programs::ECHO),
        ("hostile", test_programs::HOSTILE),
    ] {
        let r = s.push(&t, name, path).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_definition_is_a_422_naming_the_path() {
    let s = start().await;
    let t = tenant(&s).await;
    let cases = cases();
    assert!(cases.len() >= 24);
    let mut failures = Vec::new();
    for c in &cases {
        let r = s.workflow(&t, "wf", c.def.clone()).await;
        if let Err(why) = check(c, &r) {
            failures.push(format!("{}: {why}\n  definition: {}", c.what, c.def));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing was stored.
    let r = s
        .call(Method::GET, "/v1/workflows/wf", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let list = s.call(Method::GET, "/v1/workflows", Some(&t), None).await;
    assert_eq!(list.body["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_listed_not_only_the_first() {
    let s = start().await;
    let t = tenant(&s).await;
    // Shape problems are listed together (and stop validation)...
    let r = s
        .workflow(
            &t,
            "wf",
            json!({"steps": [{"id": "a"}, {"step": "echo", "extra": 1}], "bogus": true, "timeout": 5}),
        )
        .await;
    let paths: Vec<String> = errors(&r).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "$.bogus",
            "$.timeout",
            "$.steps[0].step",
            "$.steps[1].extra",
            "$.steps[1].id"
        ],
        "{:?}",
        r.body
    );
    // ...and so are meaning problems, sorted by path.
    let r = s
        .workflow(
            &t,
            "wf",
            json!({
                "id": "other",
                "timeout": "soon",
                "steps": [
                    {"id": "a", "step": "nope", "retry": {"max_attempts": 0, "jitter": 2}},
                    {"id": "b", "step": "echo", "needs": ["ghost"], "input": "{{ secrets.k }}",
                     "limits": {"memory": "1 parsec"}}
                ]
            }),
        )
        .await;
    let paths: Vec<String> = errors(&r).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "$.id",
            "$.steps[0].retry.jitter",
            "$.steps[0].retry.max_attempts",
            "$.steps[0].step",
            "$.steps[1].input",
            "$.steps[1].limits.memory",
            "$.steps[1].needs[0]",
            "$.timeout"
        ],
        "{:?}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_problems_have_paths_too() {
    let s = start().await;
    let t = tenant(&s).await;
    let put_yaml = |body: &'static str| {
        let req = s
            .client
            .put(format!("{}/v1/workflows/wf", s.url))
            .bearer_auth(&t)
            .header("content-type", "application/yaml")
            .body(body);
        async move { resp(req.send().await.unwrap()).await }
    };
    let r = put_yaml("steps: [{id: a, step: echo\n").await;
    let c = case("unparsable YAML", Value::Null, "$", "not valid YAML");
    check(&c, &r).unwrap();
    let r = put_yaml("steps:\n  - id: a\n    step: echo\n    limits:\n      timeout: 20m\n").await;
    let c = case(
        "YAML limit above the ceiling",
        Value::Null,
        "$.steps[0].limits.timeout",
        "above the server ceiling",
    );
    check(&c, &r).unwrap();
    let r = put_yaml("steps:\n  - id: a\n    step: echo\n    input: \"{{ nope }}\"\n").await;
    let c = case(
        "YAML unknown variable",
        Value::Null,
        "$.steps[0].input",
        "unknown variable `nope`",
    );
    check(&c, &r).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_using_every_feature_is_accepted_and_read_back() {
    let s = start().await;
    let t = tenant(&s).await;
    let echo = s.call(Method::GET, "/v1/steps/echo", Some(&t), None).await;
    let digest = echo.body["latest_digest"].as_str().unwrap().to_owned();
    let def = json!({
        "id": "everything",
        "description": "Uses every field of the definition format.",
        "input_schema": {
            "type": "object",
            "required": ["email", "n"],
            "properties": {"email": {"type": "string"}, "n": {"type": "integer", "minimum": 0}}
        },
        "timeout": "PT10M",
        "retry": {
            "max_attempts": 2,
            "backoff": "fixed",
            "initial_delay": "250ms",
            "max_delay": "1s",
            "jitter": 0.5,
            "retry_on": ["timed_out"]
        },
        "steps": [
            {
                "id": "first",
                "step": "echo",
                "input": {
                    "email": "{{ input.email }}",
                    "n": "{{ input.n + 1 }}",
                    "text": "run {{ execution.id }} at {{ execution.created_at }}",
                    "workflow": "{{ workflow.id }} v{{ workflow.version }}",
                    "plain": [1, true, null]
                }
            },
            {
                "id": "pinned",
                "step": format!("echo@{digest}"),
                "needs": [],
                "if": "input.n > 1",
                "limits": {"timeout": "5s", "fuel": 1_000_000_000u64, "memory": "64MiB"},
                "retry": {
                    "max_attempts": 5,
                    "backoff": "exponential",
                    "initial_delay": "1s",
                    "max_delay": "1m",
                    "jitter": 0.25,
                    "retry_on": ["timed_out", "fuel_exhausted", "memory_limit", "trapped",
                                 "stack_overflow", "invalid_output"]
                },
                "continue_on_error": true
            },
            {
                "id": "bytes",
                "step": "hostile",
                "needs": [],
                "input": {"op": "counter"},
                "limits": {"memory": 33_554_432u64, "timeout": "1m 30s"}
            },
            {
                "id": "join",
                "step": "hostile",
                "needs": ["first", "pinned", "bytes"],
                "if": "{{ steps.pinned.status == 'succeeded' or steps.pinned.skipped_reason }}",
                "input": {
                    "op": "leak",
                    "from_first": "{{ steps.first.output }}",
                    "pinned_error": "{{ steps.pinned.error }}",
                    "items": "{% for k in steps.first.output %}{{ k }},{% endfor %}"
                },
                "config": {
                    "key": "Bearer {{ secrets.API_TOKEN }}",
                    "mode": "strict",
                    "retries": 3,
                    "verbose": false,
                    "workflow": "{{ workflow.id }}"
                }
            },
            {"id": "last", "step": "echo"}
        ],
        "output": {
            "first": "{{ steps.first.output }}",
            "pinned": "{{ steps.pinned.status }}",
            "count": "{{ steps.bytes.output.calls }}",
            "run": "{{ execution.id }}"
        }
    });
    let r = s.workflow(&t, "everything", def.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["definition"], def);
    let got = s
        .call(Method::GET, "/v1/workflows/everything", Some(&t), None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.body["workflow_id"], "everything");
    assert_eq!(got.body["version"], 1);
    assert_eq!(got.body["definition"], def);

    // And it runs: every feature does what it says.
    let secret = "tok-8c1f";
    let r = s
        .client
        .put(format!("{}/v1/secrets/API_TOKEN", s.url))
        .bearer_auth(&t)
        .body(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=60",
            Some(&t),
            Some(json!({"workflow_id": "everything", "input_data": {"email": "ada@example.com", "n": 2}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = &r.body;
    assert_eq!(e["status"], "succeeded", "{e}");
    let id = e["execution_id"].as_str().unwrap();
    let created = e["created_at"].as_str().unwrap();
    let first = json!({
        "email": "ada@example.com",
        "n": 3,
        "text": format!("run {id} at {created}"),
        "workflow": "everything v1",
        "plain": [1, true, null]
    });
    assert_eq!(
        e["output"],
        json!({"first": first, "pinned": "succeeded", "count": 1, "run": id}),
        "{e}"
    );
    let step = |name: &str| {
        e["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == name)
            .unwrap()
            .clone()
    };
    // The pinned step ran the pinned digest; the join saw every output and
    // the secret only in its config, redacted wherever it came back.
    assert_eq!(step("pinned")["digest"], digest.as_str());
    assert_eq!(step("pinned")["status"], "succeeded");
    let join = step("join");
    assert_eq!(join["status"], "succeeded", "{join}");
    assert_eq!(join["output"], json!({"leaked": "Bearer [REDACTED]"}));
    assert_eq!(join["attempts"][0]["input"]["from_first"], first);
    assert_eq!(join["attempts"][0]["input"]["pinned_error"], Value::Null);
    assert!(!e.to_string().contains(secret), "the secret leaked: {e}");
    // `last` has no input: it gets the previous step's output.
    assert_eq!(
        step("last")["output"],
        json!({"leaked": "Bearer [REDACTED]"})
    );
}
