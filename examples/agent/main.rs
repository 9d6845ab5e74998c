//! Agent: a tool-calling `agent` node whose two tools are custom nodes (an
//! inventory lookup and a price calculator), registered beside the
//! library's nodes and declared in a flow document; its answer, its tool
//! calls and its event timeline.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example agent
//! ```
//!
//! By default the model is a local test peer started by the example
//! itself (`ghostflow-model-peer`), scripted to call both tools and then
//! answer, so the example runs offline; it then checks that the tools gave
//! the results they must compute, and exits with an error if they did not.
//! To use a real OpenAI-compatible server instead, set `OPENAI_BASE_URL`
//! (such as `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`), and
//! `OPENAI_MODEL` (default `gpt-4o-mini`) and `OPENAI_API_KEY` as it needs:
//!
//! ```text
//! OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... cargo run --example agent
//! ```

use std::sync::Arc;

use futures::StreamExt;
use ghostflow::document::{Format, Loader};
use ghostflow::prelude::*;
use ghostflow::{Event, EventKind};
use ghostflow_model_peer::{ModelPeer, Reply};
use serde_json::json;

/// An item to look up.
#[derive(Ports, Debug)]
pub struct ItemQuery {
    /// The item's SKU, such as `LAMP-01`.
    pub sku: String,
}

