//! (being written) The DynamoDB adapter of the state port.
