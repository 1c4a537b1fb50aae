//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod backup;
pub(crate) mod break_glass;
pub(crate) mod ca;
pub(crate) mod ci;
pub(crate) mod completions;
pub(crate) mod custody;
pub(crate) mod domain;
pub(crate) mod dr;
pub(crate) mod evidence;
pub(crate) mod identity;
pub(crate) mod isolation;
pub(crate) mod lab;
pub(crate) mod lab_nodes;
pub(crate) mod operator;
pub(crate) mod posture;
pub(crate) mod provision;
pub(crate) mod restore;
pub(crate) mod reveal;
pub(crate) mod revoke;
pub(crate) mod rotate;
pub(crate) mod seal;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod transit;
pub(crate) mod transport;
