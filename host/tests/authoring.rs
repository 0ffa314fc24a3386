//! Step authoring end to end, in Rust, Python, JavaScript and C: `stephost
//! step new` scaffolds each step from nothing, the test edits it the way an
//! author would (an exception and an infinite loop), `step build` builds it
//! with the real toolchain, `step test` runs its cases (output, step-error,
//! exception, loop stopped by fuel, loop stopped by time) under the real
//! sandbox, and then all four are pushed to a running server and used in
//! one workflow. The commands are the ones `docs/steps/*.md` show.
//!
//! The commands run a copy of the binary outside the source tree with a
//! fresh, empty `HOME`, as a new user would: a Rust scaffold must build
//! from the SDK the binary carries (written under that home), not from
//! this repository's `sdk/`; and the Python and JavaScript toolchains come
//! from `stephost step doctor --install` into that home (the pinned ones,
//! from PyPI and npm), never from PATH. Rust's toolchain and C's Debian
//! packages are the machine's (`scripts/test` installs them); a missing
//! one fails this test, it never skips.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::Server;
use serde_json::{Value, json};

const LANGS: [&str; 4] = ["rust", "python", "js", "c"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The caller's PATH without any directory that holds componentize-py or
/// jco, so the Python and JavaScript toolchains can only come from what
/// `step doctor --install` puts under the test's own home.
fn path_without_guest_tools() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("componentize-py").exists() && !d.join("jco").exists())
        .collect();
    std::env::join_paths(kept).unwrap().into_string().unwrap()
}

/// The real home of this test process (where rustup, cargo and the pip
/// and npm download caches are).
fn real_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

/// A copy of the binary and an empty `HOME` for it, both in a directory of
/// this test process outside the source tree.
fn installed() -> &'static (PathBuf, PathBuf) {
    static INSTALLED: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("stephost-installed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let bin = root.join("bin/stephost");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_stephost"), &bin).expect("copy the binary");
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        (bin, home)
    })
}

/// Where the binary keeps what it manages under the fresh home: the
/// default `~/.local/share/stephost`.
fn stephost_home() -> PathBuf {
    installed().1.join(".local/share/stephost")
}

