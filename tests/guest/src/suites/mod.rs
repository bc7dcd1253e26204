//! The in-guest test suites, one module per area.

pub mod baseline;
pub mod gtp;
pub mod kfuzz;
pub mod plugin;
pub mod runtime;
pub mod sctp_repair;
pub mod shapes;
