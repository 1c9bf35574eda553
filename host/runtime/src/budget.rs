//! Instance memory budgets: what the linear memories of live instances hold,
//! per tenant and in all, counted as they grow and released at teardown.
//!
//! The per-call cap ([`SandboxLimits::memory_bytes`](crate::SandboxLimits))
//! bounds one instance; these bound the sum, so that many instances (running
//! or idle and warm) of one tenant cannot take the host's memory, and all
//! tenants together stay inside what the machine has. A growth past a budget
//! traps the call with [`RuntimeError::MemoryBudget`](crate::RuntimeError)
//! (RESOURCE_EXHAUSTED) before the operating system has to kill anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One counter with a limit.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes`, or nothing when that would pass the limit.
    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes taken now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The host's instance-memory budgets: one global, one per tenant.
#[derive(Debug)]
pub(crate) struct MemoryBudgets {
    global: Arc<Budget>,
    per_tenant: usize,
    tenants: Mutex<HashMap<Arc<str>, Arc<Budget>>>,
}

/// Which budget refused a growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetScope {
    /// The tenant's own budget.
    Tenant,
    /// The host's budget for all tenants.
    Host,
}

impl MemoryBudgets {
    pub(crate) fn new(global: usize, per_tenant: usize) -> Self {
        Self {
            global: Arc::new(Budget::new(global)),
            per_tenant,
            tenants: Mutex::default(),
        }
    }

    /// The account of `tenant` (created on first use).
    pub(crate) fn account(&self, tenant: &Arc<str>) -> Account {
        let budget = self
            .tenants
            .lock()
            .expect("memory budget lock")
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Budget::new(self.per_tenant)))
            .clone();
        Account {
            global: self.global.clone(),
            tenant: budget,
            held: 0,
        }
    }

    /// Bytes all instances hold now.
    pub(crate) fn used(&self) -> usize {
        self.global.used()
    }

    /// The host's budget.
    pub(crate) fn limit(&self) -> usize {
        self.global.limit
    }
}

/// What one store has taken from its tenant's and the host's budgets;
/// everything is given back when it is dropped (with the store).
#[derive(Debug)]
pub(crate) struct Account {
    global: Arc<Budget>,
    tenant: Arc<Budget>,
    held: usize,
}

impl Account {
    /// Grows the store's memory from `current` to `desired` bytes.
    ///
    /// # Errors
    /// The scope whose budget would be passed; nothing is taken then.
    pub(crate) fn grow(&mut self, current: usize, desired: usize) -> Result<(), BudgetScope> {
        let more = desired.saturating_sub(current);
        if more == 0 {
            return Ok(());
        }
        if !self.tenant.try_take(more) {
            return Err(BudgetScope::Tenant);
        }
        if !self.global.try_take(more) {
            self.tenant.give(more);
            return Err(BudgetScope::Host);
        }
        self.held += more;
        Ok(())
    }

    /// The tenant budget's limit.
    pub(crate) fn tenant_limit(&self) -> usize {
        self.tenant.limit
    }

    /// The host budget's limit.
    pub(crate) fn host_limit(&self) -> usize {
        self.global.limit
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.tenant.give(self.held);
        self.global.give(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_refused_past_either_budget_and_returned_on_drop() {
        let budgets = MemoryBudgets::new(100, 60);
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let mut a1 = budgets.account(&a);
        assert_eq!(a1.grow(0, 40), Ok(()));
        let mut a2 = budgets.account(&a);
        assert_eq!(a2.grow(0, 30), Err(BudgetScope::Tenant));
        let mut b1 = budgets.account(&b);
        assert_eq!(b1.grow(0, 50), Ok(()));
        assert_eq!(a2.grow(0, 20), Err(BudgetScope::Host));
        assert_eq!(budgets.used(), 90);
        drop(a1);
        assert_eq!(budgets.used(), 50);
        assert_eq!(a2.grow(0, 20), Ok(()));
        assert_eq!(a2.grow(20, 50), Ok(()));
        drop((a2, b1));
        assert_eq!(budgets.used(), 0);
    }
}
