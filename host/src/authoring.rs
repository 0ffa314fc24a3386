//! Step authoring on the author's machine: `stephost step new`, `build`,
//! `test` and `doctor`. A step directory holds its source, the WIT it needs
//! (or, in Rust, the SDK dependency that carries it), a `step.toml` that
//! names the build command, the output and the default limits, and a
//! `tests/` folder of input → expected-output cases.
//!
//! C needs more than a compiler: `step build` generates the C bindings with
//! the `wit-bindgen-c` crate and turns the compiled core module into a
//! component with `wit-component` and the WASI preview1 reactor adapter of
//! the host's own wasmtime release (see [`c`]). Authors need clang and
//! wasi-libc, not the `wit-bindgen` or `wasm-tools` command lines.

pub mod c;
pub mod toolchains;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{AttemptReport, Outcome};
use crate::sandbox::{Cancel, Capabilities, Overrides, Sandbox, Settings};

/// The WIT package every step builds against.
pub const STEP_WIT: &str = include_str!("../../wit/step.wit");
const RUST_CARGO: &str = include_str!("../templates/rust/Cargo.toml");
const RUST_LIB: &str = include_str!("../templates/rust/lib.rs");
const PY_APP: &str = include_str!("../templates/python/app.py");
const PY_HELPERS: &str = include_str!("../../sdk/python/stephost.py");
const JS_STEP: &str = include_str!("../templates/js/step.js");
const JS_HELPERS: &str = include_str!("../../sdk/js/stephost.js");
const C_STEP: &str = include_str!("../templates/c/step.c");
/// The Rust SDK this binary carries, written out for Rust scaffolds (see
/// [`write_sdk`]); its WIT is [`STEP_WIT`] (the SDK's copy is kept identical
/// by a test).
const SDK_LIB: &str = include_str!("../../sdk/src/lib.rs");
const SDK_HTTP: &str = include_str!("../../sdk/src/http.rs");
const SDK_CARGO: &str = include_str!("../templates/rust/sdk-Cargo.toml");

/// Writes the Rust SDK this binary carries into `<home>/sdk/<version>`
/// and returns that directory. Files already there with the same content
/// are left alone, so writing twice changes nothing; each file is written
/// whole (a temporary file renamed into place).
pub fn write_sdk(home: &Path) -> anyhow::Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let dir = home.join("sdk").join(version);
    let cargo = SDK_CARGO.replace("__VERSION__", version);
    for (rel, text) in [
        ("Cargo.toml", cargo.as_str()),
        ("src/lib.rs", SDK_LIB),
        ("src/http.rs", SDK_HTTP),
        ("wit/step.wit", STEP_WIT),
    ] {
        let path = dir.join(rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text) {
            continue;
        }
        let parent = path.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// The languages `step new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust with the stephost-sdk crate, built by cargo.
    Rust,
    /// Python, built by componentize-py.
    Python,
    /// JavaScript, built by jco (componentize-js).
    Js,
    /// C, built by clang with wasi-libc; bindings and the component
    /// wrapping are done by `stephost step build` itself.
    C,
}

impl Lang {
    /// The name `--lang` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Js => "js",
            Self::C => "c",
        }
    }
}

/// `step.toml`: how a step is built and what limits its tests run under.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepToml {
    /// The step's name: the name to push it under.
    pub name: String,
    /// The source language.
    pub lang: Lang,
    /// The build.
    pub build: BuildToml,
    /// Default limits for `step test` (and a hint for workflow authors).
    #[serde(default)]
    pub limits: LimitsToml,
}

