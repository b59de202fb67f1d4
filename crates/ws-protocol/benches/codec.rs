//! Codec micro-benchmarks: decoding each client command, and encoding a publication's `message` frame.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ws_protocol::{encode_message, ChannelName, ClientFrame, Json};

/// One frame of each command type, as a client sends it.
const COMMANDS: [(&str, &str); 8] = [
    ("subscribe", r#"{"type":"subscribe","id":1,"channel":"chat:lobby","recover":{"epoch":"e1","offset":42}}"#),
    ("unsubscribe", r#"{"type":"unsubscribe","id":2,"channel":"chat:lobby"}"#),
    ("publish", r#"{"type":"publish","id":3,"channel":"chat:lobby","data":{"text":"hello, world","n":1}}"#),
    ("ping", r#"{"type":"ping","id":4}"#),
    ("presence", r#"{"type":"presence","id":5,"channel":"chat:lobby"}"#),
    ("history", r#"{"type":"history","id":6,"channel":"chat:lobby","limit":50,"since":{"epoch":"e1","offset":40}}"#),
    ("echo", r#"{"type":"echo","id":"req-7","data":[1,2,3,"four"]}"#),
    ("status", r#"{"type":"status","id":8}"#),
];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, frame) in COMMANDS {
        // Every frame must be valid, or the bench would time the error path.
        ClientFrame::decode(frame.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), frame.as_bytes(), |b, frame| {
            b.iter(|| ClientFrame::decode(black_box(frame)))
        });
    }
    group.finish();
}

/// A JSON string payload of exactly `len` bytes, quotes included.
fn payload(len: usize) -> Json {
    Json::parse(format!("\"{}\"", "x".repeat(len - 2))).expect("a JSON string")
}

fn encode(c: &mut Criterion) {
    let channel = ChannelName::new("chat:lobby").expect("a valid channel");
    let mut group = c.benchmark_group("encode_message");
    for (name, len) in [("64B", 64), ("1KiB", 1024), ("16KiB", 16 * 1024)] {
        let data = payload(len);
        let frame_len = encode_message(&channel, 1, None, &data).len();
        group.throughput(Throughput::Bytes(frame_len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
            b.iter(|| encode_message(black_box(&channel), black_box(12_345), None, black_box(data)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
