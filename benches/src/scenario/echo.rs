//! Echo, closed loop: each connection sends one message and waits for its echo before sending the next.
//! Throughput in round trips per second, and the round-trip latency.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::{Stats, Target};
use crate::client::ClientError;
use crate::marker::{self, Marker, Template, SEQ_MASK};
use crate::report::CaseResult;
use crate::wire::MaskedFrame;

/// Runs `conns` connections echoing `size`-byte messages.
pub(crate) async fn run(target: Rc<Target>, conns: usize, size: usize) -> CaseResult {
    let stats = Stats::new();
    let running = Rc::new(Cell::new(true));
    let buf = (size + 256).max(4096);
    let path = target.echo_path.clone();
    let tasks = super::open_all(&target, &stats, conns, &path, buf, |_| Vec::new(), {
        let (stats, running) = (stats.clone(), running.clone());
        move |i, mut conn| {
            let (stats, running) = (stats.clone(), running.clone());
            async move {
                if let Err(e) = echo_loop(i as u32, &mut conn, size, &stats, &running).await {
                    if running.get() {
                        stats.error(format!("connection {i}: {e}"));
                    }
                }
                let _ = conn.close(Duration::from_secs(2)).await;
            }
        }
    })
    .await;
    let samples = if stats.failed() { Vec::new() } else { super::measure(&target, &stats, |_| {}).await };
    running.set(false);
    let stuck = tasks.join(Duration::from_secs(10)).await;
    if stuck > 0 {
        stats.error(format!("{stuck} connections did not get their last echo"));
    }
    let size = if size.is_multiple_of(1024) { format!("{}KiB", size / 1024) } else { format!("{size}B") };
    CaseResult::new("echo", format!("{conns}x{size}"), &target.name, samples, stats.final_checks())
}

async fn echo_loop(
    sender: u32,
    conn: &mut crate::client::WsConn,
    size: usize,
    stats: &Stats,
    running: &Cell<bool>,
) -> Result<(), ClientError> {
    let template = Template::echo(size);
    let mut frame = MaskedFrame::text(&template.payload);
    let mut seq = 0u32;
    while running.get() {
        let sent_us = marker::now_us();
        frame.patch(template.marker_at, &Marker { sender, seq, sent_us }.encode());
        conn.send(frame.bytes()).await?;
        Stats::add(&stats.expected, 1);
        let got = conn
            .read_data(|payload, received| match marker::find_marker(payload) {
                Some(m) if m.sender == sender && m.seq == seq => {
                    stats.latency(marker::elapsed_us(m.sent_us, received));
                    Stats::add(&stats.ops, 1);
                    Stats::add(&stats.delivered, 1);
                }
                Some(_) => stats.checks.borrow_mut().out_of_order += 1,
                None => stats.error(format!("not an echo: {}", crate::client::excerpt(payload))),
            })
            .await?;
        if got > 1 {
            stats.checks.borrow_mut().duplicated += got as u64 - 1;
        }
        seq = (seq + 1) & SEQ_MASK;
    }
    Ok(())
}
