//! Dates and times with jiff and its bundled time zone database:
//! [`DatetimeParse`], [`DatetimeFormat`], [`DatetimeAdd`],
//! [`DatetimeDiff`] and [`DatetimeStartOf`].
//!
//! Between these nodes a date-time travels as RFC 3339 text with its UTC
//! offset (`2024-03-10T03:30:00-04:00`, `2024-03-10T07:30:00Z`). The
//! nodes also read RFC 9557 text with a zone (`...-04:00[America/New_York]`),
//! dates (`2024-03-10`, midnight), date-times without offset (in the node's
//! `time_zone`, UTC if none) and RFC 2822 (`Sun, 10 Mar 2024 03:30:00
//! -0400`). Calendar arithmetic (`1 month`, start of day) happens in
//! `time_zone` when it is set, else in the input's own zone or offset: set
//! `time_zone` to an IANA name to have daylight saving time taken into
//! account.

use std::str::FromStr;

use ghostflow::prelude::*;
use jiff::civil::{DateTime, Weekday};
use jiff::fmt::temporal::Pieces;
use jiff::fmt::{rfc2822, strtime};
use jiff::tz::{Offset, TimeZone};
use jiff::{RoundMode, Span, Timestamp, Unit, Zoned, ZonedRound};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserializer, Serializer};
use serde_json::Value;

// ----------------------------------------------------------- config pieces

/// Serde and JSON Schema for a config value written as text and checked
/// by its `new` when it is read: `text_config!(Type, "SchemaName",
/// { schema keywords }, "description", |value| &text)`.
macro_rules! text_config {
    ($ty:ident, $name:literal, { $($schema:tt)* }, $description:literal, |$v:ident| $text:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let $v = self;
                serializer.serialize_str($text)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $ty::new(&text).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let mut schema = json_schema!({ $($schema)* });
                schema.insert("description".into(), $description.into());
                schema
            }
        }
    };
}

/// A time zone: an IANA name from the bundled database
/// (`Europe/Paris`, `America/New_York`), `UTC`, or a fixed offset
/// (`+05:30`, `-08:00`).
#[derive(Clone, Debug)]
pub struct TimeZoneName {
    name: String,
    zone: TimeZone,
}

impl PartialEq for TimeZoneName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl TimeZoneName {
    /// Looks `name` up.
    ///
    /// # Errors
    /// The zone is unknown or the offset malformed.
    pub fn new(name: &str) -> Result<Self, String> {
        let zone = if name.eq_ignore_ascii_case("utc") || name == "Z" {
            TimeZone::UTC
        } else if let Some(sign) = name.strip_prefix(['+', '-']).map(|_| &name[..1]) {
            let rest = &name[1..];
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let parse = |s: &str| {
                s.parse::<i32>()
                    .ok()
                    .filter(|_| !s.is_empty() && s.len() <= 2)
            };
            let (Some(h @ 0..=18), Some(m @ 0..=59)) = (parse(h), parse(m)) else {
                return Err(format!("`{name}` is not an offset; write it like `+05:30`"));
            };
            let seconds = (h * 3600 + m * 60) * if sign == "-" { -1 } else { 1 };
            let offset = Offset::from_seconds(seconds)
                .map_err(|e| format!("`{name}` is not an offset: {e}"))?;
            TimeZone::fixed(offset)
        } else {
            jiff::tz::db().get(name).map_err(|_| {
                format!("`{name}` is not a known time zone (use an IANA name such as `Europe/Paris`, `UTC`, or an offset such as `+02:00`)")
            })?
        };
        Ok(TimeZoneName {
            name: name.to_owned(),
            zone,
        })
    }
}

text_config!(
    TimeZoneName,
    "TimeZoneName",
    { "type": "string" },
    "An IANA time zone (`Europe/Paris`), `UTC`, or an offset (`+05:30`).",
    |zone| &zone.name
);

/// A strftime pattern (`%Y-%m-%d %H:%M`, `%A %e %B`), checked when the
/// config is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern(String);

