//! `POST /api/process/{id}/output` and `POST /api/process/{id}/status`: process streaming for backends that are
//! not written in Rust (a Rust backend calls `Hub::send_process_output` and `Hub::send_process_status`).

use http::StatusCode;
use serde::Deserialize;
use ws_core::{Clock as _, ProcessError, ProcessEvent, ProcessState, ProcessStatus, ProcessStream};
use ws_transport::SystemClock;

use super::{broker_error, decode_segment, parse, wait, Api, ApiResponse};

/// `{"line": "...", "stream": "stdout"}`; the stream defaults to `stdout`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputBody {
    line: String,
    #[serde(default)]
    stream: Option<String>,
}

/// `{"state": "exited", "code": 0, "reason": "..."}`; the server adds `at_ms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    state: String,
    #[serde(default)]
    code: Option<i32>,
    #[serde(default)]
    reason: Option<String>,
}

impl Api {
    /// Handles `POST /api/process/{rest}`, where `rest` is `{id}/output` or `{id}/status` (the id percent-encoded:
    /// `%23` for a `#`). Answers `{"offset": n}`, and for a status also the `at_ms` it stamped.
    pub(super) async fn process(&self, rest: &str, body: &[u8]) -> ApiResponse {
        let Some((id, action)) = rest.rsplit_once('/') else {
            return not_found(rest);
        };
        let id = decode_segment(id);
        let made = match action {
            "output" => output(&id, body).map(|event| (event, None)),
            "status" => status(&id, body).map(|(event, at_ms)| (event, Some(at_ms))),
            _ => return not_found(rest),
        };
        let (event, at_ms) = match made {
            Ok(made) => made,
            Err(response) => return response,
        };
        match wait(|done| self.hub.publish_process(event, done)).await {
            Ok(offset) => match at_ms {
                None => ApiResponse::ok(&serde_json::json!({ "offset": offset })),
                Some(at_ms) => ApiResponse::ok(&serde_json::json!({ "offset": offset, "at_ms": at_ms })),
            },
            Err(e) => broker_error(&e),
        }
    }
}

fn output(id: &str, body: &[u8]) -> Result<ProcessEvent, ApiResponse> {
    let body: OutputBody = parse(body)?;
    let stream = match body.stream.as_deref() {
        None => ProcessStream::Stdout,
        Some(name) => name.parse().map_err(|e| invalid(&e))?,
    };
    ProcessEvent::output(id, stream, &body.line).map_err(|e| invalid(&e))
}

/// The event and the time it carries: the server's wall clock, now.
fn status(id: &str, body: &[u8]) -> Result<(ProcessEvent, u64), ApiResponse> {
    let body: StatusBody = parse(body)?;
    let state: ProcessState = body.state.parse().map_err(|e| invalid(&e))?;
    let at_ms = SystemClock.now_ms();
    let mut status = ProcessStatus::new(state, at_ms);
    status.code = body.code;
    status.reason = body.reason;
    Ok((ProcessEvent::status(id, &status).map_err(|e| invalid(&e))?, at_ms))
}

/// A 400 that names the field at fault (the id is part of the path, and its error says so).
fn invalid(e: &ProcessError) -> ApiResponse {
    let field = match e {
        ProcessError::LineTooLong { .. } => "line",
        ProcessError::ReasonTooLong { .. } => "reason",
        ProcessError::UnknownStream(_) => "stream",
        ProcessError::UnknownState(_) => "state",
        _ => return ApiResponse::bad_request(&e.to_string()),
    };
    ApiResponse::bad_request(&format!("field `{field}`: {e}"))
}

fn not_found(rest: &str) -> ApiResponse {
    ApiResponse::error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no API endpoint POST /api/process/{rest}: use /api/process/{{id}}/output or /status"),
    )
}