/// Runs `stephost ARGS` in `dir` as a new user would: a fresh `HOME` (so
/// `STEPHOST_HOME` and the caches take their defaults under it) and no
/// guest toolchain on PATH. Rust's toolchain and the pip and npm download
/// caches stay the machine's (downloads only: every install still comes
/// from the registries into the fresh home).
fn stephost_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let (bin, home) = installed();
    let real = real_home();
    let or_default =
        |var: &str, default: PathBuf| std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("PATH", path_without_guest_tools())
        .env("HOME", home)
        .env(
            "RUSTUP_HOME",
            or_default("RUSTUP_HOME", real.join(".rustup")),
        )
        .env("CARGO_HOME", or_default("CARGO_HOME", real.join(".cargo")))
        .env(
            "PIP_CACHE_DIR",
            or_default("PIP_CACHE_DIR", real.join(".cache/pip")),
        )
        .env(
            "npm_config_cache",
            or_default("npm_config_cache", real.join(".npm")),
        )
        .env_remove("STEPHOST_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        // Each scaffold decides where its build output goes.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("STEPHOST_URL")
        .env_remove("STEPHOST_TOKEN")
        .output()
        .expect("run stephost");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn must(dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = stephost_in(dir, args);
    assert!(
        ok,
        "stephost {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

/// Adds an exception and an infinite loop to a scaffolded step, the way an
/// author edits the template: `name == "boom"` throws, `name == "loop"`
/// never returns, and (except in Rust, whose typed input drops unknown
/// fields; the SDK's round trip is tested with the sandbox) `name ==
/// "echo"` returns the input as it came.
fn add_misbehaviour(dir: &Path, lang: &str) {
    let (file, anchor, code) = match lang {
        "rust" => (
            "src/lib.rs",
            "    let salutation = config::get",
            "    if name == \"boom\" {\n        panic!(\"boom from rust\");\n    }\n    if name == \"loop\" {\n        loop {\n            std::hint::black_box(0u8);\n        }\n    }\n",
        ),
        "python" => (
            "app.py",
            "    salutation = stephost.config",
            "    if name == \"echo\":\n        return request\n    if name == \"boom\":\n        raise RuntimeError(\"boom from python\")\n    if name == \"loop\":\n        while True:\n            pass\n",
        ),
        "js" => (
            "step.js",
            "  const salutation = config(",
            "  if (name === \"echo\") {\n    return request;\n  }\n  if (name === \"boom\") {\n    throw new Error(\"boom from js\");\n  }\n  if (name === \"loop\") {\n    for (;;) {}\n  }\n",
        ),
        "c" => (
            "src/step.c",
            "  step_string_t key, salutation;",
            "  if (strcmp(name, \"boom\") == 0) {\n    fprintf(stderr, \"boom from c\\n\");\n    abort();\n  }\n  if (strcmp(name, \"loop\") == 0) {\n    volatile unsigned spin = 0;\n    for (;;) spin++;\n  }\n",
        ),
        other => panic!("no language {other}"),
    };
    let path = dir.join(file);
    let mut source = std::fs::read_to_string(&path).unwrap();
    assert!(source.contains(anchor), "{file} lacks `{anchor}`");
    source = source.replacen(anchor, &format!("{code}{anchor}"), 1);
    if lang == "c" {
        // The input buffer is ours; handing it back as the output gives it
        // to the bindings, which free it after the host copied it.
        let at = "  step_string_free(input);\n  if (!name || !*name) {";
        assert!(source.contains(at), "{file} lacks `{at}`");
        source = source.replacen(
            at,
            &format!("  if (name && strcmp(name, \"echo\") == 0) {{\n    *ret = *input;\n    free(name);\n    return true;\n  }}\n{at}"),
            1,
        );
    }
    std::fs::write(&path, source).unwrap();
    let cases = [
        (
            "exception",
            json!({"input": {"name": "boom"}, "outcome": "trapped",
                   "expect_text": format!("boom from {lang}")}),
        ),
        (
            "loop_out_of_fuel",
            json!({"input": {"name": "loop"}, "outcome": "fuel_exhausted",
                   "limits": {"fuel": 200_000_000u64, "timeout": "60s"}}),
        ),
        (
            "loop_out_of_time",
            json!({"input": {"name": "loop"}, "outcome": "timed_out",
                   "limits": {"fuel": 100_000_000_000u64, "timeout": "1s"}}),
        ),
    ];
    let mut cases = cases.to_vec();
    if lang != "rust" {
        // Exact round trip: unicode, escapes and numbers no double holds.
        let echo = json!({"name": "echo", "s": "Zoë 🚀 \"q\" \\ ü", "big": 123456789012345678901234567890u128,
                          "neg": -98765432109876543210i128, "n": [1, 2.5, null, true, {}]});
        cases.push(("round_trip", json!({"input": echo, "output": echo})));
    }
    for (name, case) in cases {
        std::fs::write(
            dir.join(format!("tests/{name}.json")),
            serde_json::to_string_pretty(&case).unwrap(),
        )
        .unwrap();
    }
}

/// The managed toolchain directory of `lang`, if it has one.
fn managed_tool(lang: &str) -> Option<&'static str> {
    match lang {
        "python" => Some("componentize-py-0.25.1"),
        "js" => Some("jco-1.35.0"),
        _ => None,
    }
}

/// On the fresh home, a scaffold's build first fails naming the install
/// command (it never installs silently); `step doctor --install` installs
/// the pinned toolchain into `~/.local/share/stephost/toolchains`, and a
/// second install changes nothing. Rust and C come from rustup and the
/// machine's packages, which scripts/install-tools already installed:
/// their install is the no-op.
fn install_toolchain(dir: &Path, lang: &str) {
    let install = ["step", "doctor", "--lang", lang, "--install"];
    let Some(tool) = managed_tool(lang) else {
        let out = must(dir, &install);
        assert!(out.contains("already installed"), "{lang}: {out}");
        return;
    };
    let (ok, _, stderr) = stephost_in(dir, &["step", "build"]);
    assert!(!ok, "{lang}: built without a toolchain\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "install it with:\n  stephost step doctor --lang {lang} --install"
        )),
        "{lang}: {stderr}"
    );
    let toolchain = stephost_home().join("toolchains").join(tool);
    assert!(!toolchain.exists(), "{lang}: the failed build installed");
    let (program, version) = tool.rsplit_once('-').unwrap();
    let out = must(dir, &install);
    assert!(
        out.contains(&format!(
            "install: {lang}: installed {program} {version} in {}",
            toolchain.display()
        )),
        "{lang}: {out}"
    );
    // And the checks that follow find it there.
    assert!(
        out.contains(&format!("ok   {program}: ")) && out.contains(toolchain.to_str().unwrap()),
        "{lang}: {out}"
    );
    let stamp = toolchain.join(".stephost-stamp");
    let stamped = std::fs::metadata(&stamp).unwrap().modified().unwrap();
    let again = must(dir, &install);
    assert!(again.contains("is already installed in"), "{lang}: {again}");
    assert_eq!(
        std::fs::metadata(&stamp).unwrap().modified().unwrap(),
        stamped,
        "{lang}: the second install redid the first"
    );
}