impl Pattern {
    /// Checks `pattern` by formatting a sample date-time with it.
    ///
    /// # Errors
    /// jiff's message for the first bad directive.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("a strftime pattern cannot be empty".into());
        }
        let sample = sample();
        strtime::format(pattern, &sample)
            .map_err(|e| format!("`{pattern}` is not a strftime pattern: {e}"))?;
        Ok(Pattern(pattern.to_owned()))
    }
}

fn sample() -> Zoned {
    Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC)
}

text_config!(
    Pattern,
    "StrftimePattern",
    { "type": "string", "minLength": 1 },
    "A strftime pattern, such as `%Y-%m-%d %H:%M:%S %:z`.",
    |pattern| &pattern.0
);

/// A span of time: `1 month 2 days`, `3h 30m`, `-2 weeks`, `90 minutes
/// ago`, or ISO 8601 (`P1M2D`, `PT90M`).
#[derive(Clone, Debug)]
pub struct SpanText {
    text: String,
    span: Span,
}

impl PartialEq for SpanText {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl SpanText {
    /// Parses `text`.
    ///
    /// # Errors
    /// What jiff says is wrong.
    pub fn new(text: &str) -> Result<Self, String> {
        let span = Span::from_str(text.trim()).map_err(|e| {
            format!(
                "`{text}` is not a span (write it like `1 month 2 days`, `-3h` or `P1M2D`): {e}"
            )
        })?;
        Ok(SpanText {
            text: text.to_owned(),
            span,
        })
    }
}

text_config!(
    SpanText,
    "Span",
    { "type": "string", "minLength": 1 },
    "A span: `1 month 2 days`, `-3h`, `90 minutes ago`, or ISO 8601 `P1M2D`.",
    |span| &span.text
);

// ------------------------------------------------------ reading and writing

/// The date-time in `text`, in `zone` when given.
fn read(text: &str, zone: Option<&TimeZone>) -> Result<Zoned, String> {
    let text = text.trim();
    let in_zone = |z: Zoned| match zone {
        Some(tz) => z.with_time_zone(tz.clone()),
        None => z,
    };
    if text.contains('[') {
        return Zoned::from_str(text)
            .map(in_zone)
            .map_err(|e| format!("`{text}` is not a date-time: {e}"));
    }
    if let Ok(pieces) = Pieces::parse(text) {
        let time = pieces.time().unwrap_or_default();
        let datetime = DateTime::from_parts(pieces.date(), time);
        return match pieces.offset() {
            Some(offset) => {
                let offset = offset.to_numeric_offset();
                let instant = offset
                    .to_timestamp(datetime)
                    .map_err(|e| format!("`{text}` is out of range: {e}"))?;
                Ok(match zone {
                    Some(tz) => instant.to_zoned(tz.clone()),
                    None => instant.to_zoned(TimeZone::fixed(offset)),
                })
            }
            None => zone
                .cloned()
                .unwrap_or(TimeZone::UTC)
                .to_zoned(datetime)
                .map_err(|e| format!("`{text}` is out of range: {e}")),
        };
    }
    if let Ok(z) = rfc2822::parse(text) {
        return Ok(in_zone(z));
    }
    Err(format!(
        "`{text}` is not a date-time (write it like `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`, `2024-05-01`, or in RFC 2822)"
    ))
}

/// A date-time from an input port.
fn read_input(port: &str, value: &Value, zone: Option<&TimeZone>) -> Result<Zoned, NodeError> {
    match value {
        Value::String(text) => {
            read(text, zone).map_err(|e| NodeError::permanent(format!("input `{port}`: {e}")))
        }
        Value::Number(_) => Err(NodeError::permanent(format!(
            "input `{port}`: a number is not a date-time here; read unix times with `datetime_parse` (`format: unix_seconds` or `unix_milliseconds`)"
        ))),
        other => Err(NodeError::permanent(format!(
            "input `{port}`: expected a date-time as text, got {}",
            crate::kind(other)
        ))),
    }
}

/// RFC 3339 text with the offset (`Z` for UTC).
fn rfc3339(z: &Zoned) -> String {
    if z.offset() == Offset::UTC {
        z.timestamp().to_string()
    } else {
        z.timestamp().display_with_offset(z.offset()).to_string()
    }
}

fn zone_of(config: &Option<TimeZoneName>) -> Option<&TimeZone> {
    config.as_ref().map(|z| &z.zone)
}

// ------------------------------------------------------------------- parse

/// How [`DatetimeParse`] reads its input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParseFormat {
    /// RFC 3339 / ISO 8601 (with or without offset, or a date), RFC 9557
    /// with a zone, RFC 2822; a number as unix seconds.
    #[default]
    Auto,
    /// RFC 3339 / ISO 8601 only.
    Rfc3339,
    /// RFC 2822 only (`Tue, 1 Jul 2003 10:52:37 +0200`).
    Rfc2822,
    /// Seconds since 1970-01-01T00:00:00Z (a number or numeric text;
    /// fractions allowed).
    UnixSeconds,
    /// Milliseconds since 1970-01-01T00:00:00Z.
    UnixMilliseconds,
    /// A strftime pattern (`{ strftime: "%d/%m/%Y %H:%M" }`); without
    /// `%z` or `%Q` in it, the time is in `time_zone`.
    Strftime(Pattern),
}

