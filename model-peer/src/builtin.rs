//! The built-in deterministic "model" that answers when no reply is
//! queued: hashed embeddings, extractive answers, schema-satisfying JSON.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::chat::{ChatCall, Format, Role, ToolChoice, ToolUse};
use crate::ids::mix;

/// The number of dimensions of a built-in embedding when the request names
/// none.
pub const DEFAULT_DIMENSIONS: usize = 256;

/// Words that say little about what a text is about; left out of
/// embeddings and of the extractive match.
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "answer", "any",
    "are", "as", "at", "based", "be", "been", "below", "between", "but", "by", "can", "context",
    "could", "did", "do", "does", "for", "from", "given", "had", "has", "have", "he", "her",
    "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "more",
    "most", "my", "no", "not", "of", "on", "only", "or", "our", "please", "provided", "question",
    "she", "should", "so", "some", "such", "tell", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "too", "use", "using", "very", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "whose", "why", "will", "with",
    "would", "you", "your",
];

/// The built-in embedding of `text` in `dimensions` dimensions (at least
/// one): each word of the text, lowercased, without common English stop
/// words and without a plural `s`, is hashed to one dimension and a sign;
/// the sum is L2-normalised. The same text always gives the same vector,
/// and texts that share words are near each other by cosine.
///
/// ```
/// use ghostflow_model_peer::embed_text;
///
/// let cat = embed_text("The cat sat on the mat", 64);
/// let cats = embed_text("cats sitting on a mat", 64);
/// let tax = embed_text("Quarterly tax filing deadlines", 64);
/// let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
/// assert!((dot(&cat, &cat) - 1.0).abs() < 1e-5);
/// assert!(dot(&cat, &cats) > dot(&cat, &tax));
/// ```
pub fn embed_text(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut vector = vec![0.0_f32; dimensions];
    let all = words(text);
    let mut features: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|w| !is_stop_word(w))
        .collect();
    if features.is_empty() {
        features = all.iter().map(String::as_str).collect();
    }
    if features.is_empty() {
        // An empty text still gets a unit vector, the same one every time.
        features.push("");
    }
    for feature in features {
        let hash = mix(fnv1a(feature.as_bytes()));
        let slot = (hash % dimensions as u64) as usize;
        vector[slot] += if hash >> 63 == 1 { -1.0 } else { 1.0 };
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    } else {
        // Features that cancelled out exactly: fall back to the first axis.
        vector[0] = 1.0;
    }
    vector
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The lowercase words of a text (runs of letters and digits), a plural
/// `s` dropped from words longer than three letters.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut w = w.to_lowercase();
            if w.chars().count() > 3 && w.ends_with('s') && !w.ends_with("ss") {
                w.pop();
            }
            w
        })
        .collect()
}

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// The content words of a text, as a set.
fn content_words(text: &str) -> BTreeSet<String> {
    words(text)
        .into_iter()
        .filter(|w| !is_stop_word(w))
        .collect()
}

/// Splits a text into sentences: at line breaks, and after `.`, `!` or `?`
/// followed by whitespace. Sentences keep their punctuation.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if matches!(c, '.' | '!' | '?')
                && chars.peek().is_none_or(|(_, next)| next.is_whitespace())
            {
                let end = i + c.len_utf8();
                out.push(line[start..end].trim());
                start = end;
            }
        }
        out.push(line[start..].trim());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The built-in answer to a chat request: text, or the tool call the
/// request forces.
pub(crate) fn answer(call: &ChatCall) -> (String, Vec<ToolUse>) {
    let text = extract(call);
    let forced = match &call.tool_choice {
        ToolChoice::Named(name) => call.tools.iter().find(|t| &t.name == name),
        ToolChoice::Any => call.tools.first(),
        ToolChoice::Auto | ToolChoice::None => None,
    };
    if let Some(tool) = forced {
        let arguments = value_for(&tool.parameters, &tool.parameters, &text, 0, 0);
        let arguments = if arguments.is_object() {
            arguments
        } else {
            json!({})
        };
        return (
            String::new(),
            vec![ToolUse {
                id: None,
                name: tool.name.clone(),
                arguments,
            }],
        );
    }
    let text = match &call.format {
        Format::Text => text,
        Format::JsonObject => json!({ "answer": text }).to_string(),
        Format::JsonSchema(schema) => value_for(schema, schema, &text, 0, 0).to_string(),
    };
    (text, Vec::new())
}

