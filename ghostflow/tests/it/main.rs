//! Integration tests, compiled into one binary.

mod common;
mod derive;
mod documents;
mod events;
mod props;
mod readme;
mod semantics;
mod send_sync;
mod validation;
