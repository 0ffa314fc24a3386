//! The `stephost` command line: argument parsing and the commands that run
//! locally. It owns process concerns (exit codes, printing); the work
//! itself happens in the library modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::model::{AttemptReport, LogLine};
use crate::sandbox::{self, Cancel, Capabilities, Overrides, Sandbox, Settings};

/// stephost: a sandboxed workflow host whose every step is an isolated
/// WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "stephost", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the REST API on the embedded SQLite store.
    Serve(ServeArgs),
    /// Manage tenants on a server (admin).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Create, list and revoke tokens on a server: a tenant's (the admin,
    /// or the tenant itself) or the admin's.
    #[command(subcommand)]
    Token(crate::cli_client::TokenCommand),
    /// Read a tenant's quotas and usage, or set them (admin).
    #[command(subcommand)]
    Quota(crate::cli_client::QuotaCommand),
    /// Work with step components: run and inspect locally, or push to a
    /// server.
    #[command(subcommand)]
    Step(StepCommand),
    /// Manage workflows on a server.
    #[command(subcommand)]
    Workflow(crate::cli_client::WorkflowCommand),
    /// Run and follow executions on a server.
    #[command(subcommand)]
    Exec(crate::cli_client::ExecCommand),
    /// Manage cron schedules on a server.
    #[command(subcommand)]
    Schedule(crate::cli_client::ScheduleCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8480].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory for the database and precompiled components
    /// [default: ./stephost-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL database instead of the embedded SQLite file, as a URL:
    /// postgres://user:password@host:port/db (also `database` in the
    /// config file and STEPHOST_DATABASE). Several servers may share one.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// A TOML configuration file (keys as in `stephost serve --help`'s
    /// documentation; see README).
    #[arg(long, env = "STEPHOST_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its first token on stdout (shown once).
    /// Over the API with an admin token (STEPHOST_TOKEN or --token), or,
    /// with --data-dir, straight into the embedded database of a server
    /// that has run there before (a way in before any admin token exists).
    Create {
        /// The tenant's unique name.
        name: String,
        /// Write into the SQLite database in this data directory instead of
        /// calling the API. It must hold a database already: this never
        /// creates one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        conn: crate::cli_client::Conn,
    },
    /// List the tenants, oldest first (admin).
    List {
        /// Page size, 1 to 100.
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: crate::cli_client::Conn,
    },
    /// Show a tenant, by id or name (admin, or the tenant's own token).
    Get {
        /// The tenant's id or name.
        tenant: String,
        #[command(flatten)]
        conn: crate::cli_client::Conn,
    },
    /// Suspend a tenant (admin): its tokens get 401, its schedules stop
    /// firing and none of its executions runs until it is unsuspended.
    Suspend {
        /// The tenant's id or name.
        tenant: String,
        #[command(flatten)]
        conn: crate::cli_client::Conn,
    },
    /// Undo a suspension (admin): its work carries on where it stopped.
    Unsuspend {
        /// The tenant's id or name.
        tenant: String,
        #[command(flatten)]
        conn: crate::cli_client::Conn,
    },
    /// Delete a tenant and all its data (admin): tokens, steps, workflows,
    /// executions, schedules, secrets. This cannot be undone.
    Delete {
        /// The tenant's id or name.
        tenant: String,
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        conn: crate::cli_client::Conn,
    },
}

#[derive(Debug, Subcommand)]
enum StepCommand {
    /// Run one attempt of a step component locally, under the same sandbox
    /// as the server. Prints the output on stdout and the metering and logs
    /// on stderr. Exits 1 on any outcome other than `succeeded`.
    Call(CallArgs),
    /// Print a component's imports and exports and whether it is a valid
    /// step. Exits 1 when it is not.
    Inspect(InspectArgs),
    /// Upload a component to a server as a new version of step NAME.
    Push(crate::cli_client::PushArgs),
    /// Write a new, ready-to-build step in Rust, Python, JavaScript or C:
    /// source, WIT (or the SDK dependency), step.toml, tests/ and a README.
    New(NewArgs),
    /// Build the step in the current directory (or --dir) with the command
    /// from its step.toml; prints the component's path.
    Build(DirArgs),
    /// Run the step's tests/*.json cases under the real sandbox, with the
    /// limits from step.toml. Exits 1 if any case fails.
    Test(DirArgs),
    /// Check that a language's toolchain is installed; prints the exact
    /// command that installs whatever is missing (`--install` installs the
    /// pinned one). Exits 1 if anything is missing.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The step's name (also the directory, unless --dir is given).
    name: String,
    /// The language.
    #[arg(long, value_enum)]
    lang: crate::authoring::Lang,
    /// Where to write it [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust only: the stephost-sdk dependency as a TOML value, such as
    /// `{ path = "../stephost/sdk" }` [default: the SDK this binary
    /// carries, written once to $STEPHOST_HOME/sdk/<version>, where
    /// STEPHOST_HOME defaults to ~/.local/share/stephost].
    #[arg(long)]
    sdk: Option<String>,
}

