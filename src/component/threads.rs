//! The run's CPU threads (`--jobs`), lent to engine work one step at a time.
//!
//! ggml's (whisper.cpp's and llama.cpp's) threads spin while they wait for each other, so two
//! engine calls that together ask for more threads than there are cores do not just share the
//! cores, they crawl (a transcription swung between 17 s and 29 s that way). Every engine call
//! therefore borrows its threads here first and returns them when it is done: a call asks either
//! for an exact count (a llama context's thread count is fixed when it is created) or for a fair
//! share of the workers busy at that moment (one long file gets every thread; many clips get one
//! each). Lenders are served first come, first served, so a stage that needs many threads is
//! not starved by stages that take one at a time.

use std::sync::{Condvar, Mutex, MutexGuard};

pub struct Threads {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    total: usize,
    free: usize,
    /// Workers inside a batch right now, across all stages.
    busy: usize,
    /// First come, first served: the next ticket to hand out and the one being served.
    next_ticket: u64,
    serving: u64,
}

/// Threads on loan; returned when dropped.
pub struct Lease<'a> {
    threads: &'a Threads,
    pub count: usize,
}

/// Marks a worker busy (counted in fair shares) until dropped.
pub struct Busy<'a>(&'a Threads);

impl Threads {
    pub fn new(total: usize) -> Threads {
        let total = total.max(1);
        Threads {
            state: Mutex::new(State {
                total,
                free: total,
                busy: 0,
                next_ticket: 0,
                serving: 0,
            }),
            changed: Condvar::new(),
        }
    }

    pub fn total(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Borrows `want` threads (capped at the total), or with `None` the fair share of the busy
    /// workers; waits until they are free and every earlier borrower has been served.
    pub fn borrow(&self, want: Option<usize>) -> Lease<'_> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let count = loop {
            if state.serving == ticket {
                let count = match want {
                    Some(n) => n.clamp(1, state.total),
                    None => (state.total / state.busy.max(1)).clamp(1, state.free.max(1)),
                };
                if state.free >= count {
                    break count;
                }
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        };
        state.free -= count;
        state.serving += 1;
        self.changed.notify_all();
        Lease {
            threads: self,
            count,
        }
    }

    pub fn busy(&self) -> Busy<'_> {
        self.lock().busy += 1;
        Busy(self)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.threads.lock().free += self.count;
        self.threads.changed.notify_all();
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.lock().busy -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    // A lone busy worker gets every thread; two busy workers get half each; an exact request
    // waits for its count and never exceeds the total.
    #[test]
    fn fair_shares_and_exact_requests() {
        let threads = Threads::new(4);
        let a = threads.busy();
        assert_eq!(threads.borrow(None).count, 4);
        let b = threads.busy();
        let first = threads.borrow(None);
        let second = threads.borrow(None);
        assert_eq!((first.count, second.count), (2, 2));
        drop((first, second, a, b));
        assert_eq!(threads.borrow(Some(9)).count, 4);
    }

    // However many borrowers race, threads on loan never exceed the total, and a borrower that
    // needs all of them is served between the small ones rather than starved.
    #[test]
    fn never_oversubscribed() {
        let threads = Arc::new(Threads::new(3));
        let out = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (threads, out, peak) = (threads.clone(), out.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _busy = threads.busy();
                    for _ in 0..20 {
                        let lease = threads.borrow(if i == 0 { Some(3) } else { None });
                        let now = out.fetch_add(lease.count, Ordering::SeqCst) + lease.count;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        out.fetch_sub(lease.count, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(threads.lock().free, 3);
    }
}
