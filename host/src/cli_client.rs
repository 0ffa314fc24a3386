//! The client half of the `stephost` command line: `step push`, `workflow …`,
//! `exec …`, `schedule …`, `tenant create` and `token …` talk to a server
//! through its REST API. This module owns
//! those commands' printing and exit codes. It must not reach into the
//! server's state: everything it knows comes over HTTP, so it works the same
//! against a server on another machine.
//!
//! Exit codes: 0 when the request succeeded, 1 when the server answered with
//! an error, could not be reached, or (for `exec run` and `exec get`) the
//! execution ended `failed`, `cancelled` or `timed_out`, so scripts can test
//! the outcome.

mod executions;
mod http;
mod print;
mod schedules;
mod tenants;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

pub use self::executions::exec;
use self::http::{Client, Error, finish};
use self::print::{cells, table};
pub use self::schedules::{ScheduleCommand, schedule};
pub use self::tenants::{
    QuotaCommand, TokenCommand, create_tenant, delete_tenant, list_tenants, quota, show_tenant,
    token,
};
use crate::engine::Definition;
use crate::model::{ExecutionId, Status, StepName, Timestamp, WorkflowId};

/// How a client command reaches the server. Every client command takes
/// these flags.
#[derive(Args)]
pub struct Conn {
    /// The server's base URL.
    #[arg(
        long,
        env = "STEPHOST_URL",
        default_value = "http://127.0.0.1:8480",
        value_parser = parse_server
    )]
    server: Url,
    /// The bearer token: a tenant's, or an admin token for `tenant` and
    /// admin `token` verbs.
    #[arg(long, env = "STEPHOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("server", &self.server.as_str())
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("json", &self.json)
            .finish()
    }
}

/// `stephost step push NAME FILE`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The step's name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
    name: StepName,
    /// Path to the step component (`.wasm`).
    file: PathBuf,
    #[command(flatten)]
    conn: Conn,
}

