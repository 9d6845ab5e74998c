//! Ids in each protocol's style, and the clock readings responses carry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

/// Makes ids that look like the real ones, unique per peer: a counter run
/// through a mixing function, so consecutive ids differ everywhere.
#[derive(Debug)]
pub(crate) struct Ids {
    next: AtomicU64,
    seed: u64,
}

impl Ids {
    pub(crate) fn new() -> Ids {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ids {
            next: AtomicU64::new(1),
            seed,
        }
    }

    fn chars(&self, alphabet: &[u8], len: usize) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut state = mix(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut out = String::with_capacity(len);
        for _ in 0..len {
            state = mix(state);
            out.push(char::from(
                alphabet[(state % alphabet.len() as u64) as usize],
            ));
        }
        out
    }

    /// `chatcmpl-` and 29 characters.
    pub(crate) fn openai_completion(&self) -> String {
        format!("chatcmpl-{}", self.chars(BASE62, 29))
    }

    /// `call_` and 24 characters.
    pub(crate) fn openai_call(&self) -> String {
        format!("call_{}", self.chars(BASE62, 24))
    }

    /// `fp_` and 10 hex digits.
    pub(crate) fn fingerprint(&self) -> String {
        format!("fp_{}", self.chars(HEX, 10))
    }

    /// `req_` and 32 hex digits (OpenAI's `x-request-id`).
    pub(crate) fn openai_request(&self) -> String {
        format!("req_{}", self.chars(HEX, 32))
    }

    /// `msg_01` and 22 characters.
    pub(crate) fn anthropic_message(&self) -> String {
        format!("msg_01{}", self.chars(BASE62, 22))
    }

    /// `toolu_01` and 22 characters.
    pub(crate) fn anthropic_tool(&self) -> String {
        format!("toolu_01{}", self.chars(BASE62, 22))
    }

    /// `req_011C` and 20 characters (Anthropic's `request-id`).
    pub(crate) fn anthropic_request(&self) -> String {
        format!("req_011C{}", self.chars(BASE62, 20))
    }

    /// `call_` and 8 lowercase letters or digits (Ollama's tool calls).
    pub(crate) fn ollama_call(&self) -> String {
        format!("call_{}", self.chars(LOWER, 8))
    }
}

/// A 64-bit finaliser: every input bit affects every output bit.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current time as Go's RFC 3339 with nanoseconds in UTC, as Ollama
/// writes `created_at`: `2023-08-04T19:22:45.499127Z` (trailing zeros of
/// the fraction dropped).
pub(crate) fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

pub(crate) fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_691_176_965, 499_127_000),
            "2023-08-04T19:22:45.499127Z"
        );
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
    }

    #[test]
    fn ids_have_the_real_shapes() {
        let ids = Ids::new();
        let a = ids.openai_completion();
        let b = ids.openai_completion();
        assert_ne!(a, b);
        assert_eq!(a.len(), "chatcmpl-".len() + 29);
        assert!(ids.anthropic_message().starts_with("msg_01"));
        assert_eq!(ids.ollama_call().len(), 13);
    }
}
