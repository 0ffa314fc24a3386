//! `stephost tenant …` and `stephost token …`: tenants and tokens over the
//! API, with an admin token (or, for a tenant's own tokens and record, the
//! tenant's token).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::Conn;
use super::http::{Client, Error, finish};
use super::print::{cells, table};

/// Whose tokens a `token` verb works on: one tenant's, or the admin's.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Owner {
    /// A tenant's tokens: its id or name.
    #[arg(long)]
    tenant: Option<String>,
    /// The admin tokens (needs an admin token).
    #[arg(long)]
    admin: bool,
}

impl Owner {
    fn path(&self) -> Vec<&str> {
        match &self.tenant {
            Some(tenant) => vec!["v1", "tenants", tenant, "tokens"],
            None => vec!["v1", "admin", "tokens"],
        }
    }
}

/// `stephost token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it on stdout (it is shown once); its id
    /// goes to stderr.
    Create {
        #[command(flatten)]
        owner: Owner,
        /// A name to recognise it by.
        #[arg(long)]
        name: Option<String>,
        /// How long it works, as a duration (`30d`, `12h`, `PT1H`)
        /// [default: it never expires].
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// When it stops working, RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
        /// What it may do: read, run, full; repeat or separate with commas
        /// [default: full].
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List tokens, oldest first (never their secrets).
    List {
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a token by its id: from the next request on it gets 401.
    Revoke {
        /// The token's id (`tok_…`).
        token_id: String,
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Serialize)]
struct CreateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<&'a [String]>,
}

#[derive(Debug, Deserialize)]
struct Created {
    token_id: String,
    token: String,
}

#[derive(Debug, Deserialize)]
struct Shown {
    token_id: String,
    name: Option<String>,
    scopes: Vec<String>,
    created_at: String,
    expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct List {
    items: Vec<Shown>,
}

/// Runs a `stephost token` command.
pub async fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    finish(match cmd {
        TokenCommand::Create {
            owner,
            name,
            expires_in,
            expires_at,
            scopes,
            conn,
        } => {
            let body = CreateBody {
                name: name.as_deref(),
                expires_in: expires_in.as_deref(),
                expires_at: expires_at.as_deref(),
                scopes: (!scopes.is_empty()).then_some(&scopes[..]),
            };
            create(&owner, &body, &conn).await
        }
        TokenCommand::List { owner, conn } => list(&owner, &conn).await,
        TokenCommand::Revoke {
            token_id,
            owner,
            conn,
        } => revoke(&owner, &token_id, &conn).await,
    })
}

