//! The agent: one process per identity that logs in with the identity's own credential and
//! delivers exactly its outputs. See `docs/agent.md` for the contract these modules implement.

pub mod output;