/// The input of a [`DatetimeParse`].
#[derive(Ports, Debug)]
pub struct DatetimeParseIn {
    /// The text (or number) to read.
    pub value: Value,
}

/// A parsed date-time.
#[derive(Ports, Debug)]
pub struct DatetimeParseOut {
    /// The date-time as RFC 3339 text with its offset.
    pub value: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub unix_milliseconds: i64,
}

/// Reads a date-time from text or a number: RFC 3339, RFC 2822, unix
/// seconds or milliseconds, or a strftime pattern.
///
/// The output is RFC 3339 text with the UTC offset of `time_zone` (or of
/// the input when none is set, UTC for unix times), and the same instant in
/// unix milliseconds. A date-time written without offset is read in
/// `time_zone` (UTC if none); a time that does not exist there (in a
/// daylight saving gap) moves forward.
///
/// ```yaml
/// - id: ordered_at
///   type: datetime_parse
///   config:
///     format: { strftime: "%d/%m/%Y %H:%M" }
///     time_zone: Europe/Paris
/// ```
#[derive(Node, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[node(input = DatetimeParseIn, output = DatetimeParseOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct DatetimeParse {
    /// How to read the input: `auto`, `rfc3339`, `rfc2822`, `unix_seconds`,
    /// `unix_milliseconds` or `{ strftime: <pattern> }`.
    #[serde(default)]
    pub format: ParseFormat,
    /// The time zone of inputs without an offset and of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneName>,
}

/// An instant from unix seconds or milliseconds.
fn unix(value: &Value, scale: i128, what: &str) -> Result<Timestamp, String> {
    let nanos_per = 1_000_000_000 / scale;
    let nanos = match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(i128::from(i) * nanos_per),
            None => n.as_f64().map(|f| (f * nanos_per as f64).round() as i128),
        },
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => Some(i128::from(i) * nanos_per),
            Err(_) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| (f * nanos_per as f64).round() as i128),
        },
        _ => None,
    };
    let nanos =
        nanos.ok_or_else(|| format!("expected {what} as a number, got {}", describe(value)))?;
    Timestamp::from_nanosecond(nanos).map_err(|e| format!("{what} out of range: {e}"))
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => crate::kind(other).to_owned(),
    }
}

