//! Derive tests (being written).