/// The extractive answer: the sentence of the system, user and tool
/// messages that shares the most content words with the question (the
/// last sentence with a `?` of the last user message, or its last
/// sentence); the earliest such sentence wins a tie. With no sentence in
/// common, the last user message itself.
pub(crate) fn extract(call: &ChatCall) -> String {
    let Some(last_user) = call.turns.iter().rposition(|t| t.role == Role::User) else {
        return call
            .turns
            .iter()
            .rev()
            .find(|t| !t.text.trim().is_empty())
            .map(|t| t.text.trim().to_owned())
            .unwrap_or_default();
    };
    let own = sentences(&call.turns[last_user].text);
    let question_at = own
        .iter()
        .rposition(|s| s.contains('?'))
        .or(own.len().checked_sub(1));
    let Some(question_at) = question_at else {
        return call.turns[last_user].text.trim().to_owned();
    };
    let question = content_words(own[question_at]);
    let mut best: Option<(usize, &str)> = None;
    for (index, turn) in call.turns.iter().enumerate() {
        if turn.role == Role::Assistant {
            continue;
        }
        for (at, sentence) in sentences(&turn.text).into_iter().enumerate() {
            if index == last_user && at == question_at {
                continue;
            }
            let shared = content_words(sentence).intersection(&question).count();
            if shared > 0 && best.is_none_or(|(score, _)| shared > score) {
                best = Some((shared, sentence));
            }
        }
    }
    match best {
        Some((_, sentence)) => sentence.to_owned(),
        None => call.turns[last_user].text.trim().to_owned(),
    }
}

/// A value that satisfies `schema` (resolving `$ref`s against `root`);
/// strings carry `text`. `salt` varies the value, for unique array items.
///
/// Handles `type` (one or several), `const`, `enum`, `default`, `$ref`,
/// `allOf`, `anyOf`, `oneOf`, object `properties` and `required`, array
/// `items`, `prefixItems`, `minItems`, `maxItems` and `uniqueItems`,
/// string `minLength`, `maxLength` and common `format`s, and numeric
/// bounds and `multipleOf`. It does not try to satisfy `pattern`.
pub(crate) fn value_for(
    schema: &Value,
    root: &Value,
    text: &str,
    salt: usize,
    depth: usize,
) -> Value {
    if depth > 32 {
        return Value::Null;
    }
    let Some(object) = schema.as_object() else {
        // `true`, or anything that is not a schema object: anything goes.
        return Value::String(text.to_owned());
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str)
        && let Some(target) = resolve_ref(root, reference)
    {
        return value_for(target, root, text, salt, depth + 1);
    }
    if let Some(value) = object.get("const") {
        return value.clone();
    }
    if let Some(choices) = object.get("enum").and_then(Value::as_array)
        && !choices.is_empty()
    {
        return choices[salt % choices.len()].clone();
    }
    if salt == 0
        && let Some(value) = object.get("default")
    {
        return value.clone();
    }
    if let Some(parts) = object.get("allOf").and_then(Value::as_array) {
        let merged = merge_all_of(object, parts, root);
        return value_for(&merged, root, text, salt, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(choices) = object.get(key).and_then(Value::as_array) {
            let pick = choices
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) != Some("null"))
                .or(choices.first());
            if let Some(pick) = pick {
                return value_for(pick, root, text, salt, depth + 1);
            }
        }
    }
    match schema_type(object) {
        "null" => Value::Null,
        "boolean" => Value::Bool(salt.is_multiple_of(2)),
        "integer" => integer_for(object, salt),
        "number" => number_for(object, salt),
        "array" => array_for(object, root, text, salt, depth),
        "object" => object_for(object, root, text, salt, depth),
        _ => Value::String(string_for(object, text, salt)),
    }
}

fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

fn merge_all_of(object: &Map<String, Value>, parts: &[Value], root: &Value) -> Value {
    let mut merged = object.clone();
    merged.remove("allOf");
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(reference) => resolve_ref(root, reference).unwrap_or(part),
            None => part,
        };
        let Some(part) = part.as_object() else {
            continue;
        };
        for (key, value) in part {
            match (key.as_str(), merged.get_mut(key)) {
                ("properties", Some(Value::Object(have))) => {
                    if let Value::Object(more) = value {
                        for (k, v) in more {
                            have.insert(k.clone(), v.clone());
                        }
                    }
                }
                ("required", Some(Value::Array(have))) => {
                    if let Value::Array(more) = value {
                        have.extend(more.iter().cloned());
                    }
                }
                _ => {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Value::Object(merged)
}

fn schema_type(object: &Map<String, Value>) -> &str {
    match object.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or_else(|| types.first().and_then(Value::as_str))
            .unwrap_or("string"),
        _ if object.contains_key("properties") => "object",
        _ if object.contains_key("items") || object.contains_key("prefixItems") => "array",
        _ if [
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
        ]
        .iter()
        .any(|k| object.contains_key(*k)) =>
        {
            "number"
        }
        _ => "string",
    }
}

fn bound(object: &Map<String, Value>, key: &str) -> Option<f64> {
    object.get(key).and_then(Value::as_f64)
}

/// The numeric range a schema allows: (low, high, low is exclusive, high
/// is exclusive), for drafts where `exclusiveMinimum` is a number or a
/// flag.
fn range(object: &Map<String, Value>) -> (Option<f64>, Option<f64>, bool, bool) {
    let mut low = bound(object, "minimum");
    let mut high = bound(object, "maximum");
    let mut low_open = false;
    let mut high_open = false;
    match object.get("exclusiveMinimum") {
        Some(Value::Bool(true)) => low_open = true,
        Some(v) if v.is_number() => {
            low = v.as_f64();
            low_open = true;
        }
        _ => {}
    }
    match object.get("exclusiveMaximum") {
        Some(Value::Bool(true)) => high_open = true,
        Some(v) if v.is_number() => {
            high = v.as_f64();
            high_open = true;
        }
        _ => {}
    }
    (low, high, low_open, high_open)
}

fn integer_for(object: &Map<String, Value>, salt: usize) -> Value {
    let (low, high, low_open, high_open) = range(object);
    let low = low.map(|l| {
        if low_open {
            l.floor() as i64 + 1
        } else {
            l.ceil() as i64
        }
    });
    let high = high.map(|h| {
        if high_open {
            h.ceil() as i64 - 1
        } else {
            h.floor() as i64
        }
    });
    let step = object
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|m| *m >= 1.0 && m.fract() == 0.0)
        .map_or(1, |m| m as i64);
    let base = match (low, high) {
        (Some(l), _) => l,
        (None, Some(h)) if h < 0 => h,
        _ => 0,
    };
    let mut value = base.div_euclid(step) * step;
    if value < base {
        value += step;
    }
    let salted = value + step * salt as i64;
    let value = match high {
        Some(h) if salted > h => value,
        _ => salted,
    };
    json!(value)
}

