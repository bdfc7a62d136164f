//! Log lines (env_logger, filtered by `RUST_LOG`) in one of two formats
//! (`LOG_FORMAT`), both naming the request a line was written for:
//!
//! - `text` (the default), env_logger's own format with `request_id=ID`
//!   before the message when the line belongs to a request:
//!   `[2026-05-04T10:15:02Z INFO  audit] request_id=5b0c… {"id":…}`
//! - `json`, one object per line: `time` (RFC 3339, UTC), `level`,
//!   `target`, `request_id` (when known) and `message`; an audit line
//!   (target `audit`) also carries its event as the object `event`.
//!
//! The id comes from the request's task-local scope (see
//! [`super::request_id`]); the access log line is written by actix's
//! `Logger` after the answer has left that scope, so its format starts with
//! `request_id=%{X-Request-Id}o`, which the JSON format turns into the
//! field.

use std::borrow::Cow;
use std::io::{self, Write};

use actix_web::middleware::Logger;
use chrono::{DateTime, SecondsFormat, Utc};
use env_logger::fmt::{ConfigurableFormat, Formatter};
use log::Record;
use serde::Serialize;

use super::request_id::{self, RequestId};
use crate::config::LogFormat;
use crate::services::audit::LOG_TARGET as AUDIT_TARGET;

/// The target of actix's access log lines (its default).
pub const ACCESS_TARGET: &str = "actix_web::middleware::logger";

/// The access log line: request id, peer, request line, status, body
/// bytes, time taken. No headers, no bodies (they carry tokens and
/// passwords).
pub const ACCESS_LOG_FORMAT: &str = r#"request_id=%{X-Request-Id}o %a "%r" %s %b %Dms"#;

/// The access-log middleware (outermost: it times the whole answer).
pub fn access_log() -> Logger {
    Logger::new(ACCESS_LOG_FORMAT)
}

/// Whether the filter passes access-log lines. actix's `Logger` renders
/// its format for every request before the filter is asked, so where the
/// lines would be dropped (`RUST_LOG=warn`, say) the middleware is left
/// out instead. The filter is read once, at start, like every setting.
pub fn access_log_enabled() -> bool {
    log::log_enabled!(target: ACCESS_TARGET, log::Level::Info)
}

/// Installs the process's logger: the filter from `RUST_LOG` (default
/// `info`), the lines in `format`. In JSON mode a panic is logged as one
/// line too (target `panic`, with the request id when a handler panicked)
/// instead of the default hook's free text.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Text => {
            let text = ConfigurableFormat::default();
            builder.format(move |buf, record| write_text(&text, buf, record));
        }
        LogFormat::Json => {
            builder.format(|buf, record| {
                let id = request_id::current();
                write_json(buf, Utc::now(), record, id.as_ref())
            });
            std::panic::set_hook(Box::new(|info| {
                let backtrace = std::backtrace::Backtrace::capture();
                match backtrace.status() {
                    std::backtrace::BacktraceStatus::Captured => {
                        log::error!(target: "panic", "{info}\n{backtrace}")
                    }
                    _ => log::error!(target: "panic", "{info}"),
                }
            }));
        }
    }
    builder.init();
}