impl Run for DatetimeParse {
    async fn run(
        &self,
        input: DatetimeParseIn,
        _ctx: &Context,
    ) -> Result<DatetimeParseOut, NodeError> {
        let zone = zone_of(&self.time_zone);
        let utc_or_zone = |ts: Timestamp| ts.to_zoned(zone.cloned().unwrap_or(TimeZone::UTC));
        let text = || match &input.value {
            Value::String(s) => Ok(s.as_str()),
            other => Err(format!("expected text, got {}", crate::kind(other))),
        };
        let zoned = match &self.format {
            ParseFormat::Auto => match &input.value {
                Value::Number(_) => unix(&input.value, 1, "unix seconds").map(utc_or_zone),
                _ => text().and_then(|t| read(t, zone)),
            },
            ParseFormat::Rfc3339 => text().and_then(|t| {
                if rfc2822::parse(t).is_ok() && Pieces::parse(t.trim()).is_err() {
                    return Err(format!("`{t}` is RFC 2822, not RFC 3339"));
                }
                read(t, zone)
            }),
            ParseFormat::Rfc2822 => text().and_then(|t| {
                rfc2822::parse(t.trim())
                    .map(|z| match zone {
                        Some(tz) => z.with_time_zone(tz.clone()),
                        None => z,
                    })
                    .map_err(|e| format!("`{t}` is not RFC 2822: {e}"))
            }),
            ParseFormat::UnixSeconds => unix(&input.value, 1, "unix seconds").map(utc_or_zone),
            ParseFormat::UnixMilliseconds => {
                unix(&input.value, 1000, "unix milliseconds").map(utc_or_zone)
            }
            ParseFormat::Strftime(pattern) => text().and_then(|t| {
                let bad = |e: jiff::Error| format!("`{t}` does not match `{}`: {e}", pattern.0);
                let tm = strtime::parse(&pattern.0, t).map_err(bad)?;
                if tm.offset().is_some()
                    || tm.iana_time_zone().is_some()
                    || tm.timestamp().is_some()
                {
                    let z = tm.to_zoned().map_err(bad)?;
                    return Ok(match zone {
                        Some(tz) => z.with_time_zone(tz.clone()),
                        None => z,
                    });
                }
                let datetime = match tm.to_datetime() {
                    Ok(dt) => dt,
                    Err(_) => tm.to_date().map_err(bad)?.at(0, 0, 0, 0),
                };
                zone.cloned()
                    .unwrap_or(TimeZone::UTC)
                    .to_zoned(datetime)
                    .map_err(bad)
            }),
        }
        .map_err(|e| NodeError::permanent(format!("input `value`: {e}")))?;
        Ok(DatetimeParseOut {
            value: rfc3339(&zoned),
            unix_milliseconds: zoned.timestamp().as_millisecond(),
        })
    }
}

// ------------------------------------------------------------------ format

/// How [`DatetimeFormat`] writes a date-time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisplayFormat {
    /// RFC 3339 with the offset (`2024-05-01T14:00:00+02:00`).
    Rfc3339,
    /// RFC 2822 (`Wed, 1 May 2024 14:00:00 +0200`).
    Rfc2822,
    /// Seconds since the Unix epoch, a number.
    UnixSeconds,
    /// Milliseconds since the Unix epoch, a number.
    UnixMilliseconds,
    /// A strftime pattern: `{ strftime: "%A %e %B %Y, %H:%M" }`.
    Strftime(Pattern),
}

/// A date-time input.
#[derive(Ports, Debug)]
pub struct DatetimeIn {
    /// The date-time (RFC 3339 text, a date, RFC 9557 or RFC 2822).
    pub value: Value,
}

/// A written date-time.
#[derive(Ports, Debug)]
pub struct FormattedOut {
    /// The text (a number for the unix formats).
    pub value: Value,
}

/// Writes a date-time as text (RFC 3339, RFC 2822 or a strftime pattern)
/// or as a unix time, in a chosen time zone.
///
/// Without `time_zone` the date-time is written in its own offset. The
/// strftime pattern is checked when the flow loads; `%Z` writes the zone's
/// abbreviation and `%Q` its IANA name.
///
/// ```yaml
/// - id: pretty_date
///   type: datetime_format
///   config:
///     format: { strftime: "%A %-d %B %Y at %H:%M %Z" }
///     time_zone: America/New_York
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = DatetimeIn, output = FormattedOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct DatetimeFormat {
    /// `rfc3339`, `rfc2822`, `unix_seconds`, `unix_milliseconds` or
    /// `{ strftime: <pattern> }`.
    pub format: DisplayFormat,
    /// The time zone to write the date-time in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneName>,
}

