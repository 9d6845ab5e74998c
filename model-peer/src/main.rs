//! `ghostflow-model-peer`: serves the OpenAI-compatible, Ollama and
//! Anthropic wire formats on one port, answered by the built-in
//! deterministic model, until killed.
//!
//! ```text
//! cargo run -p ghostflow-model-peer -- --port 11435
//! ```

use std::process::ExitCode;

use clap::Parser;
use ghostflow_model_peer::ModelPeer;

/// A local model server for GhostFlow's examples and tests: speaks the
/// OpenAI-compatible (/v1/chat/completions, /v1/embeddings), Ollama
/// (/api/chat, /api/embed, /api/tags) and Anthropic (/v1/messages) wire
/// formats, answered by a deterministic built-in model (extractive chat
/// answers, hashed embeddings, schema-satisfying JSON).
#[derive(Debug, Parser)]
#[command(name = "ghostflow-model-peer", version)]
struct Args {
    /// The port to listen on (0 for any free one).
    #[arg(long, default_value_t = 11435)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Require this API key (`Authorization: Bearer KEY` for OpenAI and
    /// Ollama, `x-api-key: KEY` for Anthropic).
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Serve only these models (comma-separated); others get the
    /// protocol's "model not found". All models by default.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    models: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let peer = match ModelPeer::bind((args.host.as_str(), args.port)).await {
        Ok(peer) => peer,
        Err(e) => {
            eprintln!(
                "ghostflow-model-peer: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(key) = args.api_key {
        peer.api_key(key);
    }
    if !args.models.is_empty() {
        peer.only_models(args.models);
    }
    println!("ghostflow-model-peer listening on {}", peer.url());
    println!(
        "  OpenAI-compatible  {}   (POST /chat/completions, /embeddings; GET /models)",
        peer.openai_url()
    );
    println!(
        "  Ollama             {}      (POST /api/chat, /api/embed; GET /api/tags)",
        peer.url()
    );
    println!(
        "  Anthropic          {}      (POST /v1/messages)",
        peer.url()
    );
    match tokio::signal::ctrl_c().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ghostflow-model-peer: cannot wait for Ctrl-C: {e}");
            // Without a signal handler, serve until the process is killed.
            std::future::pending::<ExitCode>().await
        }
    }
}
