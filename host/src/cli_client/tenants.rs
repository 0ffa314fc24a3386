//! `stephost tenant create` and `stephost token …`: tenants and tokens over
//! the API, with an admin token (or, for a tenant's own tokens, the
//! tenant's `full` token).

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
