//! Incremental parsers for the two ways model servers stream an answer:
//! server-sent events ([`SseParser`]: OpenAI-compatible servers and
//! Anthropic) and newline-delimited JSON ([`NdjsonParser`]: Ollama).
//!
//! Both take the body's bytes in whatever chunks the network delivers (a
//! line, an event or a UTF-8 character may be split anywhere) and give back
//! complete events or lines. Lines are split on bytes, so a multi-byte
//! character is never cut; a complete line that is not UTF-8 is an error.
//! Every line and event is bounded by [`MAX_EVENT_BYTES`].

use std::fmt;

/// The largest line, SSE event or NDJSON object accepted from a peer.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Why a stream cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamError {
    /// A line or event is larger than the limit.
    TooLarge(usize),
    /// A line is not UTF-8.
    NotUtf8,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::TooLarge(limit) => {
                write!(f, "a streamed event is larger than {limit} bytes")
            }
            StreamError::NotUtf8 => f.write_str("a streamed line is not UTF-8 text"),
        }
    }
}

/// Splits bytes into lines across chunks.
#[derive(Debug)]
struct Lines {
    /// The line so far.
    buf: Vec<u8>,
    /// SSE ends lines at CR, LF or CRLF; NDJSON at LF (a CR before it is
    /// dropped).
    sse: bool,
    /// The last chunk ended with CR: a LF that starts the next one belongs
    /// to the same line break.
    after_cr: bool,
    limit: usize,
}

impl Lines {
    fn new(sse: bool, limit: usize) -> Self {
        Lines {
            buf: Vec::new(),
            sse,
            after_cr: false,
            limit,
        }
    }

    /// Adds `chunk`; pushes the lines it completes onto `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), StreamError> {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        loop {
            let end = if self.sse {
                rest.iter().position(|&b| b == b'\n' || b == b'\r')
            } else {
                rest.iter().position(|&b| b == b'\n')
            };
            let Some(end) = end else {
                if self.buf.len() + rest.len() > self.limit {
                    return Err(StreamError::TooLarge(self.limit));
                }
                self.buf.extend_from_slice(rest);
                return Ok(());
            };
            if self.buf.len() + end > self.limit {
                return Err(StreamError::TooLarge(self.limit));
            }
            self.buf.extend_from_slice(&rest[..end]);
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let mut line = std::mem::take(&mut self.buf);
            if !self.sse && line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push(String::from_utf8(line).map_err(|_| StreamError::NotUtf8)?);
        }
    }

    /// The unfinished last line, if any.
    fn take_rest(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// Its `event:` type; empty for the default (`message`).
    pub(crate) event: String,
    /// Its `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Parses a `text/event-stream` body as the HTML standard describes it:
/// `field: value` lines, events ended by a blank line, `data:` lines
/// joined, comments (`:`) and unknown fields ignored, lines ended by CR,
/// LF or CRLF, a leading byte-order mark dropped.
#[derive(Debug)]
pub(crate) struct SseParser {
    lines: Lines,
    event: String,
    data: String,
    has_data: bool,
    first_line: bool,
    scratch: Vec<String>,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_limit(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser whose lines and events may hold up to `limit` bytes.
    pub(crate) fn with_limit(limit: usize) -> Self {
        SseParser {
            lines: Lines::new(true, limit),
            event: String::new(),
            data: String::new(),
            has_data: false,
            first_line: true,
            scratch: Vec::new(),
        }
    }

    /// Adds a chunk of the body; returns the events it completes.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, StreamError> {
        let mut lines = std::mem::take(&mut self.scratch);
        self.lines.push(chunk, &mut lines)?;
        let mut events = Vec::new();
        for line in lines.drain(..) {
            self.line(&line, &mut events)?;
        }
        self.scratch = lines;
        Ok(events)
    }

    /// The body ended: an event whose lines all ended but that was not
    /// closed by a blank line is given too (servers often end so); an
    /// unfinished line is dropped, as the standard says.
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        self.lines.take_rest();
        let mut events = Vec::new();
        self.dispatch(&mut events);
        events.pop()
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) -> Result<(), StreamError> {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.lines.limit {
                    return Err(StreamError::TooLarge(self.lines.limit));
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            // `id` and `retry` are for reconnecting, which a model
            // request never does; anything else is ignored by the rules.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        if std::mem::take(&mut self.has_data) {
            let mut data = std::mem::take(&mut self.data);
            data.pop();
            events.push(SseEvent {
                event: std::mem::take(&mut self.event),
                data,
            });
        } else {
            self.event.clear();
        }
    }
}

/// Parses newline-delimited JSON: one value per line, blank lines skipped.
#[derive(Debug)]
pub(crate) struct NdjsonParser {
    lines: Lines,
}

impl Default for NdjsonParser {
    fn default() -> Self {
        NdjsonParser::with_limit(MAX_EVENT_BYTES)
    }
}

impl NdjsonParser {
    /// A parser whose lines may hold up to `limit` bytes.
    pub(crate) fn with_limit(limit: usize) -> Self {
        NdjsonParser {
            lines: Lines::new(false, limit),
        }
    }