fn number_for(object: &Map<String, Value>, salt: usize) -> Value {
    if let Some(step) = object.get("multipleOf").and_then(Value::as_f64)
        && step > 0.0
    {
        let (low, _, low_open, _) = range(object);
        let low = low.unwrap_or(0.0);
        let mut value = (low / step).ceil() * step;
        if low_open && value <= low {
            value += step;
        }
        return json!(value + step * salt as f64);
    }
    let (low, high, low_open, high_open) = range(object);
    let value = match (low, high) {
        (Some(l), Some(h)) if low_open || high_open => (l + h) / 2.0,
        (Some(l), _) if low_open => l + 1.0,
        (Some(l), _) => l,
        (None, Some(h)) if high_open => h.min(0.0) - 1.0,
        (None, Some(h)) => h.min(0.0),
        (None, None) => 0.0,
    };
    let salted = value + salt as f64;
    let value = match high {
        Some(h) if salted > h || (high_open && salted >= h) => value,
        _ => salted,
    };
    json!(value)
}

fn string_for(object: &Map<String, Value>, text: &str, salt: usize) -> String {
    let mut value = match object.get("format").and_then(Value::as_str) {
        Some("date-time") => "2024-01-01T00:00:00Z".to_owned(),
        Some("date") => "2024-01-01".to_owned(),
        Some("time") => "00:00:00Z".to_owned(),
        Some("email") => "user@example.com".to_owned(),
        Some("uri" | "url" | "iri") => "https://example.com/".to_owned(),
        Some("hostname") => "example.com".to_owned(),
        Some("ipv4") => "127.0.0.1".to_owned(),
        Some("ipv6") => "::1".to_owned(),
        Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
        _ if text.is_empty() => "answer".to_owned(),
        _ => text.to_owned(),
    };
    if salt > 0 {
        value = format!("{value} {}", salt + 1);
    }
    let max = object
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let min = object
        .get("minLength")
        .and_then(Value::as_u64)
        .map_or(0, |m| usize::try_from(m).unwrap_or(usize::MAX));
    if let Some(max) = max
        && value.chars().count() > max
    {
        value = value.chars().take(max).collect();
    }
    let have = value.chars().count();
    if have < min {
        value.extend(std::iter::repeat_n('x', min - have));
    }
    value
}

fn array_for(
    object: &Map<String, Value>,
    root: &Value,
    text: &str,
    salt: usize,
    depth: usize,
) -> Value {
    let min = object
        .get("minItems")
        .and_then(Value::as_u64)
        .map_or(0, |m| usize::try_from(m.min(64)).unwrap_or(64));
    let max = object
        .get("maxItems")
        .and_then(Value::as_u64)
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let prefix: &[Value] = object
        .get("prefixItems")
        .and_then(Value::as_array)
        .or_else(|| object.get("items").and_then(Value::as_array))
        .map_or(&[], Vec::as_slice);
    let items = object.get("items").filter(|i| !i.is_array());
    let mut count = min.max(prefix.len()).max(1);
    if items.is_none() && prefix.len() < count && !prefix.is_empty() {
        count = prefix.len().max(min);
    }
    if let Some(max) = max {
        count = count.min(max);
    }
    let unique = object.get("uniqueItems") == Some(&Value::Bool(true));
    let any = Value::Bool(true);
    let values = (0..count)
        .map(|i| {
            let schema = prefix.get(i).or(items).unwrap_or(&any);
            let salt = if unique { salt + i } else { salt };
            value_for(schema, root, text, salt, depth + 1)
        })
        .collect();
    Value::Array(values)
}