/// The `[build]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildToml {
    /// A shell command run in the step directory (`sh -c`).
    pub command: String,
    /// The component it produces, relative to the step directory.
    pub output: String,
    /// `"c"`: generate C bindings for the `step` world into `gen/` before
    /// the command runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings: Option<String>,
    /// A core module the command produced; `step build` turns it into the
    /// component at `output` with the WASI preview1 reactor adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub componentize: Option<String>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsToml {
    /// Fuel per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock limit per attempt, such as `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Memory cap, such as `128MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl StepToml {
    /// Reads `<dir>/step.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("step.toml");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {} (is this a step directory?)", path.display())
        })?;
        toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))
    }

    /// The limits as sandbox overrides.
    pub fn overrides(&self) -> anyhow::Result<Overrides> {
        Ok(Overrides {
            fuel: self.limits.fuel,
            timeout: self
                .limits
                .timeout
                .as_deref()
                .map(crate::engine::definition::parse_duration)
                .transpose()
                .map_err(|e| anyhow::anyhow!("step.toml: limits.timeout: {e}"))?,
            memory_bytes: self
                .limits
                .memory
                .as_deref()
                .map(|m| crate::engine::definition::parse_bytes(&json!(m)))
                .transpose()
                .map_err(|e| anyhow::anyhow!("step.toml: limits.memory: {e}"))?,
        })
    }
}

