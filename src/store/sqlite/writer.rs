//! SQLite turns in groups. One thread takes every turn waiting (up to [`MAX_BATCH`]) and runs
//! them in one `BEGIN IMMEDIATE … COMMIT`, each in a savepoint of its own: a turn that fails
//! (an engine error, numbers that keep colliding, a panic) rolls back only itself. The commit,
//! its file locks and (with `synchronous = full`) its flush are paid once per group instead of
//! once per turn.
//!
//! Each request hears its turn's result only after the commit that holds it succeeded (a
//! replay too: the response it repeats may have been written in the same group); if the
//! commit fails, every turn of the group fails. A turn never waits for a group to fill: a
//! group is whatever queued while the previous one was written, and a lone turn commits at
//! once. Two turns of one call in a group run one after the other in the same transaction, the
//! second seeing what the first wrote, as if each had committed on its own.
//!
//! The store's other writes (and, on an in-memory database, its reads) are queued on the same
//! thread and run between groups, each on its own, in the order they came: the thread owns the
//! connection, and no tokio worker ever waits for SQLite.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::calls::turn_in;
use crate::store::{Create, StoreError, TurnFn, TurnResult};

/// The most turns in one transaction: a bound on how long the connection is held for one
/// group while the store's other operations wait.
const MAX_BATCH: usize = 64;

/// Work for the writer: a turn, or another operation on the connection.
// Unboxed: a turn, the common case, moves through the queue without an allocation of its own.
#[allow(clippy::large_enum_variant)]
enum Work {
    Turn(Pending),
    Op(Op),
}

/// An operation run on the writer's connection; it answers its caller itself.
pub(super) type Op = Box<dyn FnOnce(&mut Connection) + Send>;

/// A turn waiting for the writer, and where its result goes.
struct Pending {
    sid: String,
    seq: i64,
    create: Option<Create>,
    f: TurnFn,
    reply: oneshot::Sender<Result<TurnResult, StoreError>>,
}

/// The thread that takes the turns. Dropping it closes the queue; the thread writes what is
/// queued and ends, and the drop waits for it.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread, which owns `conn` from now on.
    pub(super) fn start(mut conn: Connection) -> Result<Writer, StoreError> {
        let (queue, work) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(&mut conn, &work))
            .map_err(|e| StoreError::Turn(format!("turn thread: {e}")))?;
        Ok(Writer { queue: Some(queue), thread: Some(thread) })
    }

    /// Queues a turn and waits until the transaction holding it committed (or failed).
    pub(super) async fn turn(
        &self,
        sid: &str,
        seq: i64,
        create: Option<Create>,
        f: TurnFn,
    ) -> Result<TurnResult, StoreError> {
        let stopped = || StoreError::Turn("the SQLite turn thread has stopped".into());
        let (reply, result) = oneshot::channel();
        let pending = Pending { sid: sid.into(), seq, create, f, reply };
        self.queue.as_ref().ok_or_else(stopped)?.send(Work::Turn(pending)).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Queues an operation; it runs after the work queued before it committed.
    pub(super) fn send(&self, op: Op) -> Result<(), StoreError> {
        let stopped = || StoreError::Turn("the SQLite writer thread has stopped".into());
        self.queue.as_ref().ok_or_else(stopped)?.send(Work::Op(op)).map_err(|_| stopped())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            // Never join from the thread itself (a turn's closure holding the last store).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// The thread: waits for work, takes whatever else is waiting (up to [`MAX_BATCH`]), writes
/// the turns among it in groups of one transaction and runs the other operations between
/// them, in the order they came, answering each turn once its group committed.
fn run(conn: &mut Connection, work: &mpsc::Receiver<Work>) {
    let mut taken = Vec::with_capacity(MAX_BATCH);
    let mut group = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = work.recv() {
        taken.push(first);
        taken.extend(work.try_iter().take(MAX_BATCH - 1));
        for w in taken.drain(..) {
            match w {
                Work::Turn(p) => group.push(p),
                Work::Op(op) => {
                    write_group(conn, &mut group);
                    // A panic drops the op's reply (its caller hears the thread stopped) and
                    // rolls back the transaction it had open; the thread goes on.
                    let _ = catch_unwind(AssertUnwindSafe(|| op(conn)));
                }
            }
        }
        write_group(conn, &mut group);
    }
}

/// Commits the turns of a group and answers each (nothing when the group is empty).
fn write_group(conn: &mut Connection, group: &mut Vec<Pending>) {
    if group.is_empty() {
        return;
    }
    let results = commit_group(conn, group);
    for (pending, result) in group.drain(..).zip(results) {
        // A request that went away (its client hung up) still had its turn committed: the
        // carrier's retry gets it as a replay.
        let _ = pending.reply.send(result);
    }
}

/// Runs the group's turns in one transaction, each in a savepoint, and commits. Returns one
/// result per turn, in order; all of them errors if the transaction could not commit.
fn commit_group(conn: &mut Connection, group: &mut [Pending]) -> Vec<Result<TurnResult, StoreError>> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_failed(group.len(), "could not begin", &e),
    };
    let mut results = Vec::with_capacity(group.len());
    for pending in group.iter_mut() {
        match turn_in_savepoint(&tx, pending) {
            // SQLite rolls the whole transaction back on some errors (disk full, I/O): the
            // turns before this one are gone too.
            Ok(_) if tx.is_autocommit() => {
                return all_failed(group.len(), "rolled back", &"the transaction ended early");
            }
            Ok(result) => results.push(result),
            Err(e) => return all_failed(group.len(), "savepoint failed", &e),
        }
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => all_failed(group.len(), "could not commit", &e),
    }
}

/// One turn in a savepoint of its own, rolled back if the turn fails. The outer error is the
/// savepoint's own (the transaction can no longer be trusted).
fn turn_in_savepoint(tx: &Connection, p: &mut Pending) -> Result<Result<TurnResult, StoreError>, rusqlite::Error> {
    tx.prepare_cached("savepoint turn")?.execute([])?;
    let result = catch_unwind(AssertUnwindSafe(|| turn_in(tx, &p.sid, p.seq, p.create.take(), &mut p.f)))
        .unwrap_or_else(|_| Err(StoreError::Turn("the turn panicked".into())));
    if tx.is_autocommit() {
        return Ok(result);
    }
    if result.is_err() {
        tx.prepare_cached("rollback to turn")?.execute([])?;
    }
    tx.prepare_cached("release turn")?.execute([])?;
    Ok(result)
}

fn all_failed(n: usize, what: &str, why: &dyn std::fmt::Display) -> Vec<Result<TurnResult, StoreError>> {
    (0..n).map(|_| Err(StoreError::Turn(format!("turn not committed: {what}: {why}")))).collect()
}