#[test]
fn four_languages_from_nothing_to_one_workflow() {
    let work = tempfile::tempdir().unwrap();
    let mut components = Vec::new();
    for lang in LANGS {
        let name = format!("greet-{lang}");
        let created = stephost_in(work.path(), &["step", "new", &name, "--lang", lang]);
        assert!(created.0, "{}", created.2);
        let dir = work.path().join(&name);
        for file in ["step.toml", "README.md", "tests/greets.json"] {
            assert!(dir.join(file).exists(), "{lang}: no {file}");
        }
        if lang != "rust" {
            assert!(dir.join("wit/step.wit").exists(), "{lang}: no WIT");
        }
        add_misbehaviour(&dir, lang);
        install_toolchain(&dir, lang);

        let (ok, built, stderr) = stephost_in(&dir, &["step", "build"]);
        assert!(ok, "{lang}: step build failed\n{stderr}");
        if let Some(tool) = managed_tool(lang) {
            // The build says which toolchain it used: the managed one.
            let dir = stephost_home().join("toolchains").join(tool);
            assert!(
                stderr.contains("build: using") && stderr.contains(dir.to_str().unwrap()),
                "{lang}: {stderr}"
            );
        }
        let component = dir.join(built.trim());
        assert!(component.exists(), "{lang}: {built}");

        let (ok, report, stderr) = stephost_in(&dir, &["step", "test", "--json"]);
        let results: Value = serde_json::from_str(&report)
            .unwrap_or_else(|e| panic!("{lang}: {e}: {report} {stderr}"));
        let by_name = |n: &str| {
            results
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == n)
                .unwrap_or_else(|| panic!("{lang}: no case {n}: {results}"))
                .clone()
        };
        assert!(ok, "{lang}: {results:#}");
        let expected_cases = if lang == "rust" { 5 } else { 6 };
        assert_eq!(
            results.as_array().unwrap().len(),
            expected_cases,
            "{lang}: {results}"
        );
        assert_eq!(by_name("greets.json")["outcome"], "succeeded");
        assert_eq!(by_name("requires_a_name.json")["outcome"], "failed");
        assert_eq!(by_name("exception.json")["outcome"], "trapped");
        assert_eq!(
            by_name("loop_out_of_fuel.json")["outcome"],
            "fuel_exhausted"
        );
        assert_eq!(by_name("loop_out_of_time.json")["outcome"], "timed_out");
        components.push((lang, name, component));
    }

    // All four on a running server, in one workflow.
    let server = Server::start();
    let mut compile_ms = std::collections::BTreeMap::new();
    for (lang, name, component) in &components {
        let pushed = server
            .cli(&["step", "push", name, component.to_str().unwrap(), "--json"])
            .json();
        compile_ms.insert(*lang, pushed["compile_ms"].as_f64().unwrap());
    }
    let mut workflow = String::from("id: greetings\nsteps:\n");
    for lang in LANGS {
        workflow.push_str(&format!(
            "  - id: {lang}\n    step: greet-{lang}\n    needs: []\n    input: {{name: \"{{{{ input.name }}}}\"}}\n    config: {{salutation: Hi}}\n"
        ));
    }
    workflow.push_str("output:\n");
    for lang in LANGS {
        workflow.push_str(&format!("  {lang}: \"{{{{ steps.{lang}.output }}}}\"\n"));
    }
    let file = server.path("greetings.yaml");
    std::fs::write(&file, workflow).unwrap();
    let applied = server.cli(&["workflow", "apply", "-f", &file]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let run = server
        .cli(&[
            "exec",
            "run",
            "greetings",
            "--input",
            r#"{"name": "Ada"}"#,
            "--json",
        ])
        .json();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let mut expected = serde_json::Map::new();
    for lang in LANGS {
        expected.insert(lang.into(), json!({"greeting": "Hi, Ada!", "lang": lang}));
    }
    assert_eq!(run["output"], Value::Object(expected));
    // Registration compiled the interpreters (seconds); the first attempt
    // after it used that artifact instead of compiling again.
    for lang in ["python", "js"] {
        let step = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == lang)
            .unwrap();
        let first = step["attempts"][0]["duration_ms"].as_f64().unwrap();
        let compiled = compile_ms[lang];
        assert!(compiled > 1000.0, "{lang}: compile took only {compiled} ms");
        assert!(
            first < compiled / 4.0,
            "{lang}: the first attempt took {first} ms after a {compiled} ms compile"
        );
    }
    // The step-error path through the server: an empty name fails the
    // execution with the guest's code and message.
    let failed = server.cli(&[
        "exec",
        "run",
        "greetings",
        "--input",
        r#"{"name": ""}"#,
        "--json",
    ]);
    let failed: Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["error"]["code"], "invalid_input");
    assert_eq!(failed["error"]["message"], "`name` is required");
}

