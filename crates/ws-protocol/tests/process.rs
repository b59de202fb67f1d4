//! Process streaming data: every shape encodes to the documented JSON and decodes back; bad ids, streams,
//! states and oversize lines are refused with errors that say what is allowed.

use ws_protocol::{
    ProcessError, ProcessEvent, ProcessOutput, ProcessState, ProcessStatus, ProcessStream, MAX_PROCESS_ID_BYTES,
    MAX_PROCESS_LINE_BYTES,
};

#[test]
fn output_and_status_data_round_trip_through_their_documented_json() {
    let out = |stream, line: &str| ProcessEvent::output("job-1", stream, line).unwrap();
    let cases: Vec<(ProcessEvent, &str)> = vec![
        (out(ProcessStream::Stdout, "hello"), r#"{"line":"hello","stream":"stdout"}"#),
        (
            out(ProcessStream::Stderr, "tab\there \"quoted\" \u{1b}[0m"),
            r#"{"line":"tab\there \"quoted\" \u001b[0m","stream":"stderr"}"#,
        ),
        (out(ProcessStream::Stdout, ""), r#"{"line":"","stream":"stdout"}"#),
    ];
    for (event, json) in &cases {
        assert_eq!((event.channel.as_str(), event.event), ("process:job-1", "process_output"));
        assert_eq!(event.data.as_str(), *json);
        let back: ProcessOutput = event.data.decode().unwrap();
        assert_eq!(ProcessEvent::output("job-1", back.stream, &back.line).unwrap(), *event);
    }
    let statuses = [
        (ProcessStatus::new(ProcessState::Running, 5), r#"{"state":"running","at_ms":5}"#),
        (ProcessStatus::new(ProcessState::Exited, 6).code(0), r#"{"state":"exited","code":0,"at_ms":6}"#),
        (
            ProcessStatus::new(ProcessState::Failed, 7).code(-9).reason("killed by signal 9"),
            r#"{"state":"failed","code":-9,"reason":"killed by signal 9","at_ms":7}"#,
        ),
    ];
    for (status, json) in statuses {
        let event = ProcessEvent::status("job-1", &status).unwrap();
        assert_eq!((event.event, event.data.as_str()), ("process_status", json));
        assert_eq!(event.data.decode::<ProcessStatus>().unwrap(), status);
    }
}

#[test]
fn streams_and_states_parse_from_their_wire_names_only() {
    for stream in [ProcessStream::Stdout, ProcessStream::Stderr] {
        assert_eq!(stream.as_str().parse::<ProcessStream>(), Ok(stream));
    }
    for state in [ProcessState::Running, ProcessState::Exited, ProcessState::Failed] {
        assert_eq!(state.as_str().parse::<ProcessState>(), Ok(state));
    }
    let err = "STDOUT".parse::<ProcessStream>().unwrap_err();
    assert_eq!(err.to_string(), r#"unknown stream "STDOUT": send "stdout" or "stderr""#);
    let err = "done".parse::<ProcessState>().unwrap_err();
    assert_eq!(err.to_string(), r#"unknown state "done": send "running", "exited" or "failed""#);
}

#[test]
fn bad_ids_oversize_lines_and_reasons_are_refused() {
    for id in ["", "with space", "caf\u{e9}", &"x".repeat(MAX_PROCESS_ID_BYTES + 1)] {
        let err = ProcessEvent::output(id, ProcessStream::Stdout, "x").unwrap_err();
        assert!(matches!(err, ProcessError::InvalidId { .. }), "{id:?}: {err}");
        assert!(err.to_string().contains("a process id is 1 to 247 bytes"), "{err}");
    }
    assert!(ProcessEvent::output(&"x".repeat(MAX_PROCESS_ID_BYTES), ProcessStream::Stdout, "x").is_ok());
    assert!(ProcessEvent::output("builds/42#alice", ProcessStream::Stdout, "x").is_ok(), "a user's own process");
    let longest = "y".repeat(MAX_PROCESS_LINE_BYTES);
    assert!(ProcessEvent::output("j", ProcessStream::Stdout, &longest).is_ok());
    let err = ProcessEvent::output("j", ProcessStream::Stdout, &format!("{longest}y")).unwrap_err();
    assert_eq!(err, ProcessError::LineTooLong { len: MAX_PROCESS_LINE_BYTES + 1 });
    assert_eq!(err.to_string(), "line is 65537 bytes; the most is 65536");
    let status = ProcessStatus::new(ProcessState::Failed, 1).reason("r".repeat(1025));
    assert_eq!(ProcessEvent::status("j", &status).unwrap_err(), ProcessError::ReasonTooLong { len: 1025 });
}