fn object_for(
    object: &Map<String, Value>,
    root: &Value,
    text: &str,
    salt: usize,
    depth: usize,
) -> Value {
    let mut out = Map::new();
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, schema) in properties {
            out.insert(name.clone(), value_for(schema, root, text, salt, depth + 1));
        }
    }
    if let Some(required) = object.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !out.contains_key(name) {
                out.insert(name.to_owned(), Value::String(text.to_owned()));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ToolDef, Turn};

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn call(turns: &[(Role, &str)]) -> ChatCall {
        ChatCall {
            model: "m".into(),
            turns: turns
                .iter()
                .map(|(role, text)| Turn {
                    role: *role,
                    text: (*text).to_owned(),
                })
                .collect(),
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            format: Format::Text,
            max_tokens: None,
            stop: Vec::new(),
            stream: false,
        }
    }

    #[test]
    fn stop_words_are_sorted_for_the_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn embeddings_are_normalised_and_deterministic() {
        for text in ["", "the", "Paris is the capital of France.", "ü ö ä"] {
            let v = embed_text(text, 256);
            assert_eq!(v.len(), 256);
            assert!((cosine(&v, &v) - 1.0).abs() < 1e-5, "{text:?}");
            assert_eq!(v, embed_text(text, 256));
        }
        assert_eq!(embed_text("x", 0).len(), 1);
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let query = embed_text("What is the capital of France?", 256);
        let near = embed_text("Paris is the capital of France.", 256);
        let far = embed_text("Bananas are rich in potassium.", 256);
        assert!(cosine(&query, &near) > 0.5);
        assert!(cosine(&query, &near) > cosine(&query, &far) + 0.3);
    }

    #[test]
    fn sentences_split_at_punctuation_and_lines() {
        assert_eq!(
            sentences("Context:\nParis is big. It has 2.1 million people!\nQuestion: Why?"),
            [
                "Context:",
                "Paris is big.",
                "It has 2.1 million people!",
                "Question: Why?"
            ]
        );
    }

    #[test]
    fn the_answer_is_the_best_matching_sentence() {
        let c = call(&[
            (Role::System, "You are terse. Bananas are yellow."),
            (
                Role::User,
                "Context:\nBerlin is the capital of Germany.\nParis is the capital of France.\n\nQuestion: What is the capital of France?",
            ),
        ]);
        assert_eq!(extract(&c), "Paris is the capital of France.");
        let c = call(&[
            (Role::System, "Paris is the capital of France."),
            (Role::User, "What is the capital of France?"),
        ]);
        assert_eq!(extract(&c), "Paris is the capital of France.");
        let c = call(&[(Role::User, "Say hello")]);
        assert_eq!(extract(&c), "Say hello");
    }

    #[test]
    fn tool_results_are_context() {
        let c = call(&[
            (Role::User, "What is the weather in Paris?"),
            (Role::Assistant, ""),
            (
                Role::Tool,
                "{\"city\": \"Paris\", \"weather\": \"sunny, 21 C\"}",
            ),
        ]);
        assert!(extract(&c).contains("sunny"));
    }

    #[test]
    fn schema_values_satisfy_their_schemas() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 3, "maxLength": 10},
                "age": {"type": "integer", "minimum": 18, "maximum": 99, "multipleOf": 5},
                "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": true},
                "kind": {"enum": ["a", "b"]},
                "when": {"type": "string", "format": "date-time"},
                "maybe": {"type": ["null", "boolean"]},
                "nested": {"$ref": "#/$defs/point"},
                "either": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": -3, "maximum": -2}]}
            },
            "required": ["name", "extra"],
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}}
        });
        let value = value_for(&schema, &schema, "Paris is the capital", 0, 0);
        assert_eq!(value["name"], "Paris is t");
        assert_eq!(value["age"], 20);
        let score = value["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 1.0);
        let tags = value["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 2);
        assert_ne!(tags[0], tags[1]);
        assert_eq!(value["kind"], "a");
        assert_eq!(value["when"], "2024-01-01T00:00:00Z");
        assert_eq!(value["maybe"], true);
        assert_eq!(value["nested"], json!({"x": 0.0}));
        assert_eq!(value["either"], -3);
        assert_eq!(value["extra"], "Paris is the capital");
    }

    #[test]
    fn forced_tools_are_called_with_schema_arguments() {
        let mut c = call(&[(Role::User, "Weather in Paris?")]);
        c.tools.push(ToolDef {
            name: "get_weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        });
        c.tool_choice = ToolChoice::Any;
        let (text, calls) = answer(&c);
        assert_eq!(text, "");
        assert_eq!(calls[0].name, "get_weather");
        assert!(calls[0].arguments["city"].is_string());
    }
}
