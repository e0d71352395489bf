//! The bound on bytes in flight: items are counted by number (the runtime's permits) and by
//! size here, so a folder of 100 MB documents cannot multiply into RAM.
//!
//! The source takes an item's weight before handing it on; the writer (or intake, for an item
//! it skips) gives it back. An item heavier than the whole budget is let in alone, when nothing
//! else is in flight, so one huge input is slow but never stuck.

use std::sync::{Condvar, Mutex};

/// Bytes of item content that may be in flight at once: enough for thousands of ordinary
/// documents or dozens of long transcripts, small beside any machine that runs the models.
pub const MAX_BYTES_IN_FLIGHT: u64 = 256 << 20;

pub struct ByteBudget {
    used: Mutex<u64>,
    freed: Condvar,
    max: u64,
}

impl ByteBudget {
    pub fn new(max: u64) -> ByteBudget {
        ByteBudget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max,
        }
    }

    /// Waits until `weight` more bytes fit (or nothing is in flight), then takes them.
    pub fn take(&self, weight: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + weight > self.max {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += weight;
    }

    pub fn give_back(&self, weight: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(weight);
        self.freed.notify_all();
    }

    #[cfg(test)]
    fn used(&self) -> u64 {
        *self.used.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    // A taker waits while the budget is full and goes on once bytes are given back; an item
    // heavier than the budget still gets in when nothing else is in flight.
    #[test]
    fn waits_for_room() {
        let budget = Arc::new(ByteBudget::new(100));
        budget.take(80);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = Arc::clone(&budget);
        std::thread::spawn(move || {
            waiting.take(50);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "it waited"
        );
        budget.give_back(80);
        rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(budget.used(), 50);
        budget.give_back(50);
        budget.take(1000);
        assert_eq!(budget.used(), 1000);
    }
}
