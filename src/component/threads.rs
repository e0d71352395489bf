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
//!
//! The lender also keeps the run's CPU account. Engines run on thread pools of their own, so no
//! thread's clock says what a stage cost; instead, whenever a worker starts or ends a batch or
//! borrows or returns threads, the process's CPU time since the last such moment is shared among
//! the workers busy in between, by the threads each held (one when it held none; none while it
//! waited for a loan). CPU time while no worker was busy (start-up, reading, writing) is left
//! to the run's own account: the process's CPU time less its batches'. The account is by
//! interval, not by thread: what the reader and writer threads (and the OCR programs, counted
//! when they end) spend while batches are busy is charged to those batches.

use std::cell::Cell;
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
    /// The process's CPU seconds when the account was last settled.
    settled_at: f64,
    /// Busy workers' batches: the threads each holds now and the CPU seconds charged to it.
    batches: Vec<Option<Charge>>,
}

#[derive(Clone, Copy)]
struct Charge {
    /// Threads the batch's leases hold now (a batch may hold several leases, one per helper
    /// thread).
    held: usize,
    /// Borrowers of the batch waiting for a loan.
    waiting: usize,
    cpu_s: f64,
}

impl Charge {
    /// The batch's share of the CPU: the threads it holds; one while it holds none and waits
    /// for none (it works on its own thread); none while it only waits.
    fn weight(&self) -> usize {
        match (self.held, self.waiting) {
            (0, 0) => 1,
            (held, _) => held,
        }
    }
}

thread_local! {
    /// The batch this thread is busy with (an index into `State::batches`).
    static BATCH: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The process's CPU time (user and system, every thread, exited ones included, and the
/// programs it ran and waited for, such as OCR's), in seconds.
pub fn process_cpu_s() -> f64 {
    let of = |who: libc::c_int| {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF and RUSAGE_CHILDREN are
        // always valid.
        if unsafe { libc::getrusage(who, usage.as_mut_ptr()) } != 0 {
            return 0.0;
        }
        // SAFETY: filled by the successful call above.
        let usage = unsafe { usage.assume_init() };
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        s(usage.ru_utime) + s(usage.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

impl State {
    /// The threads each busy worker would get if they were shared equally (at least one).
    fn fair_share(&self) -> usize {
        (self.total / self.busy.max(1)).max(1)
    }

    /// Charges the CPU time since the last settlement to the busy batches by weight.
    fn settle(&mut self) {
        let now = process_cpu_s();
        let spent = (now - self.settled_at).max(0.0);
        self.settled_at = now;
        let weights: usize = self.batches.iter().flatten().map(Charge::weight).sum();
        if weights == 0 {
            return;
        }
        for charge in self.batches.iter_mut().flatten() {
            charge.cpu_s += spent * charge.weight() as f64 / weights as f64;
        }
    }

    /// Settles the account, then changes the loans of `batch` (if it is busy) by `change`.
    fn weigh(&mut self, batch: Option<usize>, change: impl FnOnce(&mut Charge)) {
        if let Some(i) = batch {
            self.settle();
            if let Some(Some(charge)) = self.batches.get_mut(i) {
                change(charge);
            }
        }
    }
}

/// Threads on loan; returned when dropped.
pub struct Lease<'a> {
    threads: &'a Threads,
    pub count: usize,
    /// The batch charged for the loan.
    batch: Option<usize>,
}

/// The batch a thread works for, carried into the helper threads a worker starts (their loans
/// and CPU time are that batch's).
#[derive(Clone, Copy)]
pub struct BatchOf(Option<usize>);

impl BatchOf {
    /// The batch the calling thread works for.
    pub fn this_thread() -> BatchOf {
        BatchOf(BATCH.get())
    }

    /// Makes the calling (helper) thread work for this batch.
    pub fn enter(self) {
        BATCH.set(self.0);
    }
}

/// Marks a worker busy (counted in fair shares, charged CPU time) until dropped or finished.
pub struct Busy<'a> {
    threads: &'a Threads,
    batch: usize,
}

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
                settled_at: process_cpu_s(),
                batches: Vec::new(),
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

    /// The fair share of the threads among the workers busy now (what `borrow(None)` gets when
    /// they are free).
    pub fn share(&self) -> usize {
        self.lock().fair_share()
    }

    /// Borrows `want` threads (capped at the total), or with `None` the fair share of the busy
    /// workers; waits until they are free and every earlier borrower has been served.
    pub fn borrow(&self, want: Option<usize>) -> Lease<'_> {
        let mut state = self.lock();
        let batch = BATCH.get();
        state.weigh(batch, |c| c.waiting += 1);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let count = loop {
            if state.serving == ticket {
                let count = match want {
                    Some(n) => n.clamp(1, state.total),
                    None => state.fair_share().min(state.free.max(1)),
                };
                if state.free >= count {
                    break count;
                }
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        };
        state.free -= count;
        state.serving += 1;
        state.weigh(batch, |c| {
            c.waiting -= 1;
            c.held += count;
        });
        self.changed.notify_all();
        Lease {
            threads: self,
            count,
            batch,
        }
    }

    /// Marks this thread's worker busy with a batch until the guard is finished or dropped.
    pub fn busy(&self) -> Busy<'_> {
        let mut state = self.lock();
        state.busy += 1;
        state.settle();
        let charge = Some(Charge {
            held: 0,
            waiting: 0,
            cpu_s: 0.0,
        });
        let batch = match state.batches.iter().position(Option::is_none) {
            Some(i) => {
                state.batches[i] = charge;
                i
            }
            None => {
                state.batches.push(charge);
                state.batches.len() - 1
            }
        };
        BATCH.set(Some(batch));
        Busy {
            threads: self,
            batch,
        }
    }
}