/// Writes a new step called `name` in `lang` into `dir` (which must not
/// exist or be empty). A Rust step depends on the SDK this binary carries,
/// written to `$STEPHOST_HOME/sdk/<version>`; `sdk` overrides that
/// dependency (a TOML value such as `{ path = "../sdk" }` or `"0.1"`).
pub fn new_step(
    dir: &Path,
    name: &str,
    lang: Lang,
    sdk: Option<&str>,
) -> anyhow::Result<Vec<PathBuf>> {
    crate::model::check_name("step name", name).map_err(anyhow::Error::msg)?;
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let ident = name.replace(['-', '.'], "_");
    let output = match lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{ident}.wasm"),
        _ => format!("target/{name}.wasm"),
    };
    let build = match lang {
        Lang::Rust => BuildToml {
            command: "cargo build --target wasm32-wasip2 --release --target-dir target".into(),
            output,
            bindings: None,
            componentize: None,
        },
        Lang::Python => BuildToml {
            command: format!("componentize-py -d wit -w step componentize app -o target/{name}.wasm"),
            output,
            bindings: None,
            componentize: None,
        },
        Lang::Js => BuildToml {
            command: format!("jco componentize step.js --wit wit --world-name step -o target/{name}.wasm"),
            output,
            bindings: None,
            componentize: None,
        },
        Lang::C => BuildToml {
            command: "clang --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Igen gen/*.c src/*.c gen/*_component_type.o -Wl,--strip-debug -o target/core.wasm".into(),
            output,
            bindings: Some("c".into()),
            componentize: Some("target/core.wasm".into()),
        },
    };
    let interpreted = matches!(lang, Lang::Python | Lang::Js);
    let manifest = StepToml {
        name: name.to_owned(),
        lang,
        build,
        limits: LimitsToml {
            fuel: Some(if interpreted {
                10_000_000_000
            } else {
                100_000_000
            }),
            timeout: Some("10s".into()),
            memory: Some(if interpreted { "256MiB" } else { "64MiB" }.into()),
        },
    };
    let mut files: Vec<(String, String)> = vec![(
        "step.toml".into(),
        format!(
            "# How `stephost step build` builds this step and `stephost step test` runs it.\n{}",
            toml::to_string_pretty(&manifest)?
        ),
    )];
    let fill = |t: &str| t.replace("__NAME__", name);
    match lang {
        Lang::Rust => {
            let sdk = match sdk {
                Some(s) => s.to_owned(),
                None => {
                    let home = crate::config::stephost_home().context(
                        "cannot tell where to write the Rust SDK: set STEPHOST_HOME (or HOME), \
                         or pass --sdk",
                    )?;
                    let dir = write_sdk(&home)?;
                    format!("{{ path = {:?} }}", dir.display().to_string())
                }
            };
            // Cargo package names take no `.`.
            let package = name.replace('.', "-");
            files.push((
                "Cargo.toml".into(),
                RUST_CARGO
                    .replace("__NAME__", &package)
                    .replace("__SDK__", &sdk),
            ));
            files.push(("src/lib.rs".into(), fill(RUST_LIB)));
            files.push((".gitignore".into(), "/target\n".into()));
        }
        Lang::Python => {
            files.push(("app.py".into(), fill(PY_APP)));
            files.push(("stephost.py".into(), PY_HELPERS.to_owned()));
            files.push(("wit/step.wit".into(), STEP_WIT.to_owned()));
            files.push((".gitignore".into(), "/target\n__pycache__/\n".into()));
        }
        Lang::Js => {
            // Helpers first: `jco componentize` takes one module.
            files.push(("step.js".into(), format!("{JS_HELPERS}\n{}", fill(JS_STEP))));
            files.push(("wit/step.wit".into(), STEP_WIT.to_owned()));
            files.push((".gitignore".into(), "/target\n".into()));
        }
        Lang::C => {
            files.push(("src/step.c".into(), fill(C_STEP)));
            files.push(("wit/step.wit".into(), STEP_WIT.to_owned()));
            files.push((".gitignore".into(), "/target\n/gen\n".into()));
        }
    }
    let lang_name = lang.as_str();
    files.push((
        "tests/greets.json".into(),
        serde_json::to_string_pretty(&json!({
            "input": {"name": "Ada"},
            "config": {"salutation": "Hi"},
            "output": {"greeting": "Hi, Ada!", "lang": lang_name},
        }))? + "\n",
    ));
    files.push((
        "tests/requires_a_name.json".into(),
        serde_json::to_string_pretty(&json!({
            "input": {"name": ""},
            "error": {"code": "invalid_input"},
        }))? + "\n",
    ));
    files.push(("README.md".into(), readme(name, lang, &manifest)));
    let mut written = Vec::new();
    for (rel, contents) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn readme(name: &str, lang: Lang, manifest: &StepToml) -> String {
    let tool = match lang {
        Lang::Rust => "Rust with the `wasm32-wasip2` target",
        Lang::Python => "componentize-py 0.25.1",
        Lang::Js => "jco 1.35.0 with componentize-js 0.23.0 and preview2-shim 0.26.0",
        Lang::C => "clang, lld and wasi-libc (Debian bookworm's packages)",
    };
    format!(
        "# {name}\n\nA stephost step in {lang}. Input `{{\"name\": \"Ada\"}}`, output\n`{{\"greeting\": \"Hello, Ada!\", \"lang\": \"{lang}\"}}`; the `salutation` config value\nreplaces \"Hello\". An empty or missing name is a `step-error` with code\n`invalid_input`.\n\nNeeds {tool}. `stephost step doctor --lang {lang}` checks it;\n`stephost step doctor --lang {lang} --install` installs it.\n\n```sh\nstephost step build                # runs: {command}\nstephost step test                 # runs tests/*.json under the real sandbox\nstephost step call {output} --input '{{\"name\": \"Ada\"}}' --config salutation=Hi\nstephost step push {name} {output}   # with STEPHOST_URL and STEPHOST_TOKEN set\n```\n\nA test case in `tests/` is `{{\"input\": …, \"config\": {{…}}, \"output\": …}}`, or\n`\"error\": {{\"code\": …}}` for a `step-error`, or `\"outcome\": \"trapped\"` (or any other\noutcome) for the rest. `\"expect_text\"` must appear in the outcome or the logs;\n`\"limits\": {{\"fuel\": …, \"timeout\": …, \"memory\": …}}` replaces step.toml's for\nthat case.\n",
        lang = lang.as_str(),
        command = manifest.build.command,
        output = manifest.build.output,
    )
}

