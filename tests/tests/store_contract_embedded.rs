//! The state port's contract, on the embedded (file-backed) store of the local stack.

use shared::store::DEFAULT_RETENTION;
use shared::store::embedded::EmbeddedStore;

/// A store in a file of its own, under the system's temporary folder. The name goes when the
/// store is open; the open handle keeps the data until the test ends.
async fn fresh_store() -> EmbeddedStore {
    let file = tempfile::Builder::new().prefix("capguard-contract-").suffix(".redb").tempfile();
    let path = file.expect("a temporary file").into_temp_path();
    EmbeddedStore::open(&path, DEFAULT_RETENTION).expect("the embedded store opens")
}

capguard_tests::store_contract_tests!(fresh_store());
