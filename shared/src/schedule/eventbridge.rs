//! (being written) The EventBridge Scheduler adapter of the schedule port.