impl Run for DatetimeFormat {
    async fn run(&self, input: DatetimeIn, _ctx: &Context) -> Result<FormattedOut, NodeError> {
        let zoned = read_input("value", &input.value, zone_of(&self.time_zone))?;
        let failed = |e: jiff::Error| {
            NodeError::permanent(format!("cannot write `{}`: {e}", rfc3339(&zoned)))
        };
        let value = match &self.format {
            DisplayFormat::Rfc3339 => Value::String(rfc3339(&zoned)),
            DisplayFormat::Rfc2822 => Value::String(rfc2822::to_string(&zoned).map_err(failed)?),
            DisplayFormat::UnixSeconds => Value::from(zoned.timestamp().as_second()),
            DisplayFormat::UnixMilliseconds => Value::from(zoned.timestamp().as_millisecond()),
            DisplayFormat::Strftime(pattern) => {
                Value::String(strtime::format(&pattern.0, &zoned).map_err(failed)?)
            }
        };
        Ok(FormattedOut { value })
    }
}

// --------------------------------------------------------------------- add

/// A date-time output.
#[derive(Ports, Debug)]
pub struct DatetimeOut {
    /// The date-time as RFC 3339 text with its offset.
    pub value: String,
}

/// Adds (or subtracts) a calendar-aware span to a date-time, such as
/// `1 month 2 days` or `-90 minutes`, in a time zone.
///
/// Calendar units follow the calendar: one month after January 31 is the
/// last day of February, and in a zone with daylight saving time one day
/// after noon is noon the next day even across the change (23 or 25 hours
/// later), while `24h` is always 24 hours. The arithmetic happens in
/// `time_zone` (else the input's own zone or offset).
///
/// ```yaml
/// - id: due_date
///   type: datetime_add
///   config:
///     span: 1 month 2 days
///     time_zone: Europe/Berlin
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = DatetimeIn, output = DatetimeOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct DatetimeAdd {
    /// The span: `1 month 2 days`, `3h 30m`, `-2 weeks`, `P1M2D`.
    pub span: SpanText,
    /// Whether to subtract the span instead.
    #[serde(default)]
    pub subtract: bool,
    /// The time zone the calendar arithmetic happens in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneName>,
}

impl Run for DatetimeAdd {
    async fn run(&self, input: DatetimeIn, _ctx: &Context) -> Result<DatetimeOut, NodeError> {
        let zoned = read_input("value", &input.value, zone_of(&self.time_zone))?;
        let result = if self.subtract {
            zoned.checked_sub(self.span.span)
        } else {
            zoned.checked_add(self.span.span)
        }
        .map_err(|e| {
            NodeError::permanent(format!(
                "{} {} `{}`: {e}",
                rfc3339(&zoned),
                if self.subtract { "-" } else { "+" },
                self.span.text
            ))
        })?;
        Ok(DatetimeOut {
            value: rfc3339(&result),
        })
    }
}

// -------------------------------------------------------------------- diff

/// A unit of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Calendar years.
    Years,
    /// Calendar months.
    Months,
    /// Weeks of seven calendar days.
    Weeks,
    /// Calendar days (23 or 25 hours across a daylight saving change).
    Days,
    /// Hours.
    Hours,
    /// Minutes.
    Minutes,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Milliseconds,
}

impl TimeUnit {
    fn jiff(self) -> Unit {
        match self {
            TimeUnit::Years => Unit::Year,
            TimeUnit::Months => Unit::Month,
            TimeUnit::Weeks => Unit::Week,
            TimeUnit::Days => Unit::Day,
            TimeUnit::Hours => Unit::Hour,
            TimeUnit::Minutes => Unit::Minute,
            TimeUnit::Seconds => Unit::Second,
            TimeUnit::Milliseconds => Unit::Millisecond,
        }
    }
}

