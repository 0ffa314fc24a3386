//! The connections of the SQLite store: the writer thread with its group
//! commit, and the pool of read-only connections.
//!
//! The writer takes every write already waiting (up to [`MAX_BATCH`]), runs
//! each inside its own savepoint of one transaction, commits once and only
//! then answers each caller. One fsync thus covers many writes without
//! weakening durability, and a write that fails rolls back its own savepoint
//! and nothing else. This file knows how writes are batched and committed; it
//! must not know what any write does.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::Durability;
use super::schema::migrate;
use crate::store::{Error, Result};

/// The most writes one transaction commits.
const MAX_BATCH: usize = 1000;
/// How many read-only connections serve reads.
const READERS: usize = 4;
/// How long a connection waits for a lock before it reports `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Enough cached statements for every query shape, listing filters included.
const STATEMENT_CACHE: usize = 64;

/// The one connection that writes, owned by its own thread.
pub(super) struct Writer {
    ops: Option<mpsc::Sender<Box<dyn Op>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Opens the database read-write in WAL mode, brings its schema up to
    /// date and starts the writer thread.
    pub(super) fn start(path: &Path, durability: Durability) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend(format!(
                "{} cannot use WAL mode (it stays in `{mode}` mode)",
                path.display()
            )));
        }
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
            Durability::Off => "OFF",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&conn)?;
        let (ops, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("stephost-store-writer".into())
            .spawn(move || write_loop(&conn, &queue))
            .map_err(|e| Error::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            ops: Some(ops),
            thread: Some(thread),
        })
    }

    /// Runs `write` on the writer thread and resolves once it is committed.
    pub(super) async fn run<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(Pending {
            write: Some(write),
            result: None,
            reply,
        });
        let ops = self.ops.as_ref().ok_or(Error::Closed)?;
        ops.send(op).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread commit what was sent, then exit.
        self.ops = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

/// A write waiting for the writer thread, with its caller's reply channel.
trait Op: Send {
    /// Runs the write inside its own savepoint. An error here means the
    /// savepoint itself failed and the whole transaction must be abandoned.
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Answers the caller once the transaction committed (`Ok`) or failed.
    fn finish(self: Box<Self>, batch: Result<(), &str>);
}

struct Pending<T, F> {
    write: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Op for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let Some(write) = self.write.take() else {
            return Ok(());
        };
        conn.prepare_cached("SAVEPOINT op")?.execute([])?;
        let result = write(conn);
        if result.is_err() {
            conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
        }
        conn.prepare_cached("RELEASE op")?.execute([])?;
        self.result = Some(result);
        Ok(())
    }

    fn finish(self: Box<Self>, batch: Result<(), &str>) {
        let result = match (batch, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(Error::Backend("the write was never run".into())),
            (Err(e), _) => Err(Error::Backend(format!("the transaction failed: {e}"))),
        };
        // A caller that stopped waiting does not undo its committed write.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: commits waiting writes in groups until every sender
/// is gone.
fn write_loop(conn: &Connection, queue: &mpsc::Receiver<Box<dyn Op>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome = commit(conn, &mut batch).map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = batch.len(), "a batch of writes failed");
        }
        for op in batch.drain(..) {
            op.finish(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

fn commit(conn: &Connection, batch: &mut [Box<dyn Op>]) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let done = batch
        .iter_mut()
        .try_for_each(|op| op.apply(conn))
        .and_then(|()| conn.prepare_cached("COMMIT")?.execute([]).map(drop));
    if done.is_err()
        && !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "rolling back a failed batch failed");
    }
    done
}

/// Read-only connections, each used by one blocking task at a time. WAL
/// mode lets them read while the writer commits.
pub(super) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// Opens the pool; the writer must have opened the database first, so
    /// that the file is in WAL mode and has its schema.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conns = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(Mutex::new(conn))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `read` on a pooled connection on a blocking thread.
    pub(super) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || read(&readers.get()))
            .await
            .map_err(|e| Error::Backend(format!("a read did not finish: {e}")))?
    }

    /// A free connection if there is one, else waits for one in turn.
    fn get(&self) -> MutexGuard<'_, Connection> {
        for conn in &self.conns {
            match conn.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}