/// Builds the step in `dir`; returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = StepToml::load(dir)?;
    std::fs::create_dir_all(dir.join("target"))?;
    if let Some(kind) = &manifest.build.bindings {
        if kind != "c" {
            bail!("step.toml: build.bindings `{kind}` is unknown; the only kind is \"c\"");
        }
        c::generate_bindings(&dir.join("wit"), &dir.join("gen"))?;
    }
    let lang = manifest.lang;
    let home = crate::config::stephost_home();
    let path = toolchains::search_path(lang, home.as_deref());
    // The scaffold's command runs the language's own tool: check the
    // toolchain first, so that a missing one is named with the command
    // that installs it rather than as `sh: jco: not found`. A command of
    // the author's own is run as it is.
    let program = manifest.build.command.split_whitespace().next();
    let main = match lang {
        Lang::Rust => "cargo",
        Lang::Python => "componentize-py",
        Lang::Js => "jco",
        Lang::C => "clang",
    };
    if program == Some(main) {
        let checks = doctor_on(lang, &path);
        let missing: Vec<&str> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "the {} toolchain is not installed (missing: {}); install it with:\n  {}",
                lang.as_str(),
                missing.join(", "),
                toolchains::install_command(lang)
            );
        }
        if let Some(used) = checks.iter().find(|c| c.what == main) {
            eprintln!("build: using {}", used.detail);
        }
    }
    eprintln!("build: {}", manifest.build.command);
    let status = Command::new("sh")
        .arg("-c")
        .arg(&manifest.build.command)
        .current_dir(dir)
        .env("PATH", &path)
        // The tools' chatter goes to stderr; stdout carries only the
        // component's path.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run `{}`", manifest.build.command))?;
    if !status.success() {
        bail!(
            "the build command failed ({status}); `stephost step doctor --lang {}` checks the toolchain",
            manifest.lang.as_str()
        );
    }
    let output = dir.join(&manifest.build.output);
    if let Some(core) = &manifest.build.componentize {
        let core = std::fs::read(dir.join(core)).with_context(|| format!("cannot read {core}"))?;
        let component = c::componentize(&core)?;
        std::fs::write(&output, component)?;
    }
    if !output.exists() {
        bail!(
            "the build command succeeded but {} does not exist; check build.output in step.toml",
            output.display()
        );
    }
    Ok(output)
}

/// One case of `tests/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    input: Value,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<ExpectedError>,
    #[serde(default)]
    outcome: Option<String>,
    /// Text that must appear in the outcome's description or the logs
    /// (an exception's message, say).
    #[serde(default)]
    expect_text: Option<String>,
    /// Limits for this case instead of step.toml's.
    #[serde(default)]
    limits: Option<LimitsToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    retryable: Option<bool>,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case file's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What happened, in words.
    pub detail: String,
    /// The attempt's outcome kind.
    pub outcome: String,
}

