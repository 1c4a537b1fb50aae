//! One module per subcommand.

pub(crate) mod ca;
pub(crate) mod lab;
