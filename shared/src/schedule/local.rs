//! (being written) The local scheduler.