    /// Adds a chunk of the body; returns the lines it completes, without
    /// blank ones.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, StreamError> {
        let mut lines = Vec::new();
        self.lines.push(chunk, &mut lines)?;
        lines.retain(|l| !l.trim().is_empty());
        Ok(lines)
    }

    /// The body ended: the last line, when it had no newline (it may be
    /// complete, or cut off: the caller can tell by parsing it).
    pub(crate) fn finish(&mut self) -> Option<String> {
        let rest = self.lines.take_rest()?;
        let text = String::from_utf8_lossy(&rest).into_owned();
        (!text.trim().is_empty()).then_some(text)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sse_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, StreamError> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.push(chunk)?);
        }
        events.extend(parser.finish());
        Ok(events)
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    /// Every way of cutting `body` in two and in three, and byte by byte.
    pub(crate) fn chunkings(body: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![body], body.chunks(1).collect()];
        for i in 0..=body.len() {
            all.push(vec![&body[..i], &body[i..]]);
        }
        // Three pieces: a grid of about 40 by 40 cuts, offset so that the
        // cuts fall at odd places too.
        let step = (body.len() / 40).max(1);
        for i in (0..=body.len()).step_by(step) {
            for j in (i + 1..=body.len()).step_by(step + 1) {
                all.push(vec![&body[..i], &body[i..j], &body[j..]]);
            }
        }
        all
    }

    const OPENAI_LIKE: &str = ": keep-alive comment\r\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"Gr\u{fc}\u{df} \u{1f600}\"}}]}\r\n\r\n\
        event: ping\n\
        data\n\n\
        data: line one\rdata:line two\r\r\
        id: 7\nretry: 10\nunknown: x\ndata:  two spaces\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n\
        data: [DONE]\n\n";

    fn expected_openai_like() -> Vec<SseEvent> {
        vec![
            ev("", "{\"choices\":[{\"delta\":{\"content\":\"Grüß 😀\"}}]}"),
            ev("ping", ""),
            ev("", "line one\nline two"),
            ev("", " two spaces"),
            ev("message_stop", "{\"type\":\"message_stop\"}"),
            ev("", "[DONE]"),
        ]
    }

    #[test]
    fn sse_events_come_out_whole_however_the_body_is_cut() {
        let body = OPENAI_LIKE.as_bytes();
        for chunks in chunkings(body) {
            assert_eq!(
                sse_all(&chunks).unwrap(),
                expected_openai_like(),
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn sse_edge_cases_follow_the_standard() {
        // A blank line without data dispatches nothing, and resets the type.
        assert_eq!(
            sse_all(&[b"event: a\n\ndata: x\n\n"]).unwrap(),
            [ev("", "x")]
        );
        // A byte-order mark at the very start is dropped, split or not.
        assert_eq!(
            sse_all(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]).unwrap(),
            [ev("", "x")]
        );
        // An event not closed by a blank line at the end still counts when
        // its lines ended; an unfinished line does not.
        assert_eq!(sse_all(&[b"data: [DONE]\n"]).unwrap(), [ev("", "[DONE]")]);
        assert_eq!(sse_all(&[b"data: {\"a\":"]).unwrap(), []);
        assert_eq!(
            sse_all(&[b"data: a\n\ndata: {\"cut"]).unwrap(),
            [ev("", "a")]
        );
        // CR at the end of one chunk and LF at the start of the next are
        // one line break, not two (which would end the event early).
        assert_eq!(
            sse_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]).unwrap(),
            [ev("", "a\nb")]
        );
        // A field without a colon is a field with an empty value.
        assert_eq!(sse_all(&[b"data\ndata\n\n"]).unwrap(), [ev("", "\n")]);
    }

    #[test]
    fn sse_limits_lines_and_events() {
        let mut parser = SseParser::with_limit(16);
        assert_eq!(
            parser.push(b"data: 0123456789abcdef"),
            Err(StreamError::TooLarge(16))
        );
        let mut parser = SseParser::with_limit(16);
        assert!(parser.push(b"data: 01234567\n").is_ok());
        assert_eq!(
            parser.push(b"data: 01234567\n"),
            Err(StreamError::TooLarge(16))
        );
        // Many small chunks of one endless line hit the limit too.
        let mut parser = SseParser::with_limit(16);
        let mut result = Ok(Vec::new());
        for _ in 0..20 {
            result = parser.push(b"x");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(StreamError::TooLarge(16)));
    }

    #[test]
    fn sse_lines_must_be_utf8() {
        let mut parser = SseParser::default();
        assert_eq!(
            parser.push(b"data: \xff\xfe\n\n"),
            Err(StreamError::NotUtf8)
        );
    }

    fn ndjson_all(chunks: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut parser = NdjsonParser::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            lines.extend(parser.push(chunk).unwrap());
        }
        (lines, parser.finish())
    }

    #[test]
    fn ndjson_lines_come_out_whole_however_the_body_is_cut() {
        let body = "{\"message\":{\"content\":\"h\u{e9}\"},\"done\":false}\n\n\
            {\"message\":{\"content\":\"\u{1f980}\"},\"done\":false}\r\n   \n\
            {\"done\":true}\n"
            .as_bytes();
        for chunks in chunkings(body) {
            assert_eq!(
                ndjson_all(&chunks),
                (
                    vec![
                        "{\"message\":{\"content\":\"hé\"},\"done\":false}".to_owned(),
                        "{\"message\":{\"content\":\"🦀\"},\"done\":false}".to_owned(),
                        "{\"done\":true}".to_owned(),
                    ],
                    None
                ),
                "{chunks:?}"
            );
        }
        // A last line without a newline is handed over at the end.
        assert_eq!(
            ndjson_all(&[b"{\"a\":1}\n{\"done\":", b"true}"]),
            (
                vec!["{\"a\":1}".to_owned()],
                Some("{\"done\":true}".to_owned())
            )
        );
    }

    #[test]
    fn ndjson_limits_lines() {
        let mut parser = NdjsonParser::with_limit(8);
        assert_eq!(parser.push(b"{\"a\":12345"), Err(StreamError::TooLarge(8)));
        let mut parser = NdjsonParser::with_limit(8);
        assert_eq!(parser.push(b"[1]\n[2]\n").unwrap(), ["[1]", "[2]"]);
    }
}