/// Runs every case in `<dir>/tests` against the built component, under the
/// limits of `step.toml`.
pub async fn test(dir: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let manifest = StepToml::load(dir)?;
    let component = dir.join(&manifest.build.output);
    let bytes = std::fs::read(&component).with_context(|| {
        format!(
            "cannot read {}; run `stephost step build` first",
            component.display()
        )
    })?;
    let sandbox = Sandbox::new(Settings::default())?;
    let default_limits = sandbox.limits(&manifest.overrides()?)?;
    let step = tokio::task::block_in_place(|| sandbox.prepare(&bytes))?;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .with_context(|| format!("cannot read {}", dir.join("tests").display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    cases.sort();
    let mut results = Vec::new();
    for path in cases {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let case: Case = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not a test case", path.display()))?;
        let caps = Capabilities {
            config: case.config.clone(),
            secrets: Vec::new(),
            http: None,
        };
        let limits = match &case.limits {
            // Each field the case gives replaces step.toml's; the others
            // stay as step.toml says.
            Some(l) => {
                let m = StepToml {
                    limits: LimitsToml {
                        fuel: l.fuel.or(manifest.limits.fuel),
                        timeout: l.timeout.clone().or(manifest.limits.timeout.clone()),
                        memory: l.memory.clone().or(manifest.limits.memory.clone()),
                    },
                    ..manifest.clone()
                };
                sandbox.limits(&m.overrides()?)?
            }
            None => default_limits,
        };
        let started = Instant::now();
        let report = sandbox
            .run(
                &step,
                &case.input.to_string(),
                &limits,
                &caps,
                &Cancel::new(),
            )
            .await?;
        let (mut passed, mut detail) = judge(&case, &report);
        if let Some(text) = &case.expect_text {
            let everything = format!(
                "{}\n{}",
                report.outcome.describe(),
                report
                    .logs
                    .iter()
                    .map(|l| l.message.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            if !everything.contains(text.as_str()) {
                passed = false;
                detail =
                    format!("{detail}; `{text}` appears neither in the outcome nor in the logs");
            }
        }
        results.push(CaseResult {
            name,
            passed,
            detail: format!("{detail} ({:.1} ms)", started.elapsed().as_secs_f64() * 1e3),
            outcome: report.outcome.kind().to_owned(),
        });
    }
    Ok(results)
}

fn judge(case: &Case, report: &AttemptReport) -> (bool, String) {
    match (&report.outcome, &case.output, &case.error, &case.outcome) {
        (Outcome::Succeeded { output }, Some(expected), _, _) => {
            match serde_json::from_str::<Value>(output) {
                Ok(got) if &got == expected => (true, "output matches".into()),
                Ok(got) => (false, format!("expected output {expected}, got {got}")),
                Err(e) => (false, format!("the output is not JSON: {e}")),
            }
        }
        (Outcome::Failed { error }, _, Some(expected), _) => {
            let mut wrong = Vec::new();
            if error.code != expected.code {
                wrong.push(format!(
                    "code `{}`, expected `{}`",
                    error.code, expected.code
                ));
            }
            if let Some(m) = &expected.message
                && !error.message.contains(m.as_str())
            {
                wrong.push(format!("message `{}` lacks `{m}`", error.message));
            }
            if let Some(r) = expected.retryable
                && r != error.retryable
            {
                wrong.push(format!("retryable {}, expected {r}", error.retryable));
            }
            if wrong.is_empty() {
                (true, format!("step-error `{}` as expected", error.code))
            } else {
                (false, wrong.join("; "))
            }
        }
        (outcome, _, _, Some(kind)) if outcome.kind() == kind => {
            (true, format!("outcome `{kind}` as expected"))
        }
        (outcome, ..) => (
            false,
            format!(
                "unexpected outcome `{}`: {}",
                outcome.kind(),
                outcome.describe()
            ),
        ),
    }
}

/// One toolchain check of `step doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it is there.
    pub ok: bool,
    /// What was found, or the exact command that installs it.
    pub detail: String,
}

fn runs(program: &Path, args: &[&str], path: &OsString) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .env("PATH", path)
        .output()
        .ok()?;
    out.status.success().then(|| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        text.lines().next().unwrap_or_default().trim().to_owned()
    })
}

fn check(what: &str, found: Option<String>, lang: Lang, by_hand: &str) -> Check {
    match found {
        Some(detail) => Check {
            what: what.into(),
            ok: true,
            detail,
        },
        None => Check {
            what: what.into(),
            ok: false,
            detail: format!(
                "missing; install with: {} (or by hand: {by_hand})",
                toolchains::install_command(lang)
            ),
        },
    }
}

/// `program --version` found on `path`: its first line and where it is.
fn tool(program: &str, args: &[&str], path: &OsString) -> Option<String> {
    let at = toolchains::which(program, path)?;
    let version = runs(&at, args, path)?;
    Some(format!("{version} ({})", at.display()))
}

/// Checks the toolchain of `lang`, finding the toolchains stephost
/// installed (see [`toolchains`]) before those on `PATH`.
pub fn doctor(lang: Lang) -> Vec<Check> {
    let home = crate::config::stephost_home();
    doctor_on(lang, &toolchains::search_path(lang, home.as_deref()))
}

/// [`doctor`] with the tools looked up on `path`.
fn doctor_on(lang: Lang, path: &OsString) -> Vec<Check> {
    match lang {
        Lang::Rust => {
            let targets = toolchains::which("rustup", path).and_then(|rustup| {
                let out = Command::new(rustup)
                    .args(["target", "list", "--installed"])
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == "wasm32-wasip2")
                    .then(|| "installed".to_owned())
            });
            vec![
                check(
                    "cargo",
                    tool("cargo", &["--version"], path),
                    lang,
                    "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh",
                ),
                check(
                    "wasm32-wasip2 target",
                    targets,
                    lang,
                    "rustup target add wasm32-wasip2",
                ),
            ]
        }
        Lang::Python => vec![check(
            "componentize-py",
            tool("componentize-py", &["--version"], path),
            lang,
            &format!(
                "pip install componentize-py=={}",
                toolchains::COMPONENTIZE_PY_VERSION
            ),
        )],
        Lang::Js => vec![
            check(
                "node",
                tool("node", &["--version"], path),
                lang,
                "apt-get install -y nodejs npm",
            ),
            check(
                "jco",
                tool("jco", &["--version"], path),
                lang,
                &format!(
                    "npm install of @bytecodealliance/jco@{} with componentize-js {} and preview2-shim {} pinned through `overrides`, as in docs/steps/js.md",
                    toolchains::JCO_VERSION,
                    toolchains::COMPONENTIZE_JS_VERSION,
                    toolchains::PREVIEW2_SHIM_VERSION
                ),
            ),
        ],
        Lang::C => {
            let apt = format!("apt-get install -y {}", toolchains::C_PACKAGES.join(" "));
            let file = |p: &str| Path::new(p).exists().then(|| p.to_owned());
            let builtins = std::fs::read_dir("/usr/lib/llvm-14/lib/clang")
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path().join("lib/wasi/libclang_rt.builtins-wasm32.a"))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string());
            vec![
                check("clang", tool("clang", &["--version"], path), lang, &apt),
                check(
                    "wasm-ld (lld)",
                    tool("wasm-ld", &["--version"], path),
                    lang,
                    &apt,
                ),
                check("wasi-libc", file("/usr/lib/wasm32-wasi/libc.a"), lang, &apt),
                check("compiler-rt builtins for wasm32", builtins, lang, &apt),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK manifest the binary writes names the same dependency
    /// versions and features as the workspace builds the SDK with.
    #[test]
    fn the_written_sdk_manifest_matches_the_workspace() {
        let workspace: toml::Value = toml::from_str(include_str!("../../Cargo.toml")).unwrap();
        let written: toml::Value =
            toml::from_str(&SDK_CARGO.replace("__VERSION__", env!("CARGO_PKG_VERSION"))).unwrap();
        let sdk: toml::Value = toml::from_str(include_str!("../../sdk/Cargo.toml")).unwrap();
        let deps = sdk["dependencies"].as_table().unwrap();
        assert_eq!(
            written["dependencies"]
                .as_table()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            deps.keys().collect::<Vec<_>>()
        );
        for name in deps.keys() {
            assert_eq!(
                written["dependencies"][name], workspace["workspace"]["dependencies"][name],
                "{name}"
            );
        }
        // The target-specific dependency (wasi:http bindings) is written as
        // the SDK has it.
        assert_eq!(written["target"], sdk["target"]);
        assert_eq!(written["package"]["name"].as_str(), Some("stephost-sdk"));
        assert_eq!(
            written["package"]["edition"],
            workspace["workspace"]["package"]["edition"]
        );
    }

    /// `step.toml` durations use the workflow definitions' grammar.
    #[test]
    fn step_toml_timeouts_take_the_workflow_duration_grammar() {
        let with = |timeout: &str| StepToml {
            name: "s".into(),
            lang: Lang::Rust,
            build: BuildToml {
                command: "true".into(),
                output: "s.wasm".into(),
                bindings: None,
                componentize: None,
            },
            limits: LimitsToml {
                fuel: None,
                timeout: Some(timeout.into()),
                memory: None,
            },
        };
        for (text, secs) in [("10s", 10), ("PT10S", 10), ("1m 30s", 90), ("1d", 86_400)] {
            let o = with(text).overrides().unwrap();
            assert_eq!(
                o.timeout,
                Some(std::time::Duration::from_secs(secs)),
                "{text}"
            );
        }
        let e = with("soon").overrides().unwrap_err().to_string();
        assert!(e.contains("limits.timeout") && e.contains("soon"), "{e}");
    }
}
