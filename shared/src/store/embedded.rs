//! (being written) The embedded adapter of the state port.