impl Busy<'_> {
    /// Ends the batch; returns the CPU seconds charged to it.
    pub fn finish(self) -> f64 {
        let mut state = self.threads.lock();
        state.settle();
        state.busy -= 1;
        BATCH.set(None);
        let charge = state.batches[self.batch].take();
        drop(state);
        std::mem::forget(self);
        charge.map_or(0.0, |c| c.cpu_s)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut state = self.threads.lock();
        state.free += self.count;
        let count = self.count;
        state.weigh(self.batch, |c| c.held -= count);
        drop(state);
        self.threads.changed.notify_all();
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.threads.lock();
        state.settle();
        state.busy -= 1;
        // A batch given up (its worker ended on an error) leaves its CPU time to the run's own.
        state.batches[self.batch] = None;
        BATCH.set(None);
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

    fn spin(cpu_s: f64) {
        let until = process_cpu_s() + cpu_s;
        let mut x = 0u64;
        while process_cpu_s() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    /// Another worker's batch, busy on its own thread and holding no lease until `hold` is
    /// sent to; the thread ends with the CPU seconds charged to it.
    fn other_batch(
        threads: &Arc<Threads>,
    ) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<f64>) {
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel::<()>();
        let threads = Arc::clone(threads);
        let other = std::thread::spawn(move || {
            let busy = threads.busy();
            ready.send(()).unwrap();
            release.recv().unwrap();
            busy.finish()
        });
        is_ready.recv().unwrap();
        (hold, other)
    }

    // CPU time is shared among the busy batches by the threads they hold; time with none busy
    // is the run's own; together they are the process's CPU time since the account opened.
    #[test]
    fn cpu_time_is_charged_by_threads_held() {
        let started = process_cpu_s();
        let threads = Arc::new(Threads::new(3));
        spin(0.05);
        let (hold, other) = other_batch(&threads);
        let busy = threads.busy();
        let lease = threads.borrow(Some(2));
        spin(0.3);
        drop(lease);
        // Back to one thread: equal shares from here.
        spin(0.1);
        let two = busy.finish();
        hold.send(()).unwrap();
        let one = other.join().unwrap();
        let total = process_cpu_s() - started;
        // The first 0.05 s, with no batch busy, is nobody's.
        assert!(two + one <= total - 0.04, "{two} + {one} against {total}");
        assert!(two + one >= 0.39, "{two} + {one}");
        // 2:1 for the first 0.3 s, 1:1 for the next 0.1 s: about 0.25 against 0.15.
        assert!(two > one * 1.3 && two < one * 2.0, "{two} vs {one}");
    }

    // A helper thread that enters its worker's batch borrows for that batch: a batch holding
    // two one-thread leases (the worker's and its helper's) is charged twice what a batch
    // holding none is.
    #[test]
    fn a_helper_borrows_for_its_workers_batch() {
        let threads = Arc::new(Threads::new(3));
        let (hold, other) = other_batch(&threads);
        let busy = threads.busy();
        let lease = threads.borrow(Some(1));
        let (ready, is_ready) = std::sync::mpsc::channel::<()>();
        let (done, is_done) = std::sync::mpsc::channel::<()>();
        let helper = {
            let (threads, batch) = (Arc::clone(&threads), BatchOf::this_thread());
            std::thread::spawn(move || {
                batch.enter();
                let lease = threads.borrow(Some(1));
                ready.send(()).unwrap();
                is_done.recv().unwrap();
                drop(lease);
            })
        };
        is_ready.recv().unwrap();
        assert_eq!(threads.lock().free, 1);
        spin(0.3);
        done.send(()).unwrap();
        helper.join().unwrap();
        drop(lease);
        let two = busy.finish();
        hold.send(()).unwrap();
        let one = other.join().unwrap();
        assert!(two > one * 1.6 && two < one * 2.5, "{two} vs {one}");
        assert_eq!(threads.lock().free, 3);
    }
}
