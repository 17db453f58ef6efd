//! The bounded queue between the flow poller and the sender thread. The
//! poller never waits: records that do not fit are dropped and counted, so a
//! collector that is down or slow never stalls flow accounting.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
    time::Duration,
};

use crate::record::Record;

pub struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
    capacity: usize,
}

struct Inner {
    records: VecDeque<Record>,
    closed: bool,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            inner: Mutex::new(Inner { records: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues what fits; returns how many records did not.
    pub fn push(&self, records: Vec<Record>) -> usize {
        let mut q = self.lock();
        let room = self.capacity.saturating_sub(q.records.len());
        let n = records.len();
        q.records.extend(records.into_iter().take(room));
        drop(q);
        self.ready.notify_one();
        n.saturating_sub(room)
    }

    /// Up to `max` records, waiting up to `wait` for the first. None once
    /// the queue is closed and empty.
    pub fn pop(&self, max: usize, wait: Duration) -> Option<Vec<Record>> {
        let mut q = self.lock();
        if q.records.is_empty() && !q.closed {
            q = self.ready.wait_timeout(q, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
        if q.records.is_empty() && q.closed {
            return None;
        }
        let n = q.records.len().min(max);
        Some(q.records.drain(..n).collect())
    }

    /// No more records will come: the sender drains what is left and ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
