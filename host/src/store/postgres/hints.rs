//! Hints between the nodes sharing a database, by `LISTEN/NOTIFY`.
//!
//! A hint says "look now" (see [`Hint`]); nothing depends on it arriving,
//! since every consumer also polls. So hints are sent *after* the write
//! they describe has committed, from a task of their own, never inside the
//! write's transaction: a `NOTIFY` serialises the commits of every
//! transaction that sends one (PostgreSQL takes a database-wide lock for
//! the notification queue until the commit is flushed), which would cap
//! the commit rate of the whole cluster. The sender instead coalesces what
//! accumulated while it sent the previous batch into one `pg_notify` round
//! trip: one committed state per execution, one "work is due" however many
//! rows became due, and, past [`MAX_PENDING`] distinct executions, a single
//! "resync" that makes every node look at everything.
//!
//! Payloads are lines: the sender's tag (so a node ignores its own hints),
//! then `w` (work is due), `s` (schedules changed), `r` (resync),
//! `e <execution>` (an event reached its inbox) or `c <execution>
//! <version>` (it committed a new state). A payload stays under
//! PostgreSQL's 8000-byte limit; a batch that does not fit goes as several.
//!
//! The listener holds one connection of its own (not from the store's
//! pool). When it loses the connection, it reconnects, listens again and
//! hands out a [`Hint::Resync`], since whatever was sent meanwhile is lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::model::ExecutionId;
use crate::store::{Hint, Result};

/// The most distinct executions a batch names before it becomes a resync.
const MAX_PENDING: usize = 4096;

/// The most bytes of one notification payload (PostgreSQL refuses 8000).
const MAX_PAYLOAD: usize = 7900;

/// How many hints a slow subscriber may fall behind before it is told to
/// resync.
const SUBSCRIBER_BUFFER: usize = 4096;

/// How long the listener waits before reconnecting after an error.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What accumulated since the last batch was sent.
#[derive(Default)]
struct Pending {
    work: bool,
    schedules: bool,
    resync: bool,
    events: HashSet<ExecutionId>,
    committed: HashMap<ExecutionId, u64>,
}

impl Pending {
    fn add(&mut self, hint: Hint) {
        match hint {
            Hint::Work => self.work = true,
            Hint::Schedules => self.schedules = true,
            Hint::Resync => self.resync = true,
            Hint::Event(id) => {
                self.events.insert(id);
            }
            Hint::Committed(id, v) => {
                let newest = self.committed.entry(id).or_insert(v);
                *newest = (*newest).max(v);
            }
        }
        if self.events.len() + self.committed.len() > MAX_PENDING {
            self.resync = true;
        }
        if self.resync {
            self.events.clear();
            self.committed.clear();
        }
    }

    fn lines(self) -> Vec<String> {
        if self.resync {
            return vec!["r".to_owned()];
        }
        let mut lines = Vec::new();
        if self.work {
            lines.push("w".to_owned());
        }
        if self.schedules {
            lines.push("s".to_owned());
        }
        lines.extend(self.events.into_iter().map(|id| format!("e {id}")));
        lines.extend(
            self.committed
                .into_iter()
                .map(|(id, v)| format!("c {id} {v}")),
        );
        lines
    }
}

/// The hints of one store: what it sends and what it hears.
pub(super) struct Hints {
    channel: String,
    tag: String,
    pending: Mutex<Pending>,
    ready: Notify,
    heard: broadcast::Sender<Hint>,
    stop: CancellationToken,
}

impl Hints {
    /// Listens on the channel of `schema` (failing if the database refuses)
    /// and starts the sender and listener tasks, which end with `stop`.
    pub(super) async fn start(
        pool: &PgPool,
        options: &PgConnectOptions,
        schema: &str,
    ) -> Result<Arc<Self>> {
        let hints = Arc::new(Self {
            channel: channel(schema),
            tag: uuid::Uuid::now_v7().simple().to_string(),
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            heard: broadcast::channel(SUBSCRIBER_BUFFER).0,
            stop: CancellationToken::new(),
        });
        let listener = hints.listen(options).await?;
        tokio::spawn(send_loop(hints.clone(), pool.clone()));
        tokio::spawn(listen_loop(hints.clone(), options.clone(), listener));
        Ok(hints)
    }

    /// Queues a hint for the other nodes.
    pub(super) fn send(&self, hint: Hint) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(hint);
        self.ready.notify_one();
    }

    /// A new subscription to the hints of other nodes.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Hint> {
        self.heard.subscribe()
    }

    /// Ends both tasks.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    async fn listen(&self, options: &PgConnectOptions) -> Result<PgListener> {
        // A pool of one that never recycles its connection: the listener's
        // own, so that a busy store pool cannot starve it.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(&self.channel).await?;
        Ok(listener)
    }

    /// Turns a payload from the channel into hints; those this store sent
    /// itself are dropped.
    fn heard(&self, payload: &str) {
        let mut lines = payload.lines();
        if lines.next() == Some(self.tag.as_str()) {
            return;
        }
        for hint in lines.filter_map(parse) {
            // Nobody subscribed is fine: hints are only hints.
            let _ = self.heard.send(hint);
        }
    }
}