/// env_logger's default format, with the request id before the message.
fn write_text(format: &ConfigurableFormat, buf: &mut Formatter, record: &Record) -> io::Result<()> {
    // The access line names its request itself (see ACCESS_LOG_FORMAT).
    let id = (record.target() != ACCESS_TARGET)
        .then(request_id::current)
        .flatten();
    match id {
        Some(id) => format.format(
            buf,
            &Record::builder()
                .args(format_args!("request_id={id} {}", record.args()))
                .level(record.level())
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        ),
        None => format.format(buf, record),
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    level: &'static str,
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    message: Cow<'a, str>,
    /// An audit line's event, as an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One JSON object and a newline. `current`: the id of the request the
/// line is written for, if any.
fn write_json(
    out: &mut impl Write,
    now: DateTime<Utc>,
    record: &Record,
    current: Option<&RequestId>,
) -> io::Result<()> {
    let formatted;
    let mut message: &str = match record.args().as_str() {
        Some(literal) => literal,
        None => {
            formatted = record.args().to_string();
            &formatted
        }
    };
    let mut request_id = current.map(RequestId::as_str);
    if record.target() == ACCESS_TARGET {
        if let Some((id, rest)) = message
            .strip_prefix("request_id=")
            .and_then(|m| m.split_once(' '))
        {
            // `-`: the answer had no id (it did not pass the middleware).
            if id != "-" && RequestId::parse(id.as_bytes()).is_some() {
                request_id = Some(id);
            }
            message = rest;
        }
    }
    let mut line = JsonLine {
        time: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        level: record.level().as_str(),
        target: record.target(),
        request_id,
        message: Cow::Borrowed(message),
        event: None,
    };
    if record.target() == AUDIT_TARGET {
        // The audit line's message is its event as JSON (see `Audit::log`).
        if let Ok(event) = serde_json::from_str::<serde_json::Map<_, _>>(message) {
            let field = |name: &str| event.get(name).and_then(|v| v.as_str()).unwrap_or("?");
            line.message = Cow::Owned(format!("{} {}", field("type"), field("outcome")));
            line.event = Some(event);
        }
    }
    let mut bytes = serde_json::to_vec(&line).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json_of(target: &str, args: std::fmt::Arguments, current: Option<&RequestId>) -> Value {
        let mut out = Vec::new();
        let record = Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target(target)
            .build();
        write_json(&mut out, Utc::now(), &record, current).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with('\n') && !text.trim_end().contains('\n'),
            "{text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_plain_line_has_the_fields_and_no_id() {
        let line = json_of(
            "passkey_auth::startup",
            format_args!("a\n\"b\" {}", 1),
            None,
        );
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "passkey_auth::startup");
        assert_eq!(line["message"], "a\n\"b\" 1");
        assert!(line.get("request_id").is_none() && line.get("event").is_none());
        let time = line["time"].as_str().unwrap();
        assert!(time.ends_with('Z'), "{time}");
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn the_current_request_names_the_line() {
        let id = RequestId::parse(b"abc-1").unwrap();
        let line = json_of("passkey_auth::errors", format_args!("boom"), Some(&id));
        assert_eq!(line["request_id"], "abc-1");
    }

    #[test]
    fn the_access_line_gives_its_own_id() {
        let line = json_of(
            ACCESS_TARGET,
            format_args!(r#"request_id=abc-2 127.0.0.1 "GET / HTTP/1.1" 200 5 0.1ms"#),
            None,
        );
        assert_eq!(line["request_id"], "abc-2");
        assert_eq!(line["message"], r#"127.0.0.1 "GET / HTTP/1.1" 200 5 0.1ms"#);
        let line = json_of(ACCESS_TARGET, format_args!("request_id=- x 500"), None);
        assert!(line.get("request_id").is_none());
        assert_eq!(line["message"], "x 500");
    }

    #[test]
    fn an_audit_line_embeds_its_event() {
        let id = RequestId::parse(b"abc-3").unwrap();
        let line = json_of(
            AUDIT_TARGET,
            format_args!(r#"{{"type":"signup","outcome":"success","userAgent":"x\"y"}}"#),
            Some(&id),
        );
        assert_eq!(line["message"], "signup success");
        assert_eq!(line["request_id"], "abc-3");
        assert_eq!(line["event"]["type"], "signup");
        assert_eq!(line["event"]["userAgent"], "x\"y");
        let odd = json_of(AUDIT_TARGET, format_args!("unprintable event 7"), None);
        assert_eq!(odd["message"], "unprintable event 7");
        assert!(odd.get("event").is_none());
    }
}
