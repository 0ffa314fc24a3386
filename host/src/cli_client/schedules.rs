//! `stephost schedule …`: create, list, show, pause, resume, trigger and
//! delete cron schedules.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Client, Error, finish};
use super::print::{cells, table};
use super::{Conn, parse_json};
use crate::model::{Overlap, ScheduleId, ScheduleState, Timestamp, WorkflowId};

/// `stephost schedule …`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule that runs a workflow at the ticks of a cron
    /// expression.
    Create(Box<CreateArgs>),
    /// List schedules, newest first.
    List {
        /// Only schedules of this workflow.
        #[arg(long)]
        workflow: Option<WorkflowId>,
        /// Only schedules in this state (active, paused, invalid,
        /// completed).
        #[arg(long)]
        state: Option<ScheduleState>,
        /// Page size, 1 to 100.
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a schedule: its next ticks, counters and latest executions.
    Get {
        /// The schedule id.
        id: ScheduleId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Pause a schedule: ticks pass without firing.
    Pause {
        /// The schedule id.
        id: ScheduleId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Resume a paused schedule from now.
    Resume {
        /// The schedule id.
        id: ScheduleId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run the schedule's workflow once now; prints the execution id.
    Trigger {
        /// The schedule id.
        id: ScheduleId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a schedule (its executions stay).
    Delete {
        /// The schedule id.
        id: ScheduleId,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `stephost schedule create WORKFLOW --cron EXPR`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The workflow each tick runs.
    workflow: WorkflowId,
    /// The cron expression: 5 fields (minute hour day-of-month month
    /// day-of-week) or 6 with leading seconds.
    #[arg(long)]
    cron: String,
    /// The IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// The schedule id [default: generated].
    #[arg(long)]
    id: Option<ScheduleId>,
    /// The workflow version [default: the latest at each tick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    version: Option<u32>,
    /// The input of every execution, as JSON.
    #[arg(long, default_value = "{}", value_parser = parse_json)]
    input: Value,
    /// Opaque JSON copied to every execution.
    #[arg(long, value_parser = parse_json)]
    custom_data: Option<Value>,
    /// What a tick does while the previous execution runs: skip,
    /// buffer_one, allow_all or cancel_other.
    #[arg(long, default_value = "skip")]
    overlap: Overlap,
    /// How old a missed tick may be and still fire after downtime.
    #[arg(long, default_value = "1h")]
    catchup_window: String,
    /// No tick before this RFC 3339 time.
    #[arg(long)]
    start_at: Option<Timestamp>,
    /// No tick after this RFC 3339 time.
    #[arg(long)]
    end_at: Option<Timestamp>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// The body of `POST /v1/schedules`.
#[derive(Debug, Serialize)]
struct CreateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_id: Option<&'a ScheduleId>,
    workflow_id: &'a WorkflowId,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_version: Option<u32>,
    cron: &'a str,
    timezone: &'a str,
    input_data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_data: Option<&'a Value>,
    overlap: &'static str,
    catchup_window: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_at: Option<String>,
    paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// What the CLI prints of a schedule.
#[derive(Debug, Deserialize)]
struct Shown {
    schedule_id: String,
    workflow_id: String,
    cron: String,
    timezone: String,
    state: ScheduleState,
    overlap: Overlap,
    #[serde(default)]
    invalid_reason: Option<String>,
    next_fire_times: Vec<Timestamp>,
    fired: u64,
    skipped: u64,
    missed: u64,
    last_executions: Vec<Run>,
}

#[derive(Debug, Deserialize)]
struct Run {
    execution_id: String,
    scheduled_at: Timestamp,
    #[serde(default)]
    triggered: bool,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Shown>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    execution_id: String,
}

/// Runs a `stephost schedule` command.
pub async fn schedule(cmd: ScheduleCommand) -> anyhow::Result<ExitCode> {
    finish(match cmd {
        ScheduleCommand::Create(args) => create(&args).await,
        ScheduleCommand::List {
            workflow,
            state,
            limit,
            cursor,
            conn,
        } => {
            let query = ListQuery {
                workflow_id: workflow.as_ref().map(WorkflowId::as_str),
                state: state.map(ScheduleState::as_str),
                limit,
                cursor: cursor.as_deref(),
            };
            list(&query, &conn).await
        }
        ScheduleCommand::Get { id, conn } => show(&id, Method::GET, None, &conn).await,
        ScheduleCommand::Pause { id, conn } => show(&id, Method::POST, Some("pause"), &conn).await,
        ScheduleCommand::Resume { id, conn } => {
            show(&id, Method::POST, Some("resume"), &conn).await
        }
        ScheduleCommand::Trigger { id, conn } => trigger(&id, &conn).await,
        ScheduleCommand::Delete { id, conn } => delete(&id, &conn).await,
    })
}

async fn create(args: &CreateArgs) -> Result<ExitCode, Error> {
    let client = Client::new(&args.conn)?;
    let body = CreateBody {
        schedule_id: args.id.as_ref(),
        workflow_id: &args.workflow,
        workflow_version: args.version,
        cron: &args.cron,
        timezone: &args.timezone,
        input_data: &args.input,
        custom_data: args.custom_data.as_ref(),
        overlap: args.overlap.as_str(),
        catchup_window: &args.catchup_window,
        start_at: args.start_at.map(|t| t.to_string()),
        end_at: args.end_at.map(|t| t.to_string()),
        paused: args.paused,
        description: args.description.as_deref(),
    };
    let req = client
        .request(Method::POST, &["v1", "schedules"])
        .json(&body);
    let answer = client.send(req).await?;
    if args.conn.json {
        answer.print_json()?;
    } else {
        print_schedule(&answer.parse("a schedule")?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(query: &ListQuery<'_>, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let req = client
        .request(Method::GET, &["v1", "schedules"])
        .query(query);
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let page: Page = answer.parse("a page of schedules")?;
    if page.items.is_empty() {
        eprintln!("no schedules");
    } else {
        let mut rows = vec![cells([
            "ID", "STATE", "WORKFLOW", "CRON", "TIMEZONE", "NEXT", "FIRED",
        ])];
        rows.extend(page.items.iter().map(|s| {
            cells([
                &s.schedule_id,
                s.state.as_str(),
                &s.workflow_id,
                &s.cron,
                &s.timezone,
                &s.next_fire_times
                    .first()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                &s.fired.to_string(),
            ])
        }));
        print!("{}", table(&rows));
    }
    if let Some(cursor) = &page.next_cursor {
        eprintln!("more: pass --cursor {cursor}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `get`, `pause` and `resume`: one request, then the schedule.
async fn show(
    id: &ScheduleId,
    method: Method,
    action: Option<&str>,
    conn: &Conn,
) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let mut path = vec!["v1", "schedules", id.as_str()];
    path.extend(action);
    let answer = client.send(client.request(method, &path)).await?;
    if conn.json {
        answer.print_json()?;
    } else {
        print_schedule(&answer.parse("a schedule")?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn trigger(id: &ScheduleId, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let req = client.request(Method::POST, &["v1", "schedules", id.as_str(), "trigger"]);
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
    } else {
        let accepted: Accepted = answer.parse("an accepted execution")?;
        println!("{}", accepted.execution_id);
        eprintln!(
            "started; follow it with `stephost exec get {} --wait 60`",
            accepted.execution_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(id: &ScheduleId, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let req = client.request(Method::DELETE, &["v1", "schedules", id.as_str()]);
    client.send(req).await?;
    if !conn.json {
        eprintln!("deleted schedule {id}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_schedule(s: &Shown) {
    println!("schedule   {}", s.schedule_id);
    println!("state      {}", s.state.as_str());
    if let Some(why) = &s.invalid_reason {
        println!("reason     {why}");
    }
    println!("workflow   {}", s.workflow_id);
    println!("cron       {} ({})", s.cron, s.timezone);
    println!("overlap    {}", s.overlap.as_str());
    println!(
        "counters   fired {}, skipped {}, missed {}",
        s.fired, s.skipped, s.missed
    );
    for (i, t) in s.next_fire_times.iter().enumerate() {
        let label = if i == 0 { "next" } else { "" };
        println!("{label:<10} {t}");
    }
    if !s.last_executions.is_empty() {
        let mut rows = vec![cells(["EXECUTION", "SCHEDULED_AT", "STATUS", "BY"])];
        rows.extend(s.last_executions.iter().map(|r| {
            cells([
                &r.execution_id,
                &r.scheduled_at.to_string(),
                r.status.as_deref().unwrap_or("-"),
                if r.triggered { "trigger" } else { "tick" },
            ])
        }));
        print!("{}", table(&rows));
    }
}
