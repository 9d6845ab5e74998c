//! The `embed` node: vectors for texts, in batches.

use ghostflow::prelude::*;
use serde::Deserializer;
use serde_json::{Value, json};

use super::chat::usage_json;
use super::model::Usage;
use super::settings::{ModelSettings, embedding_settings};

/// Turns texts into embedding vectors with an embedding model, one vector
/// per text, in order.
///
/// Give a list of texts on `texts`, or one text on `text`. The texts are
/// sent in batches of `batch_size` (one request per batch, one after the
/// other); the node checks that each answer has one vector per text and
/// that all vectors have the same number of dimensions. Providers:
/// `openai` (and compatible servers) and `ollama`; Anthropic has no
/// embeddings API. `model.dimensions` asks models that can shorten their
/// vectors for that many dimensions.
///
/// ```yaml
/// - id: vectors
///   type: embed
///   config:
///     model: { provider: ollama, name: nomic-embed-text }
///     batch_size: 32
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = EmbedInput, output = EmbedOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct Embed {
    /// The embedding model: `provider` (`openai` or `ollama`), `name`, and
    /// where and with which key.
    #[serde(deserialize_with = "embedding_settings")]
    pub model: ModelSettings,
    /// Texts per request (default 64, at most 2048).
    #[serde(default = "default_batch_size", deserialize_with = "batch_size")]
    pub batch_size: u32,
}

/// The most texts one request may carry (OpenAI's limit).
pub const MAX_BATCH_SIZE: u32 = 2048;

fn default_batch_size() -> u32 {
    64
}

fn batch_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let size = u32::deserialize(deserializer)?;
    if !(1..=MAX_BATCH_SIZE).contains(&size) {
        return Err(serde::de::Error::custom(format!(
            "the batch size is {size}; it goes from 1 to {MAX_BATCH_SIZE}"
        )));
    }
    Ok(size)
}

/// What an [`Embed`] reads: `texts` or `text`.
#[derive(Ports, Debug)]
pub struct EmbedInput {
    /// The texts to embed.
    pub texts: Option<Vec<String>>,
    /// One text to embed (in place of `texts`).
    pub text: Option<String>,
}

/// The vectors of an [`Embed`].
#[derive(Ports, Debug)]
pub struct EmbedOutput {
    /// One vector per text, in the order of the texts.
    pub vectors: Vec<Vec<f32>>,
    /// The number of dimensions of every vector (0 for no texts).
    pub dimensions: u64,
    /// Tokens read, `{input_tokens, output_tokens, total_tokens}`, or null
    /// when the provider did not say.
    pub usage: Value,
}

impl Embed {
    /// Embeds with `model`, 64 texts per request.
    pub fn new(model: ModelSettings) -> Self {
        Embed {
            model,
            batch_size: default_batch_size(),
        }
    }
}

impl Run for Embed {
    async fn run(&self, input: EmbedInput, ctx: &Context) -> Result<EmbedOutput, NodeError> {
        let texts = match (input.texts, input.text) {
            (Some(texts), None) => texts,
            (None, Some(text)) => vec![text],
            (Some(_), Some(_)) => {
                return Err(NodeError::permanent(
                    "inputs `texts` and `text`: give one of them, not both",
                ));
            }
            (None, None) => {
                return Err(NodeError::permanent(
                    "nothing to embed: connect `texts` (a list of strings) or `text`",
                ));
            }
        };
        let model = self.model.embedding_model(ctx)?;
        let batch_size = self.batch_size.clamp(1, MAX_BATCH_SIZE) as usize;
        let mut vectors = Vec::with_capacity(texts.len());
        let mut usage: Option<Usage> = None;
        let batches = texts.len().div_ceil(batch_size);
        for (n, batch) in texts.chunks(batch_size).enumerate() {
            let embeddings = model.embed(batch, ctx).await?;
            if embeddings.vectors.len() != batch.len() {
                return Err(NodeError::permanent(format!(
                    "the model returned {} vector(s) for {} text(s)",
                    embeddings.vectors.len(),
                    batch.len()
                )));
            }
            if let Some(more) = embeddings.usage {
                usage = Some(usage.unwrap_or_default().plus(more));
            }
            vectors.extend(embeddings.vectors);
            if batches > 1 {
                ctx.progress(json!({"embedded": vectors.len(), "of": texts.len(), "batch": n + 1}));
            }
        }
        let dimensions = vectors.first().map_or(0, Vec::len);
        if let Some((i, v)) = vectors
            .iter()
            .enumerate()
            .find(|(_, v)| v.len() != dimensions || v.is_empty())
        {
            return Err(NodeError::permanent(format!(
                "the model returned a vector of {} dimension(s) for text {i}, and {dimensions} for text 0",
                v.len()
            )));
        }
        Ok(EmbedOutput {
            vectors,
            dimensions: dimensions as u64,
            usage: usage_json(usage),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked_when_they_load() {
        let parse = |config: Value| {
            serde_path_to_error::deserialize::<_, Embed>(config)
                .map_err(|e| format!("{}: {}", e.path(), e.inner()))
        };
        let node = parse(json!({"model": {"provider": "openai", "name": "e"}})).unwrap();
        assert_eq!(node.batch_size, 64);
        for (config, expected) in [
            (
                json!({"model": {"provider": "anthropic", "name": "c"}}),
                "model: Anthropic has no embeddings API",
            ),
            (
                json!({"model": {"provider": "openai", "name": "e"}, "batch_size": 0}),
                "batch_size: the batch size is 0; it goes from 1 to 2048",
            ),
            (
                json!({"model": {"provider": "openai", "name": "e"}, "batch_size": 5000}),
                "batch_size: the batch size is 5000",
            ),
        ] {
            let err = parse(config.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{config}: `{err}` should start with `{expected}`"
            );
        }
    }
}