/// What the inventory knows about an item.
#[derive(Ports, Debug)]
pub struct ItemInfo {
    /// The item's name.
    pub name: String,
    /// Units in stock.
    pub in_stock: u64,
    /// The price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Looks up an item in the shop's inventory: its name, how many are in
/// stock, and its unit price.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = ItemQuery, output = ItemInfo, category = "shop")]
pub struct InventoryLookup {}

/// The shop's inventory: SKU, name, units in stock, unit price in cents.
const INVENTORY: [(&str, &str, u64, u64); 3] = [
    ("LAMP-01", "Brass desk lamp", 14, 4500),
    ("CHAIR-07", "Oak reading chair", 2, 18900),
    ("RUG-03", "Wool rug, 2x3 m", 0, 32000),
];

impl Run for InventoryLookup {
    async fn run(&self, input: ItemQuery, _ctx: &Context) -> Result<ItemInfo, NodeError> {
        let sku = input.sku.trim().to_uppercase();
        let (_, name, in_stock, unit_price_cents) = INVENTORY
            .iter()
            .find(|(id, ..)| *id == sku)
            .ok_or_else(|| {
                NodeError::permanent(format!(
                    "no item with SKU `{}`; the SKUs are {}",
                    input.sku,
                    INVENTORY.map(|(id, ..)| id).join(", ")
                ))
            })?;
        Ok(ItemInfo {
            name: (*name).to_owned(),
            in_stock: *in_stock,
            unit_price_cents: *unit_price_cents,
        })
    }
}

/// An order line to price.
#[derive(Ports, Debug)]
pub struct PriceQuery {
    /// The price of one unit, in cents.
    pub unit_price_cents: u64,
    /// How many units.
    pub quantity: u64,
    /// A coupon code, if the customer has one.
    pub coupon: Option<String>,
}

/// A priced order line.
#[derive(Ports, Debug)]
pub struct PriceBreakdown {
    /// Units times unit price, in cents.
    pub subtotal_cents: u64,
    /// The coupon's discount, in cents.
    pub discount_cents: u64,
    /// Sales tax, in cents.
    pub tax_cents: u64,
    /// What the customer pays, in cents.
    pub total_cents: u64,
}

/// Prices an order line: the subtotal, a coupon's discount, and sales tax.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = PriceQuery, output = PriceBreakdown, category = "shop")]
pub struct PriceCalculator {
    /// Sales tax, in percent.
    pub tax_percent: u64,
    /// Coupon codes and their discount, in percent.
    #[serde(default)]
    pub coupons: std::collections::BTreeMap<String, u64>,
}

impl Run for PriceCalculator {
    async fn run(&self, input: PriceQuery, _ctx: &Context) -> Result<PriceBreakdown, NodeError> {
        let subtotal = input
            .unit_price_cents
            .checked_mul(input.quantity)
            .ok_or_else(|| NodeError::permanent("the order is too large to price"))?;
        let percent = match &input.coupon {
            None => 0,
            Some(code) => *self
                .coupons
                .get(&code.to_uppercase())
                .ok_or_else(|| NodeError::permanent(format!("coupon `{code}` is not valid")))?,
        };
        let discount = subtotal * percent.min(100) / 100;
        let tax = (subtotal - discount) * self.tax_percent / 100;
        Ok(PriceBreakdown {
            subtotal_cents: subtotal,
            discount_cents: discount,
            tax_cents: tax,
            total_cents: subtotal - discount + tax,
        })
    }
}

/// The flow: one agent with the two tools. `model` is the model block.
fn document(model: &str) -> String {
    format!(
        r#"
version: 1
name: shop-assistant
inputs:
  question: {{ schema: {{ type: string }} }}
nodes:
  - id: assistant
    type: agent
    config:
      model: {model}
      system: >-
        You are the assistant of a small furniture shop. Look items up before
        you speak about them, price orders with the calculator, and give
        prices in euros.
      tools:
        - name: lookup_item
          description: Looks up an item by SKU; gives its name, units in stock and unit price in cents.
          node: {{ type: inventory_lookup }}
        - name: price_order
          description: Prices an order line (unit price in cents, quantity, optional coupon); gives subtotal, discount, tax and total in cents.
          node:
            type: price_calculator
            config: {{ tax_percent: 20, coupons: {{ WELCOME10: 10 }} }}
      max_steps: 6
      tool_timeout: 10s
edges:
  - {{ from: input.question, to: assistant.prompt }}
outputs:
  answer: assistant.answer
  tool_calls: assistant.tool_calls
  steps: assistant.steps
  usage: assistant.usage
"#
    )
}

/// One line of the timeline.
fn describe(event: &Event) -> Option<String> {
    Some(match &event.kind {
        EventKind::RunStarted { flow, .. } => format!("run started: {flow}"),
        EventKind::NodeStarted { node, .. } => format!("{node} started"),
        EventKind::NodeSucceeded { node, duration, .. } => {
            format!("{node} succeeded in {duration:.1?}")
        }
        EventKind::NodeFailed { node, error, .. } => format!("{node} failed: {error}"),
        EventKind::NodeProgress { node, data, .. } => {
            if let Some(call) = data.get("tool_call") {
                format!(
                    "{node} calls {}({}) [step {}]",
                    call["name"].as_str().unwrap_or("?"),
                    call["arguments"],
                    call["step"]
                )
            } else if let Some(result) = data.get("tool_result") {
                match result.get("error") {
                    Some(error) => format!(
                        "{node} got an error from {}: {error}",
                        result["name"].as_str().unwrap_or("?")
                    ),
                    None => format!(
                        "{node} got {} from {} in {} ms",
                        result["result"],
                        result["name"].as_str().unwrap_or("?"),
                        result["duration_ms"]
                    ),
                }
            } else {
                // Streamed tokens are shown joined, with the answer.
                return None;
            }
        }
        EventKind::RunFinished { status, .. } => format!("run finished: {status:?}"),
        _ => return None,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args().nth(1).unwrap_or_else(|| {
        "Do you have the brass desk lamp (LAMP-01)? What would 3 cost with my coupon WELCOME10?"
            .to_owned()
    });

    // The model: a real OpenAI-compatible server, or the local peer.
    let mut _peer = None;
    let model = match std::env::var("OPENAI_BASE_URL") {
        Ok(base_url) => {
            let name = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
            let key = if std::env::var_os("OPENAI_API_KEY").is_some() {
                ", api_key_secret: OPENAI_API_KEY"
            } else {
                ""
            };
            println!("model: {name} at {base_url}");
            format!(r#"{{ provider: openai, name: "{name}", base_url: "{base_url}"{key} }}"#)
        }
        Err(_) => {
            let peer = ModelPeer::start().await;
            // The script: look the lamp up, price three with the coupon,
            // then answer.
            peer.push(Reply::tool_call("lookup_item", json!({"sku": "LAMP-01"})));
            peer.push(
                Reply::tool_call(
                    "price_order",
                    json!({"unit_price_cents": 4500, "quantity": 3, "coupon": "WELCOME10"}),
                )
                .with_text("The lamp is in stock at 45.00 EUR; let me price three."),
            );
            peer.push(Reply::text(
                "Yes, we have 14 brass desk lamps in stock. Three cost 135.00 EUR; \
                 WELCOME10 takes off 13.50 EUR, and with 20% tax (24.30 EUR) you pay 145.80 EUR.",
            ));
            println!("model: the local test peer at {}", peer.openai_url());
            let model = format!(
                r#"{{ provider: openai, name: shop-model, base_url: "{}" }}"#,
                peer.openai_url()
            );
            _peer = Some(peer);
            model
        }
    };
    println!("question: {question}\n");

    // The registry: the library's nodes and the two tools.
    let mut registry = ghostflow_nodes::registry();
    registry
        .register::<InventoryLookup>()
        .register::<PriceCalculator>();
    let registry = Arc::new(registry);
    let flow = Loader::new(&registry)
        .load_bytes(
            document(&model).as_bytes(),
            Format::Yaml,
            Some("shop-assistant.yaml"),
        )?
        .flow;
    // The agent makes its tools with the engine's registry.
    let engine = Engine::builder().registry(registry).build();

    let execution = engine.start(&flow, Inputs::new().set("question", question))?;
    let events = execution.events();
    let outcome = execution.wait().await?;

    println!("answer: {}\n", outcome.output::<String>("answer")?);
    println!("tool calls:");
    let calls = outcome.output::<serde_json::Value>("tool_calls")?;
    for call in calls.as_array().into_iter().flatten() {
        let result = call.get("result").or_else(|| call.get("error"));
        println!(
            "  step {} {}({}) -> {} ({} ms)",
            call["step"],
            call["name"].as_str().unwrap_or("?"),
            call["arguments"],
            result.unwrap_or(&serde_json::Value::Null),
            call["duration_ms"]
        );
    }
    println!(
        "\nsteps: {}, usage: {}",
        outcome.output::<u32>("steps")?,
        outcome.output::<serde_json::Value>("usage")?
    );
    println!("\ntimeline:");
    let timeline: Vec<Event> = events.collect().await;
    // Streamed text arrives a token at a time: shown as one line per run
    // of tokens, at the time of its first.
    let mut text: Option<(std::time::Duration, String)> = None;
    for event in &timeline {
        if let EventKind::NodeProgress { data, .. } = &event.kind
            && let Some(token) = data["token"].as_str()
        {
            text.get_or_insert_with(|| (event.elapsed, String::new()))
                .1
                .push_str(token);
            continue;
        }
        if let Some((at, said)) = text.take() {
            println!("  {at:>9.3?}  assistant wrote: {said:?}");
        }
        if let Some(line) = describe(event) {
            println!("  {:>9.3?}  {line}", event.elapsed);
        }
    }

    // Against the local peer the model's part is scripted: what is left to
    // check is the tools' part, the results the agent got back from them.
    if _peer.is_some()
        && let Err(problem) = check_tool_results(&calls)
    {
        eprintln!("error: {problem}");
        std::process::exit(1);
    }
    Ok(())
}

/// The results the two tools must give the scripted calls: the lamp from
/// the inventory, and three lamps at 45.00 with WELCOME10 (10% off 135.00)
/// and 20% tax on the rest.
fn check_tool_results(calls: &serde_json::Value) -> Result<(), String> {
    let expected = [
        (
            "lookup_item",
            json!({"name": "Brass desk lamp", "in_stock": 14, "unit_price_cents": 4500}),
        ),
        (
            "price_order",
            json!({
                "subtotal_cents": 13500,
                "discount_cents": 1350,
                "tax_cents": 2430,
                "total_cents": 14580
            }),
        ),
    ];
    let got: Vec<(&str, &serde_json::Value)> = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| {
            (
                call["name"].as_str().unwrap_or("?"),
                call.get("result")
                    .or_else(|| call.get("error"))
                    .unwrap_or(&serde_json::Value::Null),
            )
        })
        .collect();
    let matches = got.len() == expected.len()
        && got
            .iter()
            .zip(&expected)
            .all(|((name, result), (want_name, want))| name == want_name && *result == want);
    if matches {
        return Ok(());
    }
    let expected: Vec<(&str, &serde_json::Value)> = expected.iter().map(|(n, r)| (*n, r)).collect();
    Err(format!(
        "the tools did not give the results they must compute: expected {}; got {}",
        listed(&expected),
        listed(&got),
    ))
}

/// Tool results as `name -> result, ...`.
fn listed(calls: &[(&str, &serde_json::Value)]) -> String {
    let calls: Vec<String> = calls
        .iter()
        .map(|(name, result)| format!("{name} -> {result}"))
        .collect();
    calls.join(", ")
}