async fn create(owner: &Owner, body: &CreateBody<'_>, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let req = client.request(Method::POST, &owner.path()).json(body);
    let answer = client.send(req).await?;
    if conn.json {
        answer.print_json()?;
    } else {
        let created: Created = answer.parse("a new token")?;
        eprintln!("created token {}; the token, shown once:", created.token_id);
        println!("{}", created.token);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(owner: &Owner, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let answer = client
        .send(client.request(Method::GET, &owner.path()))
        .await?;
    if conn.json {
        answer.print_json()?;
        return Ok(ExitCode::SUCCESS);
    }
    let list: List = answer.parse("a list of tokens")?;
    if list.items.is_empty() {
        eprintln!("no tokens");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![cells(["ID", "NAME", "SCOPES", "CREATED", "EXPIRES"])];
    rows.extend(list.items.iter().map(|t| {
        cells([
            &t.token_id,
            t.name.as_deref().unwrap_or("-"),
            &t.scopes.join(","),
            &t.created_at,
            t.expires_at.as_deref().unwrap_or("never"),
        ])
    }));
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

async fn revoke(owner: &Owner, token_id: &str, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let mut path = owner.path();
    path.push(token_id);
    client.send(client.request(Method::DELETE, &path)).await?;
    if !conn.json {
        eprintln!("revoked token {token_id}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Deserialize)]
struct TenantCreated {
    tenant: TenantShown,
    token: String,
    token_id: String,
}

#[derive(Debug, Deserialize)]
struct TenantShown {
    id: String,
    name: String,
    created_at: String,
    suspended_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TenantPage {
    items: Vec<TenantShown>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct PageQuery<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

/// `stephost tenant list`: one page of tenants, oldest first.
pub async fn list_tenants(
    limit: Option<u32>,
    cursor: Option<&str>,
    conn: &Conn,
) -> anyhow::Result<ExitCode> {
    finish(
        async {
            let client = Client::new(conn)?;
            let req = client
                .request(Method::GET, &["v1", "tenants"])
                .query(&PageQuery { limit, cursor });
            let answer = client.send(req).await?;
            if conn.json {
                answer.print_json()?;
                return Ok(ExitCode::SUCCESS);
            }
            let page: TenantPage = answer.parse("a page of tenants")?;
            if page.items.is_empty() {
                eprintln!("no tenants");
            } else {
                let mut rows = vec![cells(["ID", "NAME", "CREATED", "SUSPENDED"])];
                rows.extend(page.items.iter().map(|t| {
                    cells([
                        &t.id,
                        &t.name,
                        &t.created_at,
                        t.suspended_at.as_deref().unwrap_or("-"),
                    ])
                }));
                print!("{}", table(&rows));
            }
            if let Some(cursor) = &page.next_cursor {
                eprintln!("more: pass --cursor {cursor}");
            }
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}

/// `stephost tenant get|suspend|unsuspend NAME`: the tenant as it is (after
/// the action, if any).
pub async fn show_tenant(
    tenant: &str,
    action: Option<&str>,
    conn: &Conn,
) -> anyhow::Result<ExitCode> {
    finish(
        async {
            let client = Client::new(conn)?;
            let mut path = vec!["v1", "tenants", tenant];
            let method = match action {
                Some(action) => {
                    path.push(action);
                    Method::POST
                }
                None => Method::GET,
            };
            let answer = client.send(client.request(method, &path)).await?;
            if conn.json {
                answer.print_json()?;
                return Ok(ExitCode::SUCCESS);
            }
            let t: TenantShown = answer.parse("a tenant")?;
            let rows = vec![
                cells(["id:", &t.id]),
                cells(["name:", &t.name]),
                cells(["created:", &t.created_at]),
                cells([
                    "suspended:",
                    t.suspended_at.as_deref().unwrap_or("no (active)"),
                ]),
            ];
            print!("{}", table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}

/// `stephost tenant delete NAME --yes`.
pub async fn delete_tenant(tenant: &str, conn: &Conn) -> anyhow::Result<ExitCode> {
    finish(
        async {
            let client = Client::new(conn)?;
            let req = client.request(Method::DELETE, &["v1", "tenants", tenant]);
            client.send(req).await?;
            if !conn.json {
                eprintln!("deleted tenant {tenant} and all its data");
            }
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}

/// `stephost tenant create NAME` over the API, with an admin token.
pub async fn create_tenant(name: &str, conn: &Conn) -> anyhow::Result<ExitCode> {
    finish(
        async {
            let client = Client::new(conn)?;
            let req = client
                .request(Method::POST, &["v1", "tenants"])
                .json(&serde_json::json!({"name": name}));
            let answer = client.send(req).await?;
            if conn.json {
                answer.print_json()?;
            } else {
                let created: TenantCreated = answer.parse("a new tenant")?;
                eprintln!(
                    "created tenant {} ({}); its token {}, shown once:",
                    created.tenant.name, created.tenant.id, created.token_id
                );
                println!("{}", created.token);
            }
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}

/// `stephost quota …`.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Show a tenant's limits (its own, else the server's defaults) and
    /// usage. Without TENANT, the calling tenant's own.
    Get {
        /// The tenant's id or name (needs an admin token).
        tenant: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set some of a tenant's limits (admin), keeping the others: each
    /// LIMIT=VALUE (`max_steps=50`, `submissions_per_second=2.5`), or
    /// LIMIT=default to fall back to the server's default. Limits:
    /// submissions_per_second, submissions_burst, max_steps,
    /// max_workflows, max_component_bytes, max_secrets,
    /// max_concurrent_executions, max_queued_executions, weight.
    Set {
        /// The tenant's id or name.
        tenant: String,
        /// LIMIT=VALUE, one or more.
        #[arg(required = true, value_name = "LIMIT=VALUE")]
        limits: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a `stephost quota` command.
pub async fn quota(cmd: QuotaCommand) -> anyhow::Result<ExitCode> {
    finish(match cmd {
        QuotaCommand::Get { tenant, conn } => show_quotas(tenant.as_deref(), &conn).await,
        QuotaCommand::Set {
            tenant,
            limits,
            conn,
        } => set_quotas(&tenant, &limits, &conn).await,
    })
}

fn quota_path(tenant: Option<&str>) -> Vec<&str> {
    match tenant {
        Some(t) => vec!["v1", "tenants", t, "quotas"],
        None => vec!["v1", "quotas"],
    }
}

fn print_quotas(report: &serde_json::Value) {
    let limits = &report["limits"];
    let usage = &report["usage"];
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut rows = vec![cells(["LIMIT", "VALUE", "OWN", "USAGE"])];
    for (limit, used) in [
        ("submissions_per_second", None),
        ("submissions_burst", None),
        ("max_steps", Some("steps")),
        ("max_workflows", Some("workflows")),
        ("max_component_bytes", Some("component_bytes")),
        ("max_secrets", Some("secrets")),
        ("max_concurrent_executions", Some("running_executions")),
        ("max_queued_executions", Some("queued_executions")),
        ("weight", None),
    ] {
        let own = if report["overrides"][limit].is_null() {
            "default"
        } else {
            "own"
        };
        rows.push(cells([
            limit,
            &show(&limits[limit]),
            own,
            &used.map_or_else(|| "-".to_owned(), |u| show(&usage[u])),
        ]));
    }
    print!("{}", table(&rows));
}

async fn show_quotas(tenant: Option<&str>, conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let answer = client
        .send(client.request(Method::GET, &quota_path(tenant)))
        .await?;
    if conn.json {
        answer.print_json()?;
    } else {
        print_quotas(&answer.parse("quotas")?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_quotas(tenant: &str, limits: &[String], conn: &Conn) -> Result<ExitCode, Error> {
    let client = Client::new(conn)?;
    let path = quota_path(Some(tenant));
    let current: serde_json::Value = client
        .send(client.request(Method::GET, &path))
        .await?
        .parse("quotas")?;
    let mut overrides = current["overrides"].clone();
    for pair in limits {
        let Some((limit, value)) = pair.split_once('=') else {
            return Err(Error::Other(anyhow::anyhow!(
                "`{pair}` is not LIMIT=VALUE (for example max_steps=50)"
            )));
        };
        if overrides.get(limit).is_none() {
            return Err(Error::Other(anyhow::anyhow!(
                "`{limit}` is not a quota: use submissions_per_second, submissions_burst, \
                 max_steps, max_workflows, max_component_bytes, max_secrets, \
                 max_concurrent_executions, max_queued_executions or weight"
            )));
        }
        overrides[limit] = if value == "default" {
            serde_json::Value::Null
        } else {
            serde_json::from_str::<serde_json::Number>(value)
                .map(serde_json::Value::Number)
                .map_err(|_| {
                    Error::Other(anyhow::anyhow!(
                        "`{value}` for {limit} is not a number (or `default`)"
                    ))
                })?
        };
    }
    let answer = client
        .send(client.request(Method::PUT, &path).json(&overrides))
        .await?;
    if conn.json {
        answer.print_json()?;
    } else {
        print_quotas(&answer.parse("quotas")?);
    }
    Ok(ExitCode::SUCCESS)
}
