//! Runs one benchmark shape many times on a prebuilt flow, for profilers.
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=1 cargo build --release -p ghostflow-benches --example profile_run
//! perf record -g target/release/examples/profile_run chain 3000 [mt]
//! ```
//!
//! Arguments: a shape name (see `shapes::all`), the number of runs, and `mt`
//! for the multi-thread runtime (two workers) instead of the current-thread one.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use ghostflow::{Engine, Inputs};
use ghostflow_benches::engine::{Specs, build_flow};
use ghostflow_benches::shapes;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(runs)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: profile_run SHAPE RUNS [mt]");
        std::process::exit(2);
    };
    let Some(shape) = shapes::all().into_iter().find(|s| s.name == name) else {
        eprintln!("unknown shape `{name}`");
        std::process::exit(2);
    };
    let rt = if args.get(3).is_some_and(|a| a == "mt") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
    }
    .expect("a runtime");
    let checksum = Arc::new(AtomicU64::new(0));
    let flow = build_flow(&shape, &Specs::default(), &checksum);
    let engine = Engine::new();
    let began = Instant::now();
    rt.block_on(rt.spawn(async move {
        for _ in 0..runs {
            engine
                .run(&flow, Inputs::new())
                .await
                .expect("bench flows succeed");
        }
    }))
    .expect("the runs do not panic");
    let elapsed = began.elapsed();
    println!(
        "{name}: {:?} per run, {:.0} ns per node",
        elapsed / runs,
        elapsed.as_nanos() as f64 / f64::from(runs) / shape.len() as f64
    );
}
