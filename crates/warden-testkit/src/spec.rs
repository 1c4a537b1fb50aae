//! The example platform spec the lab documents (`examples/lab/warden.toml`), which most
//! end-to-end tests apply as shipped, so a change to it is tested everywhere at once.

/// Path of the shipped example spec.
pub const EXAMPLE_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/lab/warden.toml"
);

/// Its text, for tests that write a variant of it.
pub const EXAMPLE_SPEC_TEXT: &str = include_str!("../../../examples/lab/warden.toml");
