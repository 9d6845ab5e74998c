//! Compile-time behaviour of `#[derive(Node)]`, `#[derive(Ports)]` and the
//! typed flow builder: what compiles, and the errors for what does not.
//!
//! Each file under `ui/fail` makes one mistake; its `.stderr` beside it is the
//! expected compiler output. Regenerate them with
//! `TRYBUILD=overwrite cargo test -p ghostflow --test ui`, then read the
//! diff: every error should point at the token the user has to change.
//!
//! Compiler messages change between Rust versions, so the test only runs on
//! the toolchain CI uses.

#[rustversion::attr(not(stable(1.95)), ignore)]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
