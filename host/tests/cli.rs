//! The `stephost step call` and `stephost step inspect` commands, run as the
//! real binary.

use std::process::Command;

/// Runs the binary with its default cache in a directory of this test
/// process, not the user's `~/.cache`.
fn stephost(args: &[&str]) -> (i32, String, String) {
    let cache = std::env::temp_dir().join(format!("stephost-cli-test-{}", std::process::id()));
    stephost_with(args, &[("XDG_CACHE_HOME", cache.to_str().unwrap())])
}

fn stephost_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stephost"))
        .args(args)
        .env_remove("STEPHOST_CACHE_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run stephost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn step_call_prints_the_output_and_the_metering() {
    let (code, stdout, stderr) = stephost(&[
        "step",
        "call",
        test_programs::ECHO,
        "--input",
        r#"{"a":[1,2,3],"s":"ü"}"#,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), r#"{"a":[1,2,3],"s":"ü"}"#);
    assert!(stderr.contains("outcome: succeeded"), "{stderr}");
    assert!(stderr.contains("fuel: "), "{stderr}");
    assert!(stderr.contains("memory peak: "), "{stderr}");
}

#[test]
fn step_call_passes_config_and_reports_logs() {
    let (code, stdout, stderr) = stephost(&[
        "step",
        "call",
        test_programs::HOSTILE,
        "--input",
        r#"{"op":"log","text":"hello"}"#,
        "--config",
        "key=from-cli",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), r#"{"config":"from-cli"}"#);
    assert!(stderr.contains("stdout to stdout: hello"), "{stderr}");
}

#[test]
fn step_call_exits_non_zero_on_any_other_outcome() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--input", r#"{"op":"loop"}"#, "--fuel", "1000000"],
            "fuel_exhausted",
        ),
        (
            &[
                "--input",
                r#"{"op":"loop"}"#,
                "--timeout",
                "200ms",
                "--fuel",
                "100000000000",
            ],
            "timed_out",
        ),
        (
            &["--input", r#"{"op":"memory_bomb"}"#, "--memory", "16MiB"],
            "memory_limit",
        ),
        (
            &["--input", r#"{"op":"fatal","text":"nope"}"#],
            "failed: [bad_input] nope",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["step", "call", test_programs::HOSTILE];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = stephost(&args);
        assert_eq!(code, 1, "{extra:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

#[test]
fn step_call_json_prints_the_whole_report() {
    let (code, stdout, _) = stephost(&[
        "step",
        "call",
        test_programs::HOSTILE,
        "--input",
        r#"{"op":"error","text":"down"}"#,
        "--json",
    ]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"]["kind"], "failed");
    assert_eq!(report["outcome"]["error"]["code"], "upstream_down");
    assert!(report["metering"]["fuel_consumed"].as_u64().unwrap() > 0);
}

#[test]
fn step_call_refuses_bad_arguments_clearly() {
    let (code, _, stderr) = stephost(&["step", "call", test_programs::ECHO, "--input", "{nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--input is not JSON"), "{stderr}");

    let (code, _, stderr) = stephost(&["step", "call", test_programs::ECHO, "--memory", "64GiB"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("above the server ceiling"), "{stderr}");

    let (code, _, stderr) = stephost(&["step", "call", "/no/such/file.wasm"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read /no/such/file.wasm"),
        "{stderr}"
    );
}

#[test]
fn step_inspect_lists_imports_and_exports_and_gives_a_verdict() {
    let (code, stdout, _) = stephost(&["step", "inspect", test_programs::HOSTILE]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("stephost:step/log@0.1.0"), "{stdout}");
    assert!(stdout.contains("wasi:cli/"), "{stdout}");
    assert!(stdout.contains("verdict:   valid step"), "{stdout}");

    let (code, stdout, _) = stephost(&["step", "inspect", test_programs::WRONG_WORLD]);
    assert_eq!(code, 1);
    assert!(stdout.contains("`run` has the wrong type"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, wat::parse_str("(module)").unwrap()).unwrap();
    let (code, stdout, _) = stephost(&["step", "inspect", module.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.contains("core WebAssembly module"), "{stdout}");
}

#[test]
fn step_call_keeps_precompiled_components_in_the_user_cache_by_default() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    let env = [("XDG_CACHE_HOME", xdg.to_str().unwrap())];
    let call = |extra: &[&str]| {
        let mut args = vec!["step", "call", test_programs::ECHO, "--json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = stephost_with(&args, &env);
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        report["load"].clone()
    };
    let first = call(&[]);
    assert_eq!(first["source"], "compiled", "{first}");
    let dir = xdg.join("stephost");
    assert_eq!(first["cache_dir"], dir.to_str().unwrap());
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 0,
        "nothing cached"
    );
    let second = call(&[]);
    assert_eq!(second["source"], "cache", "{second}");
    // Loading the artifact is far cheaper than compiling the component.
    let (compiled, loaded) = (
        first["ms"].as_f64().unwrap(),
        second["ms"].as_f64().unwrap(),
    );
    assert!(
        loaded * 2.0 < compiled,
        "load {loaded} ms vs compile {compiled} ms"
    );
    // The metering line says so too.
    let (_, _, stderr) = stephost_with(&["step", "call", test_programs::ECHO], &env);
    assert!(stderr.contains("(cache hit)"), "{stderr}");

    // --no-cache compiles and keeps nothing; --cache-dir goes elsewhere.
    let fresh = home.path().join("fresh");
    let env = [("XDG_CACHE_HOME", fresh.to_str().unwrap())];
    let (code, _, stderr) =
        stephost_with(&["step", "call", test_programs::ECHO, "--no-cache"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("not kept (--no-cache)"), "{stderr}");
    assert!(!fresh.exists(), "--no-cache wrote {}", fresh.display());
    let elsewhere = home.path().join("elsewhere");
    let (code, _, stderr) = stephost_with(
        &[
            "step",
            "call",
            test_programs::ECHO,
            "--cache-dir",
            elsewhere.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("compiled, kept in"), "{stderr}");
    assert!(elsewhere.exists() && !fresh.exists());
    let (code, _, stderr) = stephost_with(
        &[
            "step",
            "call",
            test_programs::ECHO,
            "--no-cache",
            "--cache-dir",
            "x",
        ],
        &env,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn step_call_takes_the_workflow_duration_grammar() {
    for timeout in ["5s", "PT5S", "1m"] {
        let (code, _, stderr) =
            stephost(&["step", "call", test_programs::ECHO, "--timeout", timeout]);
        assert_eq!(code, 0, "{timeout}: {stderr}");
    }
    let (code, _, stderr) = stephost(&["step", "call", test_programs::ECHO, "--timeout", "soon"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("soon"), "{stderr}");
}

/// A client verb writing to a pipe nobody reads ends the way other
/// command-line tools do (SIGPIPE), without a panic on stderr. The read
/// end is closed before the binary starts, so its first write fails.
#[test]
fn a_closed_stdout_ends_a_client_verb_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_stephost"))
        .args(["step", "inspect", test_programs::ECHO])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
}

/// `serve` on PostgreSQL: a URL that is not PostgreSQL, a missing secrets
/// key and an unreachable server are each refused at start with a message
/// that says what to do, and the password never appears in it.
#[test]
fn serve_refuses_a_database_it_cannot_use_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = |database: &str, env: &[(&str, &str)]| {
        stephost_with(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data,
                "--database",
                database,
            ],
            env,
        )
    };
    let (code, _, err) = serve("mysql://u:pw9@db/x", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("must be a postgres:// or postgresql:// URL"),
        "{err}"
    );
    assert!(!err.contains("pw9"), "{err}");

    let (code, _, err) = serve("postgres://postgres@127.0.0.1:5432/test", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("set `secrets-key`"), "{err}");

    let key = [(
        "STEPHOST_SECRETS_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )];
    let (code, _, err) = serve("postgres://postgres:pw9@127.0.0.1:1/test", &key);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot open the database postgres://postgres:***@127.0.0.1:1/test"),
        "{err}"
    );
    assert!(!err.contains("pw9"), "{err}");
}

/// Settings that cannot work are refused at start with a message naming
/// them: an API-only node on SQLite (nothing would run its work), a lease
/// too short to renew, a poll interval out of range.
#[test]
fn serve_refuses_work_settings_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = |env: &[(&str, &str)]| {
        stephost_with(
            &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
            env,
        )
    };
    let (code, _, err) = serve(&[("STEPHOST_CLAIM_WORK", "false")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`claim-work = false` needs a PostgreSQL `database`"),
        "{err}"
    );
    let (code, _, err) = serve(&[("STEPHOST_LEASE_TTL", "100ms")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`lease-ttl` must be at least 500ms"), "{err}");
    let (code, _, err) = serve(&[("STEPHOST_POLL_INTERVAL", "2h")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`poll-interval` must be between"), "{err}");
    let (code, _, err) = serve(&[("STEPHOST_SHUTDOWN_GRACE", "whenever")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`whenever` is not a duration"), "{err}");
}
