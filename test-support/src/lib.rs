//! Helpers shared by haul's own tests (the root crate's, the backends', the dashboard's
//! and the conformance suite's); not published.
//!
//! A test that needs a storage which behaves like a real one except for a few calls
//! (writes that stall, claims that fail, calls that are counted) implements
//! [`StorageHooks`] for a type of its own, overriding only those calls, and hands
//! [`Hooked`] of that type to the worker or the dashboard:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! use haul_core::{Result, Storage, Timestamp};
//! use haul_memory::MemoryStorage;
//! use haul_test_support::{Hooked, StorageHooks};
//!
//! /// A memory storage that counts its promotions.
//! #[derive(Default)]
//! struct CountsPromotions {
//!     inner: MemoryStorage,
//!     promotions: AtomicUsize,
//! }
//!
//! #[async_trait::async_trait]
//! impl StorageHooks for CountsPromotions {
//!     type Inner = MemoryStorage;
//!     fn inner(&self) -> &MemoryStorage {
//!         &self.inner
//!     }
//!     async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
//!         self.promotions.fetch_add(1, Ordering::SeqCst);
//!         self.inner.promote_due(now).await
//!     }
//! }
//!
//! let storage = Hooked::new(CountsPromotions::default());
//! // `storage` is a `Storage` and an `Admin`; its hooks' fields are reached through it.
//! assert_eq!(storage.promotions.load(Ordering::SeqCst), 0);
//! ```

mod hooked;
mod hooks;

pub use hooked::Hooked;
pub use hooks::StorageHooks;
