//! `stephost exec …`: run, start (maybe postponed), get, list, cancel,
//! pause, resume and signal executions.

use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Client, Error, finish};
use super::print::{cells, print_execution, table};
use super::{Conn, ExecCommand, SubmitArgs};
use crate::model::{Execution, ExecutionId, Status, WorkflowId};

/// Runs a `stephost exec` command.
pub async fn exec(cmd: ExecCommand) -> anyhow::Result<ExitCode> {
    finish(match cmd {
        ExecCommand::Run {
            submission,
            wait,
            conn,
        } => exec_submit(&submission, Route::Sync { wait }, &conn).await,
        ExecCommand::Start {
            submission,
            at,
            delay,
            conn,
        } => {
            let later = Later {
                scheduled_for: at.map(|t| t.to_string()),
                delay,
            };
            exec_submit(&submission, Route::Async(later), &conn).await
        }
        ExecCommand::Get { id, wait, conn } => exec_get(&id, wait, &conn).await,
        ExecCommand::List {
            status,
            workflow,
            limit,
            cursor,
            created_after,
            created_before,
            schedule,
            conn,
        } => {
            let query = ListQuery {
                status: status.map(Status::as_str),
                workflow_id: workflow.as_ref().map(WorkflowId::as_str),
                limit,
                cursor: cursor.as_deref(),
                created_after: created_after.map(|t| t.to_string()),
                created_before: created_before.map(|t| t.to_string()),
                schedule_id: schedule.as_ref().map(crate::model::ScheduleId::as_str),
            };
            exec_list(&query, &conn).await
        }
        ExecCommand::Cancel { id, conn } => exec_change(&id, "cancel", &conn).await,
        ExecCommand::Pause { id, conn } => exec_change(&id, "pause", &conn).await,
        ExecCommand::Resume { id, conn } => exec_change(&id, "resume", &conn).await,
        ExecCommand::Signal {
            id,
            name,
            payload,
            idempotency_key,
            conn,
        } => exec_signal(&id, &name, &payload, idempotency_key.as_deref(), &conn).await,
    })
}

/// The body of `POST /v1/executions[/async]`.
#[derive(Debug, Serialize)]
struct RunRequest<'a> {
    workflow_id: &'a WorkflowId,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_version: Option<u32>,
    input_data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_data: Option<&'a Value>,
    #[serde(flatten)]
    later: Later,
}

/// When `exec start` postpones the run to.
#[derive(Debug, Clone, Default, Serialize)]
struct Later {
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<String>,
}

/// A handed-off or accepted execution.
#[derive(Debug, Deserialize)]
struct Accepted {
    status: Status,
    execution_id: String,
}

/// The one field that an execution and an acceptance share, enough to pick
/// the exit code even with `--json`.
#[derive(Debug, Deserialize)]
struct StatusOnly {
    status: Status,
}

/// The query of `GET /v1/executions`.
#[derive(Debug, Serialize)]
struct ListQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_id: Option<&'a str>,
}

/// A page of executions.
#[derive(Debug, Deserialize)]
struct ExecutionPage {
    items: Vec<Execution>,
    next_cursor: Option<String>,
}

/// Exit code 1 for an execution that ended badly, so scripts can test it.
fn exit_code(status: Status) -> ExitCode {
    match status {
        Status::Failed | Status::Cancelled | Status::TimedOut => ExitCode::FAILURE,
        Status::Scheduled
        | Status::Queued
        | Status::Running
        | Status::Waiting
        | Status::Paused
        | Status::Succeeded
        | Status::PartiallySucceeded => ExitCode::SUCCESS,
    }
}

/// Which submission route to take.
#[derive(Debug, Clone)]
enum Route {
    /// `exec run`: wait up to `wait` seconds (the server's default when
    /// `None`).
    Sync { wait: Option<u64> },
    /// `exec start`: answer at once; maybe postponed.
    Async(Later),
}

