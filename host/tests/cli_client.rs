//! The client commands (`step push`, `workflow …`, `exec …`) run as the real
//! binary against the real server, started in-process on `127.0.0.1:0`.

use std::path::Path;

use serde_json::{Value, json};

mod cli_support;

use cli_support::{Server, stephost};

fn write(path: &str, text: &str) {
    std::fs::write(Path::new(path), text).expect("write a test file");
}

#[test]
fn the_client_drives_steps_workflows_and_executions() {
    let server = Server::start();

    let pushed = server.cli(&["step", "push", "echo", test_programs::ECHO]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    assert!(pushed.stdout.contains("echo"), "{}", pushed.stdout);
    assert!(pushed.stdout.contains("sha256:"), "{}", pushed.stdout);
    assert!(pushed.stdout.contains("new version"), "{}", pushed.stdout);

    let wf = server.path("wf.yaml");
    write(
        &wf,
        "description: echoes twice\nsteps:\n  - id: first\n    step: echo\n  - id: second\n    step: echo\n",
    );
    let applied = server.cli(&["workflow", "apply", "-f", &wf]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(applied.stdout.trim(), "workflow wf version 1 (created)");
    let again = server.cli(&["workflow", "apply", "-f", &wf]);
    assert_eq!(
        again.stdout.trim(),
        "workflow wf version 1 (unchanged)",
        "{}",
        again.stderr
    );
    let listed = server.cli(&["workflow", "list"]);
    assert!(listed.stdout.contains("wf "), "{}", listed.stdout);
    let shown = server.cli(&["workflow", "get", "wf"]);
    assert!(shown.stdout.contains("echoes twice"), "{}", shown.stdout);
    assert!(shown.stdout.contains("second"), "{}", shown.stdout);

    let ran = server
        .cli(&["exec", "run", "wf", "--input", r#"{"a":1}"#, "--json"])
        .json();
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert_eq!(ran["output"], json!({"a": 1}));
    let first_id = ran["execution_id"]
        .as_str()
        .expect("execution id")
        .to_owned();

    let started = server.cli(&["exec", "start", "wf", "--input", r#"{"b":2}"#]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let second_id = started.stdout.trim().to_owned();
    assert!(started.stderr.contains("exec get"), "{}", started.stderr);
    let got = server
        .cli(&["exec", "get", &second_id, "--wait", "10", "--json"])
        .json();
    assert_eq!(got["status"], "succeeded", "{got}");
    assert_eq!(got["output"], json!({"b": 2}));

    let page = server.cli(&["exec", "list", "--json"]).json();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["execution_id"].as_str())
        .collect();
    assert!(
        ids.contains(&first_id.as_str()) && ids.contains(&second_id.as_str()),
        "{page}"
    );
    let table = server.cli(&["exec", "list", "--workflow", "wf", "--status", "succeeded"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains(&first_id) && table.stdout.contains(&second_id));

    let summary = server.cli(&["exec", "get", &first_id]);
    assert_eq!(summary.code, 0, "{}", summary.stderr);
    for expected in [
        "succeeded",
        "wf@1",
        r#"{"a":1}"#,
        "first",
        "second",
        "LAST OUTCOME",
    ] {
        assert!(
            summary.stdout.contains(expected),
            "{expected}: {}",
            summary.stdout
        );
    }

    let cancelled = server.cli(&["exec", "cancel", &first_id]);
    assert_eq!(cancelled.code, 1, "{}", cancelled.stdout);
    assert!(
        cancelled.stderr.contains("409 Conflict"),
        "{}",
        cancelled.stderr
    );
    assert!(
        cancelled
            .stderr
            .contains("already finished with status succeeded"),
        "{}",
        cancelled.stderr
    );

    // A wait step takes a signal sent from the command line.
    let gate = server.path("gate.yaml");
    write(
        &gate,
        "steps:\n  - id: gate\n    wait:\n      signal: go\n      schema: {type: object, required: [ok]}\n",
    );
    assert_eq!(server.cli(&["workflow", "apply", "-f", &gate]).code, 0);
    let waiting = server.cli(&["exec", "start", "gate"]);
    let gate_id = waiting.stdout.trim().to_owned();
    let refused = server.cli(&["exec", "signal", &gate_id, "go", "--payload", "{}"]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("422"), "{}", refused.stderr);
    let sent = server.cli(&[
        "exec",
        "signal",
        &gate_id,
        "go",
        "--payload",
        r#"{"ok":true}"#,
        "--idempotency-key",
        "once",
    ]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert!(
        sent.stdout.starts_with("signal go stored as #"),
        "{}",
        sent.stdout
    );
    let done = server
        .cli(&["exec", "get", &gate_id, "--wait", "10", "--json"])
        .json();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"ok": true}));

    // Pause and resume from the command line: a paused wait for an hour,
    // resumed (still waiting), resumed again (the wait ends now).
    let nap = server.path("nap.yaml");
    write(&nap, "steps:\n  - id: nap\n    wait:\n      for: 1h\n");
    assert_eq!(server.cli(&["workflow", "apply", "-f", &nap]).code, 0);
    let nap_id = server
        .cli(&["exec", "start", "nap"])
        .stdout
        .trim()
        .to_owned();
    let waiting = server.cli(&["exec", "get", &nap_id, "--json"]).json();
    assert!(
        ["queued", "running", "waiting"].contains(&waiting["status"].as_str().unwrap()),
        "{waiting}"
    );
    let paused = server.cli(&["exec", "pause", &nap_id, "--json"]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    assert_eq!(paused.json()["status"], "paused");
    let again = server.cli(&["exec", "pause", &nap_id]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("409") && again.stderr.contains("already paused"),
        "{}",
        again.stderr
    );
    let resumed = server.cli(&["exec", "resume", &nap_id, "--json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let resumed = server.cli(&["exec", "resume", &nap_id]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let done = server
        .cli(&["exec", "get", &nap_id, "--wait", "10", "--json"])
        .json();
    assert_eq!(done["status"], "succeeded", "{done}");
    let reasons: Vec<&Value> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["reason"] == "resume")
        .collect();
    assert_eq!(reasons.len(), 2, "{done}");

    // A postponed start, by delay or by time.
    for args in [["--delay", "2h"], ["--at", "2099-01-01T09:00:00Z"]] {
        let started = server.cli(&["exec", "start", "nap", args[0], args[1]]);
        assert_eq!(started.code, 0, "{}", started.stderr);
        assert!(started.stderr.contains("(scheduled)"), "{}", started.stderr);
        let id = started.stdout.trim().to_owned();
        let e = server.cli(&["exec", "get", &id, "--json"]).json();
        assert_eq!(e["status"], "scheduled", "{e}");
        let cancelled = server.cli(&["exec", "cancel", &id, "--json"]);
        assert_eq!(cancelled.json()["status"], "cancelled");
    }
    let e = server.cli(&["exec", "get", &nap_id, "--json"]).json();
    assert_eq!(e["scheduled_for"], Value::Null, "{e}");
    let bad = server.cli(&["exec", "start", "nap", "--at", "tomorrow"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let both = server.cli(&[
        "exec",
        "start",
        "nap",
        "--at",
        "2099-01-01T09:00:00Z",
        "--delay",
        "1h",
    ]);
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );

    let denied = stephost(
        &["exec", "list"],
        &[
            ("STEPHOST_URL", &server.url),
            ("STEPHOST_TOKEN", "sh_not-a-token"),
        ],
    );
    assert_eq!(denied.code, 1);
    assert!(
        denied.stderr.contains("401 Unauthorized: unknown token"),
        "{}",
        denied.stderr
    );
    let anonymous = stephost(&["exec", "list"], &[("STEPHOST_URL", &server.url)]);
    assert_eq!(anonymous.code, 1);
    assert!(
        anonymous.stderr.contains("hint: pass --token"),
        "{}",
        anonymous.stderr
    );
}

#[test]
fn failures_exit_non_zero_with_the_server_s_reasons() {
    let server = Server::start();
    let pushed = server.cli(&["step", "push", "hostile", test_programs::HOSTILE]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);

    let bad = server.path("bad.json");
    write(&bad, r#"{"steps":[{"id":"only","step":"missing"}]}"#);
    let refused = server.cli(&["workflow", "apply", "-f", &bad]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("422"), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("$.steps[0].step: no step named `missing` is registered"),
        "{}",
        refused.stderr
    );

    let wf = server.path("flaky.json");
    write(
        &wf,
        r#"{"id":"risky","steps":[{"id":"only","step":"hostile"}]}"#,
    );
    let applied = server.cli(&["workflow", "apply", "-f", &wf]);
    assert_eq!(
        applied.stdout.trim(),
        "workflow risky version 1 (created)",
        "{}",
        applied.stderr
    );

    let failed = server.cli(&[
        "exec",
        "run",
        "risky",
        "--input",
        r#"{"op":"fatal","text":"nope"}"#,
    ]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.stdout.contains("failed"), "{}", failed.stdout);
    assert!(
        failed.stdout.contains("[bad_input] nope"),
        "{}",
        failed.stdout
    );

    let missing = server.cli(&["exec", "run", "nothing-here"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("404 Not Found: workflow `nothing-here` not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn an_unreachable_server_is_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = stephost(&["exec", "list", "--server", &url], &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("cannot reach the server at {url}/")),
        "{}",
        out.stderr
    );
}

#[test]
fn the_client_drives_schedules() {
    let server = Server::start();
    assert_eq!(
        server
            .cli(&["step", "push", "echo", test_programs::ECHO])
            .code,
        0
    );
    let wf = server.path("yearly.json");
    write(
        &wf,
        r#"{"id":"report","steps":[{"id":"only","step":"echo"}]}"#,
    );
    assert_eq!(server.cli(&["workflow", "apply", "-f", &wf]).code, 0);

    let made = server.cli(&[
        "schedule",
        "create",
        "report",
        "--cron",
        "0 0 1 1 *",
        "--timezone",
        "Europe/Berlin",
        "--id",
        "new-year",
        "--input",
        r#"{"a":1}"#,
    ]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert!(
        made.stdout.contains("schedule   new-year"),
        "{}",
        made.stdout
    );
    assert!(made.stdout.contains("state      active"), "{}", made.stdout);
    // Midnight on 1 January in Berlin is 23:00 UTC the day before.
    let next = made
        .stdout
        .lines()
        .find(|l| l.starts_with("next"))
        .expect("a next tick");
    assert!(next.ends_with("-12-31T23:00:00Z"), "{}", made.stdout);

    let table = server.cli(&["schedule", "list"]);
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains("new-year"), "{}", table.stdout);
    let none = server
        .cli(&["schedule", "list", "--state", "paused", "--json"])
        .json();
    assert_eq!(none["items"], json!([]));

    let paused = server.cli(&["schedule", "pause", "new-year"]);
    assert!(
        paused.stdout.contains("state      paused"),
        "{}",
        paused.stdout
    );
    let resumed = server.cli(&["schedule", "resume", "new-year"]);
    assert!(
        resumed.stdout.contains("state      active"),
        "{}",
        resumed.stdout
    );

    let triggered = server.cli(&["schedule", "trigger", "new-year"]);
    assert_eq!(triggered.code, 0, "{}", triggered.stderr);
    let id = triggered.stdout.trim().to_owned();
    let got = server
        .cli(&["exec", "get", &id, "--wait", "10", "--json"])
        .json();
    assert_eq!(got["status"], "succeeded", "{got}");
    assert_eq!(got["schedule_id"], "new-year");
    assert_eq!(got["output"], json!({"a": 1}));
    let page = server
        .cli(&["exec", "list", "--schedule", "new-year", "--json"])
        .json();
    assert_eq!(page["items"][0]["execution_id"], id.as_str(), "{page}");
    let shown = server.cli(&["schedule", "get", "new-year"]);
    assert!(
        shown.stdout.contains("fired 1, skipped 0, missed 0"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains(&id), "{}", shown.stdout);
    assert!(shown.stdout.contains("trigger"), "{}", shown.stdout);

    let refused = server.cli(&["schedule", "create", "report", "--cron", "soon"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("$.cron"), "{}", refused.stderr);

    assert_eq!(server.cli(&["schedule", "delete", "new-year"]).code, 0);
    let gone = server.cli(&["schedule", "get", "new-year"]);
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains("schedule `new-year` not found"),
        "{}",
        gone.stderr
    );
}

#[test]
fn tenants_and_tokens_are_made_over_the_api_and_never_in_a_new_database() {
    let server = Server::start();
    let admin = |args: &[&str]| {
        stephost(
            args,
            &[
                ("STEPHOST_URL", &server.url),
                ("STEPHOST_TOKEN", cli_support::ADMIN),
            ],
        )
    };
    let made = admin(&["tenant", "create", "beta"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert!(
        made.stderr.contains("created tenant beta"),
        "{}",
        made.stderr
    );
    let beta = made.stdout.trim().to_owned();
    let as_beta = |args: &[&str]| {
        stephost(
            args,
            &[("STEPHOST_URL", &server.url), ("STEPHOST_TOKEN", &beta)],
        )
    };
    assert_eq!(as_beta(&["workflow", "list"]).code, 0, "the token works");

    // A tenant makes a read-only token for itself; it reads and cannot
    // write.
    let made = as_beta(&[
        "token",
        "create",
        "--tenant",
        "beta",
        "--name",
        "viewer",
        "--scope",
        "read",
        "--expires-in",
        "1h",
    ]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let viewer = made.stdout.trim().to_owned();
    let token_id = made
        .stderr
        .split_whitespace()
        .find(|w| w.starts_with("tok_"))
        .map(|w| w.trim_end_matches(';').to_owned())
        .unwrap_or_else(|| panic!("no token id in {}", made.stderr));
    let with_viewer = |args: &[&str]| {
        stephost(
            args,
            &[("STEPHOST_URL", &server.url), ("STEPHOST_TOKEN", &viewer)],
        )
    };
    assert_eq!(with_viewer(&["workflow", "list"]).code, 0);
    let refused = with_viewer(&["step", "push", "echo", test_programs::ECHO]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("scopes [read]"),
        "{}",
        refused.stderr
    );

    let listed = admin(&["token", "list", "--tenant", "beta"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains(&token_id), "{}", listed.stdout);
    assert!(listed.stdout.contains("viewer"), "{}", listed.stdout);
    assert!(
        !listed.stdout.contains(&viewer),
        "a secret in {}",
        listed.stdout
    );
    let json = admin(&["token", "list", "--tenant", "beta", "--json"]).json();
    assert_eq!(json["items"].as_array().unwrap().len(), 2, "{json}");

    let revoked = as_beta(&["token", "revoke", &token_id, "--tenant", "beta"]);
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    let refused = with_viewer(&["workflow", "list"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("revoked"), "{}", refused.stderr);

    // Admin tokens; a tenant token cannot make one.
    let ops = admin(&["token", "create", "--admin", "--name", "ops"]);
    assert_eq!(ops.code, 0, "{}", ops.stderr);
    let refused = as_beta(&["token", "create", "--admin"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let listed = admin(&["token", "list", "--admin"]);
    assert!(listed.stdout.contains("ops"), "{}", listed.stdout);
    let neither = admin(&["token", "list"]);
    assert_eq!(neither.code, 2, "clap refuses a missing --tenant/--admin");

    // A client verb never creates a database: without a server it fails,
    // and with --data-dir it needs the database to be there already.
    let cwd = tempfile::tempdir().unwrap();
    let run_in = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stephost"))
            .args(args)
            .env_remove("STEPHOST_URL")
            .env_remove("STEPHOST_TOKEN")
            .envs(env.iter().copied())
            .current_dir(cwd.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run_in(
        &["tenant", "create", "gamma"],
        &[("STEPHOST_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    let (code, stderr) = run_in(&["tenant", "create", "gamma", "--data-dir", "fresh"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no stephost database"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "the client wrote {left:?}");
}

#[test]
fn the_admin_lists_shows_suspends_unsuspends_and_deletes_tenants() {
    let server = Server::start();
    let env = [
        ("STEPHOST_URL", server.url.as_str()),
        ("STEPHOST_TOKEN", cli_support::ADMIN),
    ];
    let admin = |args: &[&str]| stephost(args, &env);
    let made = admin(&["tenant", "create", "beta"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let beta = made.stdout.trim().to_owned();
    let as_beta = |args: &[&str]| {
        stephost(
            args,
            &[("STEPHOST_URL", &server.url), ("STEPHOST_TOKEN", &beta)],
        )
    };

    let listed = admin(&["tenant", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.starts_with("ID"), "{}", listed.stdout);
    assert!(listed.stdout.contains("beta"), "{}", listed.stdout);
    let page = admin(&["tenant", "list", "--limit", "1", "--json"]).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let shown = admin(&["tenant", "get", "beta"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("no (active)"), "{}", shown.stdout);
    assert_eq!(
        as_beta(&["tenant", "get", "beta"]).code,
        0,
        "a tenant sees itself"
    );

    let suspended = admin(&["tenant", "suspend", "beta", "--json"]).json();
    assert!(suspended["suspended_at"].is_string(), "{suspended}");
    let refused = as_beta(&["workflow", "list"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("suspended"), "{}", refused.stderr);
    let unsuspended = admin(&["tenant", "unsuspend", "beta"]);
    assert_eq!(unsuspended.code, 0, "{}", unsuspended.stderr);
    assert!(
        unsuspended.stdout.contains("no (active)"),
        "{}",
        unsuspended.stdout
    );
    assert_eq!(
        as_beta(&["workflow", "list"]).code,
        0,
        "the token works again"
    );

    let unconfirmed = admin(&["tenant", "delete", "beta"]);
    assert_eq!(unconfirmed.code, 1);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(
        as_beta(&["workflow", "list"]).code,
        0,
        "nothing was deleted"
    );
    let refused = as_beta(&["tenant", "delete", "beta", "--yes"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("admin token"), "{}", refused.stderr);
    let deleted = admin(&["tenant", "delete", "beta", "--yes"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(
        deleted.stderr.contains("deleted tenant beta"),
        "{}",
        deleted.stderr
    );
    let gone = admin(&["tenant", "get", "beta"]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("404"), "{}", gone.stderr);
    assert!(
        as_beta(&["workflow", "list"])
            .stderr
            .contains("unknown token")
    );
}

#[test]
fn the_admin_sets_quotas_and_a_tenant_reads_its_own() {
    let server = Server::start();
    let env = [
        ("STEPHOST_URL", server.url.as_str()),
        ("STEPHOST_TOKEN", cli_support::ADMIN),
    ];
    let admin = |args: &[&str]| stephost(args, &env);
    let made = admin(&["tenant", "create", "beta"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let beta = made.stdout.trim().to_owned();
    let as_beta = |args: &[&str]| {
        stephost(
            args,
            &[("STEPHOST_URL", &server.url), ("STEPHOST_TOKEN", &beta)],
        )
    };
    let set = admin(&[
        "quota",
        "set",
        "beta",
        "max_steps=1",
        "submissions_per_second=2.5",
    ]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert!(set.stdout.starts_with("LIMIT"), "{}", set.stdout);
    let json = admin(&["quota", "get", "beta", "--json"]).json();
    assert_eq!(json["limits"]["max_steps"], 1, "{json}");
    assert_eq!(json["limits"]["submissions_per_second"], 2.5, "{json}");
    assert_eq!(json["limits"]["max_workflows"], 1000, "the default: {json}");
    // A second set keeps what the first set.
    let set = admin(&["quota", "set", "beta", "max_secrets=3"]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    let json = admin(&["quota", "get", "beta", "--json"]).json();
    assert_eq!(json["overrides"]["max_steps"], 1, "{json}");
    assert_eq!(json["overrides"]["max_secrets"], 3, "{json}");
    // The tenant reads its own; the quota refuses its second step.
    let own = as_beta(&["quota", "get"]);
    assert_eq!(own.code, 0, "{}", own.stderr);
    assert!(own.stdout.contains("max_steps"), "{}", own.stdout);
    assert_eq!(
        as_beta(&["step", "push", "echo", test_programs::ECHO]).code,
        0
    );
    let refused = as_beta(&["step", "push", "other", test_programs::ECHO]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("max_steps"), "{}", refused.stderr);
    // Back to the default; bad input is refused before anything is sent.
    let reset = admin(&["quota", "set", "beta", "max_steps=default", "--json"]).json();
    assert_eq!(reset["limits"]["max_steps"], 1000, "{reset}");
    for bad in [["max_stepz=1"], ["max_steps"], ["max_steps=many"]] {
        let out = admin(&["quota", "set", "beta", bad[0]]);
        assert_eq!(out.code, 1, "{bad:?}: {}", out.stderr);
    }
    let refused = as_beta(&["quota", "set", "beta", "max_steps=9"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("admin token"), "{}", refused.stderr);
}

/// The local bootstrap writes into the server's own SQLite database, and
/// the running server accepts the token it printed. The bootstrap is for
/// the embedded store, so this server is on SQLite whatever `TEST_STORE`
/// says.
#[test]
fn the_local_bootstrap_writes_into_an_existing_database() {
    let server = Server::start_with(|c| {
        c.database = None;
        c.database_schema = None;
    });
    let dir = server.data.path().to_str().unwrap().to_owned();
    let made = stephost(&["tenant", "create", "local", "--data-dir", &dir], &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let token = made.stdout.trim();
    let listed = stephost(
        &["workflow", "list"],
        &[("STEPHOST_URL", &server.url), ("STEPHOST_TOKEN", token)],
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
}
