//! The state port's contract, on the embedded (file-backed) store of the local stack.

use std::sync::atomic::{AtomicU64, Ordering};

use shared::store::DEFAULT_RETENTION;
use shared::store::embedded::EmbeddedStore;

/// A store in a file of its own, under the system's temporary folder.
async fn fresh_store() -> EmbeddedStore {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "capguard-contract-{}-{}.redb",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    EmbeddedStore::open(&path, DEFAULT_RETENTION).expect("the embedded store opens")
}

capguard_tests::store_contract_tests!(fresh_store());