#[test]
fn doctor_names_the_install_command_for_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let doctor = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stephost"))
            .args(args)
            .current_dir(empty.path())
            .env("PATH", empty.path())
            .env("STEPHOST_HOME", empty.path().join("home"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, _) = doctor(&["step", "doctor", "--lang", "python"]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains(
            "MISSING componentize-py: missing; install with: stephost step doctor --lang python --install (or by hand: pip install componentize-py==0.25.1)"
        ),
        "{stdout}"
    );
    // Where the installer's own tool is missing, --install says what to
    // install first, and exits non-zero.
    for (lang, first) in [
        (
            "python",
            "python3 is not installed; install Python 3 with its venv module first",
        ),
        (
            "js",
            "node is not installed; install Node.js 18 or later with npm first",
        ),
    ] {
        let (ok, _, stderr) = doctor(&["step", "doctor", "--lang", lang, "--install"]);
        assert!(!ok, "{lang}: {stderr}");
        assert!(stderr.contains(first), "{lang}: {stderr}");
    }
    let (ok, _, stderr) = doctor(&["step", "doctor", "--install"]);
    assert!(!ok && stderr.contains("--install needs --lang"), "{stderr}");
    let (ok, stdout, _) = stephost_in(empty.path(), &["step", "doctor", "--lang", "c"]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("c       ok   clang: "), "{stdout}");
}

/// `step new --lang rust` writes the SDK the binary carries into
/// `$STEPHOST_HOME/sdk/<version>` (the same sources and WIT as this
/// repository's), points the scaffold at it, and a second `step new`
/// leaves it as it is.
#[test]
fn the_rust_sdk_travels_with_the_binary() {
    let work = tempfile::tempdir().unwrap();
    must(work.path(), &["step", "new", "one", "--lang", "rust"]);
    let sdk = stephost_home().join("sdk").join(env!("CARGO_PKG_VERSION"));
    let manifest = std::fs::read_to_string(work.path().join("one/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!(
            "stephost-sdk = {{ path = {:?} }}",
            sdk.display().to_string()
        )),
        "{manifest}"
    );
    let repo_root = repo().canonicalize().unwrap();
    assert!(
        !manifest.contains(repo_root.to_str().unwrap()),
        "{manifest}"
    );
    for (written, source) in [
        ("src/lib.rs", "sdk/src/lib.rs"),
        ("src/http.rs", "sdk/src/http.rs"),
        ("wit/step.wit", "wit/step.wit"),
    ] {
        assert_eq!(
            std::fs::read(sdk.join(written)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{written}"
        );
    }
    let cargo = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{cargo}"
    );
    let written_at = std::fs::metadata(sdk.join("src/lib.rs"))
        .unwrap()
        .modified()
        .unwrap();
    must(work.path(), &["step", "new", "two", "--lang", "rust"]);
    assert_eq!(
        std::fs::metadata(sdk.join("src/lib.rs"))
            .unwrap()
            .modified()
            .unwrap(),
        written_at,
        "a second step new rewrote the SDK"
    );
    // --sdk still chooses the dependency.
    must(
        work.path(),
        &["step", "new", "three", "--lang", "rust", "--sdk", "\"0.1\""],
    );
    let manifest = std::fs::read_to_string(work.path().join("three/Cargo.toml")).unwrap();
    assert!(manifest.contains("stephost-sdk = \"0.1\""), "{manifest}");
}