/// `stephost workflow …`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Store a workflow definition. A changed definition becomes the next
    /// version; an unchanged one keeps its version.
    Apply {
        /// The definition: JSON, or YAML when the name ends in `.yaml` or
        /// `.yml`.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The workflow id [default: the file's `id` field, else the file
        /// name without its extension].
        #[arg(long)]
        id: Option<WorkflowId>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one version of a workflow.
    Get {
        /// The workflow id.
        id: WorkflowId,
        /// The version to show [default: the latest].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the tenant's workflows at their latest versions.
    List {
        #[command(flatten)]
        conn: Conn,
    },
}

/// `stephost exec …`.
#[derive(Debug, Subcommand)]
pub enum ExecCommand {
    /// Run a workflow and wait for it. Exits 1 when the execution fails, is
    /// cancelled or times out. When the wait ends first, prints the
    /// execution id and exits 0; the execution goes on.
    Run {
        #[command(flatten)]
        submission: SubmitArgs,
        /// How long to wait for the execution, in seconds [default: the
        /// server's].
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Start a workflow without waiting; prints the execution id. With
    /// `--at` or `--delay` the run is postponed (status `scheduled`).
    Start {
        #[command(flatten)]
        submission: SubmitArgs,
        /// Start at this RFC 3339 time instead of now.
        #[arg(long, value_name = "TIME", conflicts_with = "delay")]
        at: Option<Timestamp>,
        /// Start this long from now (`90s`, `15m`, `2h`, `1d`).
        #[arg(long, value_name = "DURATION")]
        delay: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show an execution with its steps. Exits 1 when it failed, was
    /// cancelled or timed out.
    Get {
        /// The execution id.
        #[arg(value_parser = parse_execution_id)]
        id: ExecutionId,
        /// Wait up to this many seconds for the execution to finish.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List executions, newest first.
    List {
        /// Only executions with this status (queued, running, waiting,
        /// paused, succeeded, partially_succeeded, failed, cancelled, timed_out).
        #[arg(long)]
        status: Option<Status>,
        /// Only executions of this workflow.
        #[arg(long)]
        workflow: Option<WorkflowId>,
        /// How many to show, 1 to 100 [default: 20].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
        /// Continue after a previous page (its `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// Only executions created after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        created_after: Option<Timestamp>,
        /// Only executions created before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        created_before: Option<Timestamp>,
        /// Only executions started by this schedule.
        #[arg(long)]
        schedule: Option<crate::model::ScheduleId>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a queued or running execution.
    Cancel {
        /// The execution id.
        #[arg(value_parser = parse_execution_id)]
        id: ExecutionId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Pause an execution: no new step starts (a running attempt finishes)
    /// until it is resumed.
    Pause {
        /// The execution id.
        #[arg(value_parser = parse_execution_id)]
        id: ExecutionId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Resume an execution: continue a paused one, end a waiting one's time
    /// waits now, or restart a failed, cancelled or timed-out one from the
    /// steps that did not succeed.
    Resume {
        /// The execution id.
        #[arg(value_parser = parse_execution_id)]
        id: ExecutionId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Deliver a signal to an execution, for the wait step that waits for
    /// its name. Prints its sequence number once it is stored.
    Signal {
        /// The execution id.
        #[arg(value_parser = parse_execution_id)]
        id: ExecutionId,
        /// The signal's name.
        name: String,
        /// The payload, as JSON.
        #[arg(long, default_value = "null", value_parser = parse_json)]
        payload: Value,
        /// Deduplicates deliveries: a retry with the same key counts once.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// What to run: shared by `exec run` and `exec start`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The workflow id.
    workflow: WorkflowId,
    /// The execution's input, as JSON; the first step receives it.
    #[arg(long, default_value = "{}", value_parser = parse_json)]
    input: Value,
    /// The workflow version to run [default: the latest].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    version: Option<u32>,
    /// Opaque JSON returned with the execution.
    #[arg(long, value_parser = parse_json)]
    custom_data: Option<Value>,
    /// Deduplicates submissions: a retry with the same key and input returns
    /// the first execution instead of starting another.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// Uploads a component as a new version of a step.
pub async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    finish(push_step(args).await)
}

/// Runs a `stephost workflow` command.
pub async fn workflow(cmd: WorkflowCommand) -> anyhow::Result<ExitCode> {
    finish(match cmd {
        WorkflowCommand::Apply { file, id, conn } => workflow_apply(&file, id, &conn).await,
        WorkflowCommand::Get { id, version, conn } => workflow_get(&id, version, &conn).await,
        WorkflowCommand::List { conn } => workflow_list(&conn).await,
    })
}

// ---- step push ----------------------------------------------------------

/// The answer to an upload.
#[derive(Debug, Deserialize)]
struct Uploaded {
    name: String,
    digest: String,
    size_bytes: u64,
    imports: Vec<String>,
    compile_ms: u64,
}

async fn push_step(args: PushArgs) -> Result<ExitCode, Error> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let client = Client::new(&args.conn)?;
    let req = client
        .request(Method::PUT, &["v1", "steps", args.name.as_str()])
        .header(CONTENT_TYPE, "application/wasm")
        .body(bytes);
    let answer = client.send(req).await?;
    if args.conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let up: Uploaded = answer.parse("an upload report")?;
    let what = if answer.status == StatusCode::CREATED {
        "new version"
    } else {
        "unchanged"
    };
    let imports = if up.imports.is_empty() {
        "(none)".to_owned()
    } else {
        up.imports.join(", ")
    };
    print!(
        "{}",
        table(&[
            cells(["name", &up.name]),
            cells(["digest", &up.digest]),
            cells(["size", &format!("{} bytes", up.size_bytes)]),
            cells(["compile_ms", &up.compile_ms.to_string()]),
            cells(["imports", &imports]),
            cells(["version", what]),
        ])
    );
    Ok(ExitCode::SUCCESS)
}

// ---- workflow -----------------------------------------------------------

/// A stored workflow version.
#[derive(Debug, Deserialize)]
struct WorkflowView {
    workflow_id: String,
    version: u32,
    definition: Definition,
    created_at: String,
}

/// A list of workflows.
#[derive(Debug, Deserialize)]
struct WorkflowList {
    items: Vec<WorkflowView>,
}

/// The workflow id for `workflow apply`: `--id`, else the definition's `id`
/// field, else the file stem.
fn workflow_id_for(file: &Path, text: &str, yaml: bool) -> Result<WorkflowId, Error> {
    // A definition that does not parse is sent anyway: the server says
    // precisely what is wrong with it.
    let parsed = if yaml {
        serde_yaml_ng::from_str::<Value>(text).ok()
    } else {
        serde_json::from_str::<Value>(text).ok()
    };
    let from_field = parsed.and_then(|v| v.get("id")?.as_str().map(str::to_owned));
    let id = match from_field {
        Some(id) => id,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "cannot take a workflow id from {}; pass --id",
                    file.display()
                )
            })?,
    };
    id.parse::<WorkflowId>()
        .map_err(|m| anyhow::anyhow!("{m} (taken from {}; pass --id)", file.display()).into())
}

async fn workflow_apply(
    file: &Path,
    id: Option<WorkflowId>,
    conn: &Conn,
) -> Result<ExitCode, Error> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let yaml = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    let id = match id {
        Some(id) => id,
        None => workflow_id_for(file, &text, yaml)?,
    };
    let client = Client::new(conn)?;
    let req = client
        .request(Method::PUT, &["v1", "workflows", id.as_str()])
        .header(
            CONTENT_TYPE,
            if yaml {
                "application/yaml"
            } else {
                "application/json"
            },
        )
        .body(text);
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let view: WorkflowView = answer.parse("a workflow")?;
    let what = if answer.status == StatusCode::CREATED {
        "created"
    } else {
        "unchanged"
    };
    println!(
        "workflow {} version {} ({what})",
        view.workflow_id, view.version
    );
    Ok(ExitCode::SUCCESS)
}

async fn workflow_get(
    id: &WorkflowId,
    version: Option<u32>,
    conn: &Conn,
) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let mut req = client.request(Method::GET, &["v1", "workflows", id.as_str()]);
    if let Some(v) = version {
        req = req.query(&[("version", v)]);
    }
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let view: WorkflowView = answer.parse("a workflow")?;
    let mut summary = vec![
        cells(["workflow", &view.workflow_id]),
        cells(["version", &view.version.to_string()]),
        cells(["created_at", &view.created_at]),
    ];
    if let Some(d) = &view.definition.description {
        summary.push(cells(["description", d]));
    }
    print!("{}", table(&summary));
    println!();
    let mut steps = vec![cells(["ID", "STEP", "INPUT"])];
    steps.extend(view.definition.steps.iter().map(|s| {
        let (step, input) = match (&s.step, &s.wait) {
            (Some(step), _) => (
                step.clone(),
                s.input
                    .as_ref()
                    .map_or_else(|| "(previous output)".to_owned(), Value::to_string),
            ),
            (None, Some(wait)) => (
                crate::engine::WAIT_STEP.to_owned(),
                serde_json::to_string(wait).unwrap_or_default(),
            ),
            (None, None) => (String::new(), String::new()),
        };
        cells([&s.id, &step, &input])
    }));
    print!("{}", table(&steps));
    Ok(ExitCode::SUCCESS)
}

async fn workflow_list(conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let answer = client
        .send(client.request(Method::GET, &["v1", "workflows"]))
        .await?;
    if conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let list: WorkflowList = answer.parse("a list of workflows")?;
    if list.items.is_empty() {
        eprintln!("no workflows");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![cells(["ID", "VERSION", "STEPS", "CREATED_AT"])];
    rows.extend(list.items.iter().map(|w| {
        cells([
            &w.workflow_id,
            &w.version.to_string(),
            &w.definition.steps.len().to_string(),
            &w.created_at,
        ])
    }));
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

// ---- argument parsers ---------------------------------------------------

fn parse_server(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!("`{s}` is not an http:// or https:// URL"));
    }
    Ok(url)
}

fn parse_json(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

fn parse_execution_id(s: &str) -> Result<ExecutionId, String> {
    if s.is_empty() {
        return Err("an execution id cannot be empty".to_owned());
    }
    Ok(ExecutionId::new_unchecked(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_id_comes_from_the_file_then_its_name() {
        let id = |file: &str, text: &str, yaml: bool| {
            workflow_id_for(Path::new(file), text, yaml)
                .map(|id| id.to_string())
                .ok()
        };
        assert_eq!(
            id("dir/orders.yaml", "id: billing\nsteps: []\n", true).as_deref(),
            Some("billing")
        );
        assert_eq!(
            id("dir/orders.yaml", "steps: []\n", true).as_deref(),
            Some("orders")
        );
        assert_eq!(id("x.json", "{", false).as_deref(), Some("x"));
        assert_eq!(id("bad name.json", "{}", false), None);
    }
}
