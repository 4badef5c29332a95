//! Resource limits of one plugin instance: a cap on all its linear memories and tables
//! together, and the wall-clock deadline of the call in progress (enforced through epoch interruption).

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};

use super::instance::StoreState;

/// How often the host's ticker thread advances the engine's epoch. A spinning plugin is
/// noticed (and given back to tokio) at least this often, so a deadline overshoots by at
/// most about one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long past its deadline a call may take before the host gives up waiting for the
/// guest to notice (a host import blocked on I/O cannot be interrupted by the epoch).
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The most table elements one table may have (function tables of ordinary guests hold
/// hundreds to thousands of entries).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What one table element costs the host: wasmtime keeps a pointer-sized slot per element
/// (funcref and externref alike).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The most core instances, tables and linear memories one plugin instance may create. An
/// ordinary component (a Rust or Python guest with its WASI adapter) has fewer than a dozen
/// of each; every one costs the host bookkeeping memory that the byte cap does not see.
const MAX_CORE_INSTANCES: usize = 256;
const MAX_TABLES: usize = 256;
const MAX_MEMORIES: usize = 64;

/// Caps the **sum** of an instance's linear memories and tables (wasmtime's `StoreLimits`
/// caps each on its own, so a component with a hundred tables, each within a per-table cap,
/// could hold gigabytes of host memory under a 16 MiB `limits.memory`), and records that
/// the cap was hit, so that the resulting trap can be reported as "memory limit exceeded"
/// rather than as an anonymous crash.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    cap: usize,
    used: usize,
    /// Bytes granted by the last `memory_growing` or `table_growing`, given back if the
    /// growth then fails.
    last_grant: usize,
    hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `cap` bytes of linear memory and tables in total.
    pub(crate) fn new(cap: u64) -> MemoryLimiter {
        MemoryLimiter {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            used: 0,
            last_grant: 0,
            hit: false,
        }
    }

    /// Whether a growth was refused because of the cap.
    pub(crate) fn hit(&self) -> bool {
        self.hit
    }

    /// Bytes of memories and tables held now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Grants `delta` more bytes, or fails with the cap's error naming `what` grew.
    fn grow(&mut self, delta: usize, what: &str) -> wasmtime::Result<bool> {
        if self.used.saturating_add(delta) > self.cap {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once: guests written in Rust abort on a
            // failed allocation anyway, and the trap carries a clear reason.
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (growing a {what} by {delta} bytes with {} \
                 in use by the instance's memories and tables)",
                self.cap,
                self.used
            ));
        }
        self.used += delta;
        self.last_grant = delta;
        Ok(true)
    }

    fn give_back_last(&mut self) {
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current), "memory")
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.give_back_last();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let delta = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(delta, "table")
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.give_back_last();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The wall-clock deadline of the call in progress and whether it was missed.
#[derive(Debug, Default)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    missed: bool,
}

impl Deadline {
    /// Starts a call that may run for `timeout`.
    pub(crate) fn arm(&mut self, timeout: Duration) {
        self.at = Some(Instant::now() + timeout);
        self.missed = false;
    }

    /// The time left before the deadline of the call in progress (zero when none is
    /// armed): host imports that wait (HTTP) stay within it.
    pub(crate) fn remaining(&self) -> Duration {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the call in progress ran past its deadline and was stopped.
    pub(crate) fn missed(&self) -> bool {
        self.missed
    }
}

/// The store's epoch callback: runs at every epoch tick while guest code executes. Before
/// the deadline it yields to the async executor (so a spinning guest never holds a tokio
/// worker for more than one tick); after it, it stops the guest with a trap.
pub(crate) fn on_epoch_tick(
    mut ctx: StoreContextMut<'_, StoreState>,
) -> wasmtime::Result<UpdateDeadline> {
    let deadline = &mut ctx.data_mut().deadline;
    match deadline.at {
        Some(at) if Instant::now() >= at => {
            deadline.missed = true;
            Err(wasmtime::format_err!("the call's deadline passed"))
        }
        _ => Ok(UpdateDeadline::Yield(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_caps_the_total_of_all_memories() {
        let mut l = MemoryLimiter::new(10 << 16);
        assert!(l.memory_growing(0, 6 << 16, None).unwrap());
        // A second memory: 6 + 4 pages fit, one more page does not.
        assert!(l.memory_growing(0, 4 << 16, None).unwrap());
        assert!(!l.hit());
        assert!(l.memory_growing(4 << 16, 5 << 16, None).is_err());
        assert!(l.hit());
    }

    #[test]
    fn failed_growth_is_given_back() {
        let mut l = MemoryLimiter::new(2 << 16);
        assert!(l.memory_growing(0, 2 << 16, None).unwrap());
        l.memory_grow_failed(wasmtime::format_err!("os said no"))
            .unwrap();
        assert!(l.memory_growing(0, 2 << 16, None).unwrap());
    }

    #[test]
    fn tables_count_against_the_same_cap_as_memories() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        // 64 Ki elements of 8 bytes: the other half of the cap.
        let half = (512 << 10) / TABLE_ELEMENT_BYTES;
        assert!(l.table_growing(0, half, None).unwrap());
        assert_eq!(l.used(), 1 << 20);
        // A second table of one element no longer fits, however small.
        let err = l.table_growing(0, 1, None).unwrap_err();
        assert!(err.to_string().contains("growing a table"), "{err}");
        assert!(l.hit());
        // Past the per-table element cap: refused without touching the budget.
        let mut l = MemoryLimiter::new(u64::MAX);
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert_eq!(l.used(), 0);
    }
}
