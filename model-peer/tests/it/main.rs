//! The model peer against the wire formats its three protocols document:
//! every test starts its own peer and speaks plain HTTP to it.

mod anthropic;
mod behaviour;
mod binary;
mod builtin;
mod common;
mod ollama;
mod openai;
