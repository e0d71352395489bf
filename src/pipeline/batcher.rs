//! Forms batches from a stage's input queue: up to `batch_size` items, or whatever arrived
//! within `max_wait` of the first one, whichever comes first.
//!
//! Every worker of a stage owns a `Batcher` over the same multi-consumer channel, so workers
//! pull work as they free up and no extra thread sits between queue and worker.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

pub struct Batcher<T> {
    rx: Receiver<T>,
    batch_size: usize,
    max_wait: Duration,
}

impl<T> Batcher<T> {
    pub fn new(rx: Receiver<T>, batch_size: usize, max_wait: Duration) -> Self {
        Batcher {
            rx,
            batch_size: batch_size.max(1),
            max_wait,
        }
    }

    /// The next batch; `None` once the queue is closed and drained.
    pub fn next_batch(&self) -> Option<Vec<T>> {
        let first = self.rx.recv().ok()?;
        let mut batch = Vec::with_capacity(self.batch_size);
        batch.push(first);
        let deadline = Instant::now() + self.max_wait;
        while batch.len() < self.batch_size {
            // Take what is already queued without waiting; wait only when the queue is empty.
            match self.rx.try_recv() {
                Ok(item) => {
                    batch.push(item);
                    continue;
                }
                Err(e) if e.is_disconnected() => break,
                Err(_) => {}
            }
            match self.rx.recv_deadline(deadline) {
                Ok(item) => batch.push(item),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    // A full batch forms at once; the remainder comes out when the queue closes.
    #[test]
    fn fills_then_drains() {
        let (tx, rx) = bounded(10);
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        drop(tx);
        let batcher = Batcher::new(rx, 3, Duration::from_secs(10));
        assert_eq!(batcher.next_batch(), Some(vec![0, 1, 2]));
        assert_eq!(batcher.next_batch(), Some(vec![3, 4]));
        assert_eq!(batcher.next_batch(), None);
    }

    // A partial batch is released after max_wait instead of waiting for more items.
    #[test]
    fn max_wait_releases_partial_batch() {
        let (tx, rx) = bounded(10);
        tx.send(1).unwrap();
        let batcher = Batcher::new(rx, 8, Duration::from_millis(20));
        let start = Instant::now();
        assert_eq!(batcher.next_batch(), Some(vec![1]));
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(tx);
    }
}