async fn exec_submit(sub: &SubmitArgs, route: Route, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let body = RunRequest {
        workflow_id: &sub.workflow,
        workflow_version: sub.version,
        input_data: &sub.input,
        custom_data: sub.custom_data.as_ref(),
        later: match &route {
            Route::Async(later) => later.clone(),
            Route::Sync { .. } => Later::default(),
        },
    };
    let mut req = match route {
        Route::Sync {
            wait: Some(seconds),
        } => client
            .request(Method::POST, &["v1", "executions"])
            .query(&[("wait_for_seconds", seconds)]),
        Route::Sync { wait: None } => client.request(Method::POST, &["v1", "executions"]),
        Route::Async(_) => client.request(Method::POST, &["v1", "executions", "async"]),
    }
    .json(&body);
    if let Some(key) = &sub.idempotency_key {
        req = req.header("idempotency-key", key);
    }
    let answer = client.send(req).await?;
    let status = answer.parse::<StatusOnly>("an execution")?.status;
    if conn.json {
        answer.print_json()?;
    } else if answer.status == StatusCode::ACCEPTED {
        let accepted: Accepted = answer.parse("an accepted execution")?;
        let id = &accepted.execution_id;
        // The id alone on stdout, so that `ID=$(stephost exec start wf)`
        // works; the explanation goes to stderr.
        println!("{id}");
        let why = match route {
            Route::Sync { .. } => "the wait ended before the execution did; it goes on",
            Route::Async(_) => "accepted",
        };
        eprintln!(
            "{why} ({}); follow it with `stephost exec get {id} --wait 60`",
            accepted.status.as_str()
        );
    } else {
        print_execution(&answer.parse("an execution")?);
    }
    Ok(exit_code(status))
}

async fn exec_get(id: &ExecutionId, wait: Option<u64>, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let mut req = client.request(Method::GET, &["v1", "executions", id.as_str()]);
    if let Some(seconds) = wait {
        req = req.query(&[("wait_for_seconds", seconds)]);
    }
    let answer = client.send(req).await?;
    let status = answer.parse::<StatusOnly>("an execution")?.status;
    if conn.json {
        answer.print_json()?;
    } else {
        print_execution(&answer.parse("an execution")?);
    }
    Ok(exit_code(status))
}

async fn exec_list(query: &ListQuery<'_>, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let req = client
        .request(Method::GET, &["v1", "executions"])
        .query(query);
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let page: ExecutionPage = answer.parse("a page of executions")?;
    if page.items.is_empty() {
        eprintln!("no executions");
    } else {
        let mut rows = vec![cells([
            "ID",
            "STATUS",
            "WORKFLOW",
            "VERSION",
            "CREATED_AT",
            "DURATION_MS",
        ])];
        rows.extend(page.items.iter().map(|e| {
            cells([
                e.execution_id.as_str(),
                e.status.as_str(),
                e.workflow_id.as_str(),
                &e.workflow_version.to_string(),
                &e.created_at.to_string(),
                &e.duration_ms
                    .map_or_else(|| "-".to_owned(), |d| format!("{d:.1}")),
            ])
        }));
        print!("{}", table(&rows));
    }
    if let Some(cursor) = &page.next_cursor {
        eprintln!("more: pass --cursor {cursor}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `exec cancel|pause|resume`: `action` is the path segment.
async fn exec_change(id: &ExecutionId, action: &str, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let req = client.request(Method::POST, &["v1", "executions", id.as_str(), action]);
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
    } else {
        print_execution(&answer.parse("an execution")?);
        if answer.status == StatusCode::ACCEPTED {
            eprintln!(
                "the {action} is stored and will take effect; follow it with `stephost exec get {id}`"
            );
        }
    }
    // The user asked for the change; getting it is success.
    Ok(ExitCode::SUCCESS)
}

/// The answer to a signal delivery.
#[derive(Debug, Deserialize)]
struct SignalAccepted {
    sequence: u64,
    duplicate: bool,
}

async fn exec_signal(
    id: &ExecutionId,
    name: &str,
    payload: &Value,
    key: Option<&str>,
    conn: &Conn,
) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let mut req = client
        .request(
            Method::POST,
            &["v1", "executions", id.as_str(), "signals", name],
        )
        .json(payload);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
    } else {
        let sent: SignalAccepted = answer.parse("a signal delivery")?;
        let what = if sent.duplicate {
            "already stored"
        } else {
            "stored"
        };
        println!("signal {name} {what} as #{}", sent.sequence);
    }
    Ok(ExitCode::SUCCESS)
}
