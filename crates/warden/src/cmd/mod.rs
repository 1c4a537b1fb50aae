//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod ca;
pub(crate) mod identity;
pub(crate) mod lab;
pub(crate) mod provision;
