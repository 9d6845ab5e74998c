//! Builds one benchmark shape many times, for profilers (see `profile_run`).
//!
//! Arguments: a shape name and the number of builds.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use ghostflow_benches::engine::{Specs, build_flow_timed};
use ghostflow_benches::shapes;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(builds)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: profile_build SHAPE BUILDS");
        std::process::exit(2);
    };
    let Some(shape) = shapes::all().into_iter().find(|s| s.name == name) else {
        eprintln!("unknown shape `{name}`");
        std::process::exit(2);
    };
    let specs = Specs::default();
    let checksum = Arc::new(AtomicU64::new(0));
    let mut compile = std::time::Duration::ZERO;
    let began = Instant::now();
    for _ in 0..builds {
        let (flow, took) = build_flow_timed(&shape, &specs, &checksum);
        compile += took;
        drop(flow);
    }
    let elapsed = began.elapsed();
    println!(
        "{name}: {:?} per build (with drop), of which {:?} compiling",
        elapsed / builds,
        compile / builds
    );
}