/// Two date-times.
#[derive(Ports, Debug)]
pub struct DatetimeDiffIn {
    /// The earlier date-time (the result is negative when it is later).
    pub start: Value,
    /// The later date-time.
    pub end: Value,
}

/// A difference.
#[derive(Ports, Debug)]
pub struct DiffOut {
    /// `end - start` in the unit (fractional unless `whole`).
    pub value: Value,
}

/// Measures the time from one date-time to another in a unit, from years
/// to milliseconds, counting calendar units in a time zone.
///
/// The result is `end - start` in `unit`, with a fraction (1.5 days)
/// unless `whole` is set (then truncated toward zero). Years, months,
/// weeks and days are counted on the calendar of `time_zone` (else of
/// `start`'s zone or offset): from January 31 to February 29, 2024 is one
/// month (the month after January 31 ends on February 29), to February 28
/// is 28/29 of a month, and a day across a daylight saving change is one day.
///
/// ```yaml
/// - id: age_in_days
///   type: datetime_diff
///   config: { unit: days, whole: true, time_zone: Europe/Paris }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = DatetimeDiffIn, output = DiffOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct DatetimeDiff {
    /// `years`, `months`, `weeks`, `days`, `hours`, `minutes`, `seconds` or
    /// `milliseconds`.
    pub unit: TimeUnit,
    /// Whether to truncate to a whole number.
    #[serde(default)]
    pub whole: bool,
    /// The time zone whose calendar counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneName>,
}

impl Run for DatetimeDiff {
    async fn run(&self, input: DatetimeDiffIn, _ctx: &Context) -> Result<DiffOut, NodeError> {
        let zone = zone_of(&self.time_zone);
        let start = read_input("start", &input.start, zone)?;
        let end = read_input("end", &input.end, zone)?.with_time_zone(start.time_zone().clone());
        let unit = self.unit.jiff();
        let failed = |e: jiff::Error| {
            NodeError::permanent(format!(
                "cannot measure from {} to {}: {e}",
                rfc3339(&start),
                rfc3339(&end)
            ))
        };
        let span = start.until((unit, &end)).map_err(failed)?;
        let total = span.total((unit, &start)).map_err(failed)?;
        let value = if self.whole {
            Value::from(total.trunc() as i64)
        } else {
            serde_json::Number::from_f64(total).map_or(Value::Null, Value::Number)
        };
        Ok(DiffOut { value })
    }
}

// ---------------------------------------------------------------- start of

/// What [`DatetimeStartOf`] rounds down to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartUnit {
    /// January 1.
    Year,
    /// The first of the month.
    Month,
    /// The first day of the week (`week_starts_on`).
    Week,
    /// Midnight (or the first time of the day where midnight does not
    /// exist).
    Day,
    /// The start of the hour.
    Hour,
    /// The start of the minute.
    Minute,
}