#[derive(Debug, Args)]
struct DirArgs {
    /// The step directory (the one with step.toml).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// The language to check [default: the `lang` of ./step.toml, or all].
    #[arg(long, value_enum)]
    lang: Option<crate::authoring::Lang>,
    /// Install the pinned toolchain first: componentize-py (Python) or jco
    /// with componentize-js (JavaScript) into
    /// $STEPHOST_HOME/toolchains/<name>-<version>, where `step build` finds
    /// it without PATH changes; Debian's clang and wasi-libc (C, as root;
    /// otherwise the sudo line is printed); the wasm32-wasip2 target with
    /// rustup (Rust). Installing what is installed does nothing.
    #[arg(long)]
    install: bool,
}

#[derive(Debug, Args)]
struct CallArgs {
    /// Path to the step component (`.wasm`).
    component: PathBuf,
    /// The input, as JSON text.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Fuel budget (about one unit per wasm instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock limit, such as `500ms`, `5s` or `PT10S` (the duration
    /// grammar of workflow definitions).
    #[arg(long, value_parser = crate::engine::definition::parse_duration)]
    timeout: Option<Duration>,
    /// Linear memory cap, such as `64MiB`.
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// A configuration value for the `config` import, as `key=value`.
    /// Repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Print the whole report (outcome, metering, logs) as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Path to the component (`.wasm`).
    component: PathBuf,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
struct CacheArgs {
    /// Keep precompiled components in this directory, so that later runs
    /// of the same component load in milliseconds instead of compiling
    /// [default: $XDG_CACHE_HOME/stephost, else ~/.cache/stephost].
    #[arg(long, env = "STEPHOST_CACHE_DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile on every run and keep nothing on disk.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    /// The cache directory to use, if any.
    fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(crate::config::user_cache_dir)
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size such as 64MiB: {e}"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// A client verb whose output goes to a reader that stopped reading
/// (`stephost exec list | head -1`) ends quietly, as other command-line
/// tools do, instead of panicking in `println!` on the broken pipe: Rust
/// ignores SIGPIPE, so its default action is put back. Not for `serve`,
/// where a client that hangs up must never end the server.
fn restore_sigpipe() {
    // SAFETY: called once at start, before any thread exists; setting a
    // signal's disposition to its default touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Tenant(TenantCommand::Create {
            name,
            data_dir: Some(dir),
            ..
        }) => tenant_create_local(name, &dir).await,
        Command::Tenant(TenantCommand::Create {
            name,
            data_dir: None,
            conn,
        }) => crate::cli_client::create_tenant(&name, &conn).await,
        Command::Tenant(TenantCommand::List {
            limit,
            cursor,
            conn,
        }) => crate::cli_client::list_tenants(limit, cursor.as_deref(), &conn).await,
        Command::Tenant(TenantCommand::Get { tenant, conn }) => {
            crate::cli_client::show_tenant(&tenant, None, &conn).await
        }
        Command::Tenant(TenantCommand::Suspend { tenant, conn }) => {
            crate::cli_client::show_tenant(&tenant, Some("suspend"), &conn).await
        }
        Command::Tenant(TenantCommand::Unsuspend { tenant, conn }) => {
            crate::cli_client::show_tenant(&tenant, Some("unsuspend"), &conn).await
        }
        Command::Tenant(TenantCommand::Delete {
            tenant, yes: false, ..
        }) => Err(anyhow::anyhow!(
            "`tenant delete {tenant}` removes the tenant and all its data for good; \
             pass --yes to confirm"
        )),
        Command::Tenant(TenantCommand::Delete { tenant, conn, .. }) => {
            crate::cli_client::delete_tenant(&tenant, &conn).await
        }
        Command::Token(cmd) => crate::cli_client::token(cmd).await,
        Command::Quota(cmd) => crate::cli_client::quota(cmd).await,
        Command::Step(StepCommand::Call(args)) => step_call(args).await,
        Command::Step(StepCommand::Inspect(args)) => step_inspect(args),
        Command::Step(StepCommand::Push(args)) => crate::cli_client::push(args).await,
        Command::Step(StepCommand::New(args)) => step_new(args),
        Command::Step(StepCommand::Build(args)) => {
            let dir = args.dir.clone();
            let out = tokio::task::spawn_blocking(move || crate::authoring::build(&dir)).await??;
            println!("{}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Step(StepCommand::Test(args)) => step_test(args).await,
        Command::Step(StepCommand::Doctor(args)) => Ok(step_doctor(args)),
        Command::Workflow(cmd) => crate::cli_client::workflow(cmd).await,
        Command::Exec(cmd) => crate::cli_client::exec(cmd).await,
        Command::Schedule(cmd) => crate::cli_client::schedule(cmd).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = crate::config::Config::load(
        args.config.as_deref(),
        &crate::config::Overrides {
            listen: args.listen,
            data_dir: args.data_dir,
            database: args.database,
        },
    )
    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    crate::check_database(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    eprintln!(
        "stephost listening on http://{} (database {}, API reference at /docs)",
        listener.local_addr()?,
        crate::database_label(&config)
    );
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    };
    crate::run(config, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `tenant create NAME --data-dir DIR`: the tenant straight into the SQLite
/// database a server has made in DIR, which must exist.
async fn tenant_create_local(name: String, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    crate::model::check_name("tenant name", &name).map_err(anyhow::Error::msg)?;
    let path = dir.join(crate::DATABASE_FILE);
    if !path.is_file() {
        bail!(
            "there is no stephost database at {}: start `stephost serve --data-dir {}` there \
             once first, or create the tenant over the API (`stephost tenant create {name}` with \
             an admin token in STEPHOST_TOKEN)",
            path.display(),
            dir.display()
        );
    }
    let store =
        crate::store::sqlite::SqliteStore::open(&path, crate::store::sqlite::Durability::default())
            .with_context(|| format!("cannot open the database {}", path.display()))?;
    let token = crate::api::generate_token().map_err(|_| anyhow::anyhow!("no randomness"))?;
    let now = crate::engine::now_pub();
    let tenant = crate::store::Tenant {
        id: crate::model::TenantId::generate(),
        name,
        created_at: now,
        suspended_at: None,
        quotas: Default::default(),
        egress: Default::default(),
    };
    let record = crate::store::Token {
        id: crate::store::Token::generate_id(),
        tenant: Some(tenant.id.clone()),
        name: None,
        scopes: vec![crate::store::Scope::Full],
        created_at: now,
        expires_at: None,
        revoked_at: None,
    };
    crate::store::Store::create_tenant(&store, &tenant, &record, crate::api::hash_token(&token))
        .await?;
    eprintln!(
        "created tenant {} ({}); its token, shown once:",
        tenant.name, tenant.id
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn sandbox(cache: &CacheArgs) -> anyhow::Result<Sandbox> {
    Ok(Sandbox::new(Settings {
        cache_dir: cache.dir(),
        ..Settings::default()
    })?)
}

fn read_component(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn step_call(args: CallArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&args.input) {
        bail!("--input is not JSON: {e}");
    }
    let bytes = read_component(&args.component)?;
    let sandbox = sandbox(&args.cache)?;
    let limits = sandbox.limits(&Overrides {
        fuel: args.fuel,
        timeout: args.timeout,
        memory_bytes: args.memory,
    })?;
    let step = tokio::task::block_in_place(|| sandbox.prepare(&bytes))
        .with_context(|| format!("{} is not a usable step", args.component.display()))?;
    let caps = Capabilities {
        config: args.config.into_iter().collect::<BTreeMap<_, _>>(),
        secrets: Vec::new(),
        http: None,
    };
    let report = sandbox
        .run(&step, &args.input, &limits, &caps, &Cancel::new())
        .await?;
    let load = Load::of(&step, &args.cache);
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("load".into(), serde_json::to_value(&load)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_report(&report, &load);
    }
    Ok(if report.outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How `step call` got the component ready: loaded precompiled from the
/// cache, or compiled (and kept in the cache, when there is one).
#[derive(Debug, serde::Serialize)]
struct Load {
    /// `cache` or `compiled`.
    source: &'static str,
    /// Time to load or compile, in milliseconds.
    ms: f64,
    /// The cache directory, when one is used.
    cache_dir: Option<PathBuf>,
}

impl Load {
    fn of(step: &sandbox::Prepared, cache: &CacheArgs) -> Self {
        Self {
            source: match step.source {
                sandbox::Source::Cache => "cache",
                sandbox::Source::Compiled => "compiled",
            },
            ms: step.compile_time.as_secs_f64() * 1e3,
            cache_dir: cache.dir(),
        }
    }
}

fn print_report(report: &AttemptReport, load: &Load) {
    for line in &report.logs {
        eprintln!("{}", format_log(line));
    }
    let m = &report.metering;
    let loaded = match (load.source, &load.cache_dir) {
        ("cache", _) => "cache hit".to_owned(),
        (_, Some(dir)) => format!("compiled, kept in {}", dir.display()),
        (_, None) => "compiled, not kept (--no-cache)".to_owned(),
    };
    eprintln!(
        "outcome: {}\nwall time: {:.3} ms  fuel: {}  memory peak: {}  load: {:.1} ms ({loaded})",
        report.outcome.kind(),
        m.wall_time_us as f64 / 1000.0,
        m.fuel_consumed,
        bytesize::ByteSize::b(m.memory_peak_bytes).display().iec(),
        load.ms,
    );
    match &report.outcome {
        sandbox::Outcome::Succeeded { output } => println!("{output}"),
        sandbox::Outcome::Trapped {
            backtrace: Some(bt),
            ..
        } => eprintln!(
            "error: {}\nwasm backtrace:\n{bt}",
            report.outcome.describe()
        ),
        other => eprintln!("error: {}", other.describe()),
    }
}

fn format_log(line: &LogLine) -> String {
    format!(
        "[{:>6} ms] {:<5} {:<6} {}",
        line.at_ms,
        format!("{:?}", line.level).to_lowercase(),
        format!("{:?}", line.source).to_lowercase(),
        line.message
    )
}

fn step_inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_component(&args.component)?;
    let sandbox = sandbox(&args.cache)?;
    let report = match sandbox.inspect(&bytes) {
        Ok(r) => r,
        Err(e @ sandbox::Error::NotAComponent(_)) => {
            println!("verdict: invalid: {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    println!("component: {}", args.component.display());
    println!("digest:    {}", report.digest);
    println!("size:      {} bytes", report.size_bytes);
    println!("exports:");
    for e in &report.exports {
        println!("  {e}");
    }
    println!("imports:");
    for i in &report.imports {
        println!("  {i}");
    }
    match &report.verdict {
        Ok(()) => {
            println!("verdict:   valid step");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("verdict:   invalid: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn step_new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let written = crate::authoring::new_step(&dir, &args.name, args.lang, args.sdk.as_deref())?;
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "next: cd {} && stephost step build && stephost step test",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn step_test(args: DirArgs) -> anyhow::Result<ExitCode> {
    let results = crate::authoring::test(&args.dir).await?;
    if results.is_empty() {
        bail!("{} has no test cases", args.dir.join("tests").display());
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            println!(
                "{} {}: {}",
                if r.passed { "PASS" } else { "FAIL" },
                r.name,
                r.detail
            );
        }
        println!("{} passed, {failed} failed", results.len() - failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn step_doctor(args: DoctorArgs) -> ExitCode {
    use crate::authoring::{Lang, StepToml, doctor};
    let langs = match args.lang {
        Some(l) => vec![l],
        None => match StepToml::load(std::path::Path::new(".")) {
            Ok(m) => vec![m.lang],
            Err(_) => vec![Lang::Rust, Lang::Python, Lang::Js, Lang::C],
        },
    };
    let mut ok = true;
    if args.install {
        if args.lang.is_none() && langs.len() > 1 {
            eprintln!(
                "error: --install needs --lang (rust, python, js or c), or a step.toml in the current directory"
            );
            return ExitCode::from(2);
        }
        let home = crate::config::stephost_home();
        for &lang in &langs {
            let mut say = |line: String| println!("install: {}: {line}", lang.as_str());
            if let Err(e) = crate::authoring::toolchains::install(lang, home.as_deref(), &mut say) {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    for lang in langs {
        for c in doctor(lang) {
            ok &= c.ok;
            println!(
                "{:<7} {:<4} {}: {}",
                lang.as_str(),
                if c.ok { "ok" } else { "MISSING" },
                c.what,
                c.detail
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
