//! The `stephost step call` and `stephost step inspect` commands, run as the
//! real binary.

use std::process::Command;

fn stephost(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stephost"))
        .args(args)
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
