//! Compile-time checks: the public handles and futures are `Send + Sync`.

use ghostflow::{Engine, Execution, Flow, Inputs, Outcome};

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_and_futures_are_send_and_sync() {
    assert_send_sync::<Engine>();
    assert_send_sync::<Flow>();
    assert_send_sync::<Execution>();
    assert_send_sync::<Outcome>();
    assert_send_sync::<ghostflow::Error>();
    assert_send_sync::<ghostflow::Context>();
    assert_send_sync::<ghostflow::EventStream>();

    let engine = Engine::new();
    let flow = Flow::builder("empty").build().unwrap();
    let run = engine.run(&flow, Inputs::new());
    assert_send(&run);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let execution = rt.block_on(async { engine.start(&flow, Inputs::new()).unwrap() });
    let wait = execution.wait();
    assert_send(&wait);
    // The empty flow ends at once, with no nodes.
    let outcome = rt.block_on(wait).unwrap();
    assert_eq!(outcome.nodes().len(), 0);
    drop(run);
}