/// A day of the week.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[expect(missing_docs, reason = "the names say it")]
pub enum DayOfWeek {
    #[default]
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl DayOfWeek {
    fn jiff(self) -> Weekday {
        match self {
            DayOfWeek::Monday => Weekday::Monday,
            DayOfWeek::Tuesday => Weekday::Tuesday,
            DayOfWeek::Wednesday => Weekday::Wednesday,
            DayOfWeek::Thursday => Weekday::Thursday,
            DayOfWeek::Friday => Weekday::Friday,
            DayOfWeek::Saturday => Weekday::Saturday,
            DayOfWeek::Sunday => Weekday::Sunday,
        }
    }
}

/// Rounds a date-time down to the start of its year, month, week, day,
/// hour or minute in a time zone.
///
/// The start of a day is its first instant in `time_zone` (else the
/// input's zone or offset): midnight, or the first time that exists when a
/// daylight saving change skips midnight. Weeks start on `week_starts_on`
/// (Monday by default).
///
/// ```yaml
/// - id: week_start
///   type: datetime_start_of
///   config: { unit: week, week_starts_on: sunday, time_zone: America/Chicago }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = DatetimeIn, output = DatetimeOut, category = "data")]
#[serde(deny_unknown_fields)]
pub struct DatetimeStartOf {
    /// `year`, `month`, `week`, `day`, `hour` or `minute`.
    pub unit: StartUnit,
    /// The first day of a week.
    #[serde(default)]
    pub week_starts_on: DayOfWeek,
    /// The time zone whose calendar counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<TimeZoneName>,
}

impl Run for DatetimeStartOf {
    async fn run(&self, input: DatetimeIn, _ctx: &Context) -> Result<DatetimeOut, NodeError> {
        let zoned = read_input("value", &input.value, zone_of(&self.time_zone))?;
        let failed = |e: jiff::Error| {
            NodeError::permanent(format!("cannot find the start of {}: {e}", rfc3339(&zoned)))
        };
        let truncate =
            |unit: Unit| zoned.round(ZonedRound::new().smallest(unit).mode(RoundMode::Trunc));
        let start = match self.unit {
            StartUnit::Year => zoned.first_of_year().and_then(|z| z.start_of_day()),
            StartUnit::Month => zoned.first_of_month().and_then(|z| z.start_of_day()),
            StartUnit::Week => {
                let back = zoned.weekday().since(self.week_starts_on.jiff());
                zoned
                    .checked_sub(Span::new().days(i64::from(back)))
                    .and_then(|z| z.start_of_day())
            }
            StartUnit::Day => zoned.start_of_day(),
            StartUnit::Hour => truncate(Unit::Hour),
            StartUnit::Minute => truncate(Unit::Minute),
        }
        .map_err(failed)?;
        Ok(DatetimeOut {
            value: rfc3339(&start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_forms() {
        let ny = TimeZoneName::new("America/New_York").unwrap();
        for (text, zone, expected) in [
            (
                "2024-03-10T01:30:00-05:00",
                None,
                "2024-03-10T01:30:00-05:00",
            ),
            (
                "2024-03-10T06:30:00Z",
                Some(&ny.zone),
                "2024-03-10T01:30:00-05:00",
            ),
            ("2024-03-10", None, "2024-03-10T00:00:00Z"),
            (
                "2024-03-10 12:00",
                Some(&ny.zone),
                "2024-03-10T12:00:00-04:00",
            ),
            (
                "2024-03-10T02:30:00",
                Some(&ny.zone),
                "2024-03-10T03:30:00-04:00",
            ),
            (
                "Sun, 10 Mar 2024 03:30:00 -0400",
                None,
                "2024-03-10T03:30:00-04:00",
            ),
            (
                "2024-03-10T03:30:00-04:00[America/New_York]",
                None,
                "2024-03-10T03:30:00-04:00",
            ),
        ] {
            assert_eq!(rfc3339(&read(text, zone).unwrap()), expected, "{text}");
        }
        assert!(
            read("yesterday", None)
                .unwrap_err()
                .contains("is not a date-time")
        );
        assert!(
            TimeZoneName::new("Mars/Olympus")
                .unwrap_err()
                .contains("not a known time zone")
        );
        assert!(TimeZoneName::new("+25:00").is_err());
        assert_eq!(
            rfc3339(
                &read(
                    "2024-01-01T00:00:00Z",
                    Some(&TimeZoneName::new("+05:30").unwrap().zone)
                )
                .unwrap()
            ),
            "2024-01-01T05:30:00+05:30"
        );
        assert!(Pattern::new("%Y-%m-%d %Q").is_ok());
        assert!(
            Pattern::new("%Y %!")
                .unwrap_err()
                .contains("is not a strftime pattern")
        );
        assert!(SpanText::new("1 month 2 days").is_ok());
        assert!(SpanText::new("P1M2D").is_ok());
        assert!(SpanText::new("soon").unwrap_err().contains("is not a span"));
    }
}