/// The notification channel of a schema: one per deployment, whatever its
/// name's length (a channel name is at most 63 bytes).
fn channel(schema: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(schema.as_bytes());
    format!("stephost_{}", hex::encode(&digest[..8]))
}

fn parse(line: &str) -> Option<Hint> {
    let mut words = line.split(' ');
    let hint = match words.next()? {
        "w" => Hint::Work,
        "s" => Hint::Schedules,
        "r" => Hint::Resync,
        "e" => Hint::Event(ExecutionId::new_unchecked(words.next()?)),
        "c" => Hint::Committed(
            ExecutionId::new_unchecked(words.next()?),
            words.next()?.parse().ok()?,
        ),
        _ => return None,
    };
    Some(hint)
}

/// Splits lines into payloads under [`MAX_PAYLOAD`], each starting with
/// the tag.
fn payloads(tag: &str, lines: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = tag.to_owned();
    for line in lines {
        if current.len() + 1 + line.len() > MAX_PAYLOAD && current.len() > tag.len() {
            out.push(std::mem::replace(&mut current, tag.to_owned()));
        }
        current.push('\n');
        current.push_str(&line);
    }
    if current.len() > tag.len() {
        out.push(current);
    }
    out
}

async fn send_loop(hints: Arc<Hints>, pool: PgPool) {
    loop {
        tokio::select! {
            () = hints.stop.cancelled() => return,
            () = hints.ready.notified() => {}
        }
        let pending = std::mem::take(&mut *hints.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let batch = payloads(&hints.tag, pending.lines());
        if batch.is_empty() {
            continue;
        }
        let sent = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(&hints.channel)
            .bind(&batch)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            // The other nodes find the work by polling.
            tracing::warn!(error = %e, "sending hints to the other nodes failed");
        }
    }
}

async fn listen_loop(hints: Arc<Hints>, options: PgConnectOptions, mut listener: PgListener) {
    loop {
        let received = tokio::select! {
            () = hints.stop.cancelled() => return,
            r = listener.try_recv() => r,
        };
        match received {
            Ok(Some(n)) => hints.heard(n.payload()),
            // The connection dropped and was made again: whatever was sent
            // meanwhile is lost.
            Ok(None) => {
                let _ = hints.heard.send(Hint::Resync);
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for hints from the other nodes failed; reconnecting");
                let _ = hints.heard.send(Hint::Resync);
                listener = loop {
                    tokio::select! {
                        () = hints.stop.cancelled() => return,
                        () = tokio::time::sleep(RECONNECT_DELAY) => {}
                    }
                    match hints.listen(&options).await {
                        Ok(l) => break l,
                        Err(e) => {
                            tracing::warn!(error = %e, "reconnecting the hint listener failed")
                        }
                    }
                };
                let _ = hints.heard.send(Hint::Resync);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ExecutionId {
        ExecutionId::new_unchecked(format!("exec-{n:036}"))
    }

    #[test]
    fn a_batch_keeps_the_newest_commit_of_each_execution() {
        let mut p = Pending::default();
        p.add(Hint::Committed(id(1), 3));
        p.add(Hint::Committed(id(1), 5));
        p.add(Hint::Committed(id(1), 4));
        p.add(Hint::Work);
        p.add(Hint::Work);
        let lines = p.lines();
        assert_eq!(lines, vec!["w".to_owned(), format!("c {} 5", id(1))]);
    }

    #[test]
    fn too_many_executions_become_one_resync() {
        let mut p = Pending::default();
        for n in 0..=u32::try_from(MAX_PENDING).unwrap() {
            p.add(Hint::Event(id(n)));
        }
        p.add(Hint::Committed(id(0), 1));
        assert_eq!(p.lines(), vec!["r".to_owned()]);
    }

    #[test]
    fn payloads_fit_and_round_trip() {
        let lines: Vec<String> = (0..500).map(|n| format!("c {} {n}", id(n))).collect();
        let batch = payloads("tag", lines.clone());
        assert!(batch.len() > 1, "500 lines need several payloads");
        let mut back = Vec::new();
        for p in &batch {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            let mut l = p.lines();
            assert_eq!(l.next(), Some("tag"));
            back.extend(l.map(str::to_owned));
        }
        assert_eq!(back, lines);
        for (n, line) in back.iter().enumerate() {
            assert_eq!(
                parse(line),
                Some(Hint::Committed(id(u32::try_from(n).unwrap()), n as u64))
            );
        }
        assert_eq!(parse("x"), None);
        assert_eq!(parse("c only-an-id"), None);
        assert_eq!(payloads("tag", Vec::new()), Vec::<String>::new());
    }
}
