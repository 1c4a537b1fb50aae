//! The example platform spec the lab documents (`examples/lab/warden.toml`), which most
//! end-to-end tests apply as shipped, so a change to it is tested everywhere at once.

/// Path of the shipped example spec.
pub const EXAMPLE_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/lab/warden.toml"
);

/// Its text, for tests that write a variant of it.
pub const EXAMPLE_SPEC_TEXT: &str = include_str!("../../../examples/lab/warden.toml");

/// The example spec as a lab from [`LabEnv`](crate::LabEnv) runs it: that lab starts no
/// PostgreSQL, so the example's lab database (`[databases.main]` on `lab-postgres`, billing's)
/// is left out, as `warden … --lab` leaves it out for such a lab
/// (`warden_lab::Lab::bind_postgres`).
pub fn example_spec() -> warden_spec::Spec {
    let mut spec = warden_spec::load(std::path::Path::new(EXAMPLE_SPEC))
        .unwrap_or_else(|e| panic!("the example spec is valid: {e}"));
    warden_lab::postgres::without_lab_databases(&mut spec);
    spec
}
