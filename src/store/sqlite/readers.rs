//! The threads that read a database file, each with a connection of its own (`query_only`). In
//! WAL mode a reader never waits for the writer, and sees every transaction committed before
//! its statement began. They take reads from one queue, whichever is free first.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::writer::Op;
use crate::store::StoreError;

/// How many reads run at once.
const READERS: usize = 2;

pub(super) struct Readers {
    queue: Option<mpsc::Sender<Op>>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Opens the connections and starts the threads.
    pub(super) fn start(path: &str) -> Result<Readers, StoreError> {
        let (queue, reads) = mpsc::channel::<Op>();
        let reads = Arc::new(Mutex::new(reads));
        let mut threads = Vec::with_capacity(READERS);
        for i in 0..READERS {
            let mut conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "query_only", "on")?;
            conn.set_prepared_statement_cache_capacity(64);
            let reads = reads.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next read.
                        let next = reads.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(op) = next else { break };
                        // A panic drops the read's reply: its caller hears the thread stopped.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&mut conn)));
                    }
                })
                .map_err(|e| StoreError::Turn(format!("reader thread: {e}")))?;
            threads.push(thread);
        }
        Ok(Readers { queue: Some(queue), threads })
    }

    /// Queues a read.
    pub(super) fn send(&self, op: Op) -> Result<(), StoreError> {
        let stopped = || StoreError::Turn("the SQLite reader threads have stopped".into());
        self.queue.as_ref().ok_or_else(stopped)?.send(op).map_err(|_| stopped())
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.queue.take();
        for t in self.threads.drain(..) {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
