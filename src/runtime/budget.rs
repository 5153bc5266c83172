//! A byte budget shared by the work in one process: the api's upload spool, a worker's job scratch.
//!
//! Each user reserves its bytes before it writes them and gives them back when its files are gone (its
//! [`Share`] is dropped), so the directory never holds more than the budget, and a disk that fills up is
//! refused cleanly instead of failing writes half-way. By default the budget is 90 % of the free space on the
//! directory's filesystem when the process starts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The budget.
#[derive(Debug)]
pub struct ByteBudget {
    /// Most bytes held at once.
    pub limit: u64,
    used: AtomicU64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This user alone would pass the whole budget: it can never fit.
    NeverFits,
    /// The others hold too much now: it may fit later.
    Full,
}

/// Bytes one user holds; given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// `configured`, or 90 % of the free space under `dir` now (no limit if that cannot be read).
    pub fn for_dir(configured: Option<u64>, dir: &Path) -> Arc<Self> {
        let limit = configured.unwrap_or_else(|| match nix::sys::statvfs::statvfs(dir) {
            Ok(v) => v.blocks_available() * v.fragment_size() / 10 * 9,
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot read the free space; no byte budget");
                u64::MAX
            }
        });
        Self::new(limit)
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty share, to grow as bytes arrive.
    pub fn share(self: &Arc<Self>) -> Share {
        Share {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

impl Share {
    /// Reserves `n` more bytes.
    pub fn grow(&mut self, n: u64) -> Result<(), Refusal> {
        let b = &self.budget;
        if self.bytes.saturating_add(n) > b.limit {
            return Err(Refusal::NeverFits);
        }
        b.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used.saturating_add(n) <= b.limit).then_some(used + n)
            })
            .map_err(|_| Refusal::Full)?;
        self.bytes += n;
        Ok(())
    }

    /// The budget's limit.
    pub fn limit(&self) -> u64 {
        self.budget.limit
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_bounded_together_and_given_back() {
        let budget = ByteBudget::new(100);
        let mut a = budget.share();
        a.grow(60).unwrap();
        let mut b = budget.share();
        assert_eq!(b.grow(50), Err(Refusal::Full), "no room now");
        assert_eq!(b.grow(101), Err(Refusal::NeverFits));
        b.grow(40).unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
