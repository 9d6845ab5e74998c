//! Flow documents: flows written as YAML or JSON, loaded through a
//! [`Registry`](crate::Registry) of node types, and written back.

pub mod source;
