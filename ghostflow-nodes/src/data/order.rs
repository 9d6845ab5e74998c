//! The family's order of JSON values, and the text that makes two equal
//! values the same key.
//!
//! Values of different kinds are ordered `null` < `false` < `true` <
//! numbers < strings < lists < objects (jq's order). Numbers compare by
//! value (`1` and `1.0` are equal), strings by Unicode code points, lists
//! item by item, objects by their sorted keys and then by the values in
//! that order.

use std::cmp::Ordering;

use serde_json::Value;

fn rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// Compares two numbers by value, exactly for integers.
pub(crate) fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

/// The family's total order of JSON values.
pub(crate) fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                match compare(p, q) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xk: Vec<&String> = x.keys().collect();
            let mut yk: Vec<&String> = y.keys().collect();
            xk.sort_unstable();
            yk.sort_unstable();
            match xk.cmp(&yk) {
                Ordering::Equal => {}
                other => return other,
            }
            for key in xk {
                match compare(&x[key.as_str()], &y[key.as_str()]) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            Ordering::Equal
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A text that is the same for equal values: objects with sorted keys,
/// integral numbers without a fraction (`1.0` is `1`).
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => {
            if n.is_f64()
                && let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                // Exact: integral and within f64's integer range.
                out.push_str(&format!("{}", f as i64));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_then_values() {
        let mut values = vec![
            json!({"b": 1}),
            json!("b"),
            json!([1, 2]),
            json!(2.5),
            json!(true),
            json!(null),
            json!("a"),
            json!(-3),
            json!(false),
            json!([1]),
            json!({"a": 9}),
            json!(18446744073709551615u64),
            json!("é"),
            json!("Z"),
        ];
        values.sort_by(compare);
        assert_eq!(
            values,
            vec![
                json!(null),
                json!(false),
                json!(true),
                json!(-3),
                json!(2.5),
                json!(18446744073709551615u64),
                json!("Z"),
                json!("a"),
                json!("b"),
                json!("é"),
                json!([1]),
                json!([1, 2]),
                json!({"a": 9}),
                json!({"b": 1}),
            ]
        );
        assert_eq!(compare(&json!(1), &json!(1.0)), Ordering::Equal);
    }

    #[test]
    fn equal_values_have_one_text() {
        assert_eq!(
            canonical(&json!({"b": [1.0, 2], "a": null})),
            canonical(&json!({"a": null, "b": [1, 2.0]}))
        );
        assert_ne!(canonical(&json!(1)), canonical(&json!("1")));
        assert_ne!(canonical(&json!(1.5)), canonical(&json!(1)));
    }
}
