//! API fuzzing: schemathesis against the server's own `/openapi.json`, over
//! real HTTP on 127.0.0.1, with a tenant token, every operation, and the
//! checks `not_a_server_error`, `status_code_conformance`,
//! `content_type_conformance` and `response_schema_conformance`. Any 5xx,
//! any status or content type the document does not list, and any body
//! that does not match its schema fails this test, with schemathesis'
//! report (and the seed to replay it) in the message.
//!
//! The server holds a step, a workflow, a finished execution, a waiting
//! one, a schedule and a secret first, so the list operations answer with
//! real items and the stateful phase (the document's links from a created
//! execution to its operations) has something to follow.
//!
//! schemathesis comes from `scripts/install-tools` (run by `scripts/test`)
//! into `.tools/schemathesis`; when it is missing this test fails, it never
//! skips. `API_FUZZ_EXAMPLES` raises the examples per operation
//! (default 25) for a longer local run.

mod cli_support;

use std::path::Path;
use std::process::Command;

use cli_support::Server;

fn schemathesis() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/schemathesis/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is not installed at {}: run scripts/install-tools (scripts/test does)",
        bin.display()
    );
    bin
}

/// `PUT /v1/secrets/NAME` with a text body (the CLI has no secret verb).
fn put_secret(server: &Server, name: &str, value: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = runtime
        .block_on(
            reqwest::Client::new()
                .put(format!("{}/v1/secrets/{name}", server.url))
                .bearer_auth(&server.token)
                .header("content-type", "text/plain")
                .body(value.to_owned())
                .send(),
        )
        .unwrap();
    assert!(
        response.status().is_success(),
        "PUT /v1/secrets/{name}: {}",
        response.status()
    );
}

#[test]
fn the_api_conforms_to_its_openapi_document_under_schemathesis() {
    let bin = schemathesis();
    // Synchronous calls of the waiting workflow hand off after 2 s (at most
    // 5 s, whatever the generated `wait_for_seconds`), well inside the
    // request timeout.
    let server = Server::start_with(|c| {
        c.default_wait_seconds = 2;
        c.max_wait_seconds = 5;
    });
    let must = |args: &[&str]| {
        let out = server.cli(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out
    };
    must(&["step", "push", "echo", test_programs::ECHO]);
    let wf = server.path("wf.yaml");
    std::fs::write(&wf, "steps:\n  - id: first\n    step: echo\n").unwrap();
    must(&["workflow", "apply", "-f", &wf]);
    let gate = server.path("gate.yaml");
    std::fs::write(
        &gate,
        "steps:\n  - id: approval\n    wait:\n      signal: approved\n",
    )
    .unwrap();
    must(&["workflow", "apply", "-f", &gate]);
    must(&["exec", "run", "wf", "--input", r#"{"a": 1}"#]);
    must(&["exec", "start", "gate"]);
    must(&["schedule", "create", "wf", "--cron", "0 3 * * *"]);
    put_secret(&server, "api_key", "s3cret");

    let examples = std::env::var("API_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/schemathesis/hooks.py");
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(&bin)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            &examples,
            // One worker: with several threads, hypothesis' lambda
            // descriptions run `ast.parse` concurrently, which CPython 3.11
            // can fail with "AST constructor recursion depth mismatch".
            "--workers",
            "1",
            "--request-timeout",
            "30",
            // Warnings (operations that mostly answer 404 or 422 to random
            // input, admin operations a tenant token cannot use) are
            // expected; only failures count.
            "--warnings",
            "off",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", hooks.parent().unwrap())
        .current_dir(work.path())
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{report}",
        out.status
    );
    // It really ran every operation: the summary names how many.
    let operations = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no `Tested:` line in the report:\n{report}"));
    assert!(
        operations >= 33,
        "only {operations} operations tested:\n{report}"
    );
    eprintln!(
        "schemathesis: {operations} operations in {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        report
            .lines()
            .filter(|l| l.contains("generated") || l.contains("passed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
