//! `Deliveries`: one connection's delivery checks, channel by channel. Every `message` comes after its
//! channel's `subscribed` reply and before its `unsubscribed` reply; its offset is the previous one plus 1,
//! starting after the offset the `subscribed` reply gave, or after the recovery position when the reply says
//! `recovered: true` (then the replayed messages come first and the live ones follow without a gap): nothing
//! lost, nothing duplicated, one order. On the steady channels, each publisher's sequence numbers follow each
//! other, from 0 for a connection that was there before the first publication (the publisher's order kept).

use std::rc::Rc;

use memchr::memmem;
use serde_json::Value;

use super::tally::{Ledger, Tally};
use crate::client::excerpt;
use crate::marker::{self, SEQ_MASK};

/// Whether a channel's messages carry a publisher's marker, and since when the connection sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A steady channel subscribed before anyone published: every publisher's first message is its number 0.
    MarkedFromStart,
    /// A steady channel joined while publishers run: each publisher's first message here may be any number.
    MarkedJoined,
    /// Messages without a marker (the churn channels): only offsets are checked.
    Unmarked,
}

#[derive(Debug)]
struct ChannelCheck {
    name: String,
    expect: Expect,
    /// The offset the next message must carry; `None` until the `subscribed` reply.
    next_offset: Option<u64>,
    /// Per publisher, the sequence number its next message must carry; `None` before its first one.
    next_seq: Vec<Option<u32>>,
    /// The offset a subscribe with `recover` asked to continue after.
    recover_from: Option<u64>,
    /// How that subscribe was answered.
    recovery: Option<Recovery>,
}

/// How a subscribe with `recover` was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// `recovered: true`: the missed messages are replayed.
    Recovered,
    /// `recovered: false`: the position was too old (or not yet reached); the messages start after the reply's
    /// offset.
    Refused,
}

/// The checks of one connection.
#[derive(Debug)]
pub(crate) struct Deliveries {
    label: String,
    channels: Vec<ChannelCheck>,
    senders: usize,
    tally: Rc<Tally>,
}

const MESSAGE: &[u8] = br#"{"type":"message","#;

impl Deliveries {
    /// Checks for the connection `label` (for violation messages), with publishers `0..senders`.
    pub(crate) fn new(label: String, senders: usize, tally: Rc<Tally>) -> Self {
        Self { label, channels: Vec::new(), senders, tally }
    }

    /// Expects a `subscribed` reply for `channel`: call it before sending the subscribe.
    pub(crate) fn expect(&mut self, channel: &str, expect: Expect) {
        let next_seq = match expect {
            Expect::MarkedFromStart => vec![Some(0); self.senders],
            Expect::MarkedJoined | Expect::Unmarked => vec![None; self.senders],
        };
        self.channels.push(ChannelCheck {
            name: channel.to_owned(),
            expect,
            next_offset: None,
            next_seq,
            recover_from: None,
            recovery: None,
        });
    }

    /// Like [`Self::expect`], for a subscribe with `recover` after `offset`.
    pub(crate) fn expect_recovery(&mut self, channel: &str, expect: Expect, offset: u64) {
        self.expect(channel, expect);
        if let Some(check) = self.channels.last_mut() {
            check.recover_from = Some(offset);
        }
    }

    /// How the subscribe with `recover` on `channel` was answered, once its reply has come.
    pub(crate) fn recovery(&self, channel: &str) -> Option<Recovery> {
        self.channels.iter().find(|c| c.name == channel)?.recovery
    }

    /// Handles one frame from the server: messages are checked and counted; any other frame is returned parsed
    /// (after its effect on the checks: `subscribed` starts a channel's offsets, `unsubscribed` ends them).
    pub(crate) fn frame(&mut self, payload: &[u8]) -> Option<Value> {
        if payload.starts_with(MESSAGE) {
            self.message(payload);
            return None;
        }
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            self.violation(format!("a frame that is not JSON: {}", excerpt(payload)));
            return None;
        };
        let channel = value["channel"].as_str().unwrap_or_default();
        match value["type"].as_str() {
            Some("subscribed") => self.subscribed(&value),
            Some("unsubscribed") => self.channels.retain(|c| c.name != channel),
            _ => {}
        }
        Some(value)
    }

    /// Starts a channel's offsets from its `subscribed` reply.
    fn subscribed(&mut self, reply: &Value) {
        let channel = reply["channel"].as_str().unwrap_or_default();
        let check = self.channels.iter_mut().find(|c| c.name == channel && c.next_offset.is_none());
        let (Some(check), Some(offset)) = (check, reply["offset"].as_u64()) else {
            return self.violation(format!("an unexpected subscribed reply: {reply}"));
        };
        let Some(from) = check.recover_from else {
            check.next_offset = Some(offset + 1);
            return;
        };
        match (reply["recovered"].as_bool(), reply["missed"].as_u64()) {
            (Some(true), Some(missed)) if from <= offset && missed == offset - from => {
                check.recovery = Some(Recovery::Recovered);
                check.next_offset = Some(from + 1);
            }
            (Some(false), Some(0)) if from != offset => {
                check.recovery = Some(Recovery::Refused);
                check.next_offset = Some(offset + 1);
            }
            _ => {
                check.next_offset = Some(offset + 1);
                self.violation(format!("a recovery after offset {from} answered {reply}"));
            }
        }
    }

    fn message(&mut self, payload: &[u8]) {
        let Some(channel) = channel_of(payload) else {
            return self.violation(format!("a message without a channel: {}", excerpt(payload)));
        };
        let Some(at) = self.channels.iter().position(|c| c.name.as_bytes() == channel) else {
            return self.violation(format!("a message on a channel it is not subscribed to: {}", excerpt(payload)));
        };
        let Some(offset) = marker::find_offset(payload) else {
            return self.violation(format!("a message without an offset: {}", excerpt(payload)));
        };
        let check = &mut self.channels[at];
        let Some(next) = check.next_offset else {
            return self.violation(format!("a message before the subscribed reply: {}", excerpt(payload)));
        };
        check.next_offset = Some(offset + 1);
        let mut problems = Vec::new();
        if offset != next {
            problems.push(format!("offset {offset} where {next} was due"));
        }
        if check.expect != Expect::Unmarked {
            match marker::find_marker(payload) {
                Some(m) => match check.next_seq.get_mut(m.sender as usize) {
                    Some(due) => {
                        if due.is_some_and(|due| due != m.seq) {
                            problems.push(format!("sender {} number {} where {:?} was due", m.sender, m.seq, due));
                        }
                        *due = Some((m.seq + 1) & SEQ_MASK);
                    }
                    None => problems.push(format!("unknown sender {}", m.sender)),
                },
                None => problems.push("no publisher's marker".to_owned()),
            }
        }
        self.tally.count(|c| c.deliveries += 1);
        for problem in problems {
            self.violation(format!("{problem}: {}", excerpt(payload)));
        }
    }

    /// The offset of the last message received on `channel` (the `subscribed` offset before any).
    pub(crate) fn last_offset(&self, channel: &str) -> Option<u64> {
        let check = self.channels.iter().find(|c| c.name == channel)?;
        check.next_offset.map(|next| next - 1)
    }

    /// Checks that `channel` (index `index` in `ledger`) delivered everything up to `final_offset`, and every
    /// publication of every publisher the ledger lists.
    pub(crate) fn verify_complete(&self, channel: &str, index: usize, final_offset: u64, ledger: &Ledger) {
        let Some(check) = self.channels.iter().find(|c| c.name == channel) else {
            return self.violation(format!("{channel}: never subscribed"));
        };
        if check.next_offset != Some(final_offset + 1) {
            let last = check.next_offset.map(|n| n - 1);
            self.violation(format!("{channel}: last offset {last:?} where the channel ended at {final_offset}"));
        }
        for sender in 0..ledger.senders() {
            let made = ledger.made(sender, index);
            let seen = check.next_seq.get(sender).copied().flatten().unwrap_or(0);
            if seen != made & SEQ_MASK {
                self.violation(format!("{channel}: {seen} messages of sender {sender}, which made {made}"));
            }
        }
    }

    fn violation(&self, what: impl std::fmt::Display) {
        self.tally.violation(format!("{}: {what}", self.label));
    }
}

/// The `channel` of a `message` frame.
fn channel_of(payload: &[u8]) -> Option<&[u8]> {
    let start = memmem::find(payload, br#""channel":""#)? + 11;
    let len = memchr::memchr(b'"', &payload[start..])?;
    Some(&payload[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::Marker;

    fn message(channel: &str, offset: u64, sender: u32, seq: u32) -> Vec<u8> {
        let m = Marker { sender, seq, sent_us: 0 }.encode();
        let m = std::str::from_utf8(&m).unwrap();
        format!(r#"{{"type":"message","channel":"{channel}","offset":{offset},"data":"{m}xx"}}"#).into_bytes()
    }

    fn subscribed(channel: &str, offset: u64) -> Vec<u8> {
        format!(r#"{{"type":"subscribed","channel":"{channel}","epoch":"e","offset":{offset}}}"#).into_bytes()
    }

    #[test]
    fn in_order_deliveries_pass_and_gaps_repeats_and_strays_are_violations() {
        let tally = Rc::new(Tally::default());
        let mut d = Deliveries::new("t".into(), 2, tally.clone());
        d.expect("s:0", Expect::MarkedFromStart);
        assert!(d.frame(&subscribed("s:0", 0)).is_some());
        for (offset, sender, seq) in [(1, 0, 0), (2, 1, 0), (3, 0, 1)] {
            assert!(d.frame(&message("s:0", offset, sender, seq)).is_none());
        }
        assert_eq!((tally.violation_count(), tally.counts().deliveries, d.last_offset("s:0")), (0, 3, Some(3)));
        let ledger = Ledger::new(2, 1);
        for (sender, made) in [(0, 2), (1, 1)] {
            for _ in 0..made {
                ledger.next(sender, 0);
            }
        }
        d.verify_complete("s:0", 0, 3, &ledger);
        assert_eq!(tally.violation_count(), 0);
        // A gap in the offsets and in sender 1's numbers, a repeat, a channel not subscribed to.
        d.frame(&message("s:0", 5, 1, 2));
        d.frame(&message("s:0", 5, 1, 3));
        d.frame(&message("other", 1, 0, 0));
        assert_eq!(tally.violation_count(), 4);
        d.verify_complete("s:0", 0, 9, &ledger);
        assert_eq!(tally.violation_count(), 6, "the tail is missing, and sender 1 made fewer than were seen");
    }

    #[test]
    fn a_recovered_subscription_starts_after_the_recovery_position_and_a_refused_one_after_the_reply() {
        let tally = Rc::new(Tally::default());
        let mut d = Deliveries::new("t".into(), 1, tally.clone());
        d.expect_recovery("s:0", Expect::MarkedJoined, 7);
        d.expect_recovery("s:1", Expect::MarkedJoined, 7);
        assert_eq!(d.recovery("s:0"), None, "no reply yet");
        d.frame(br#"{"type":"subscribed","channel":"s:0","epoch":"e","offset":9,"recovered":true,"missed":2}"#);
        d.frame(br#"{"type":"subscribed","channel":"s:1","epoch":"e","offset":200,"recovered":false,"missed":0}"#);
        for offset in 8..=10 {
            d.frame(&message("s:0", offset, 0, offset as u32));
        }
        d.frame(&message("s:1", 201, 0, 0));
        assert_eq!(tally.violation_count(), 0);
        // The answer stays what the reply said, whatever arrived after it.
        assert_eq!((d.recovery("s:0"), d.recovery("s:1")), (Some(Recovery::Recovered), Some(Recovery::Refused)));
        // A replay that skipped a message, and a reply whose missed count does not add up.
        d.expect_recovery("s:2", Expect::MarkedJoined, 3);
        d.frame(br#"{"type":"subscribed","channel":"s:2","epoch":"e","offset":5,"recovered":true,"missed":2}"#);
        d.frame(&message("s:2", 5, 0, 0));
        d.expect_recovery("s:3", Expect::MarkedJoined, 3);
        d.frame(br#"{"type":"subscribed","channel":"s:3","epoch":"e","offset":5,"recovered":true,"missed":1}"#);
        assert_eq!(tally.violation_count(), 2);
    }

    #[test]
    fn a_message_before_subscribed_or_after_unsubscribed_is_a_violation() {
        let tally = Rc::new(Tally::default());
        let mut d = Deliveries::new("t".into(), 1, tally.clone());
        d.expect("c:1", Expect::Unmarked);
        d.frame(br#"{"type":"message","channel":"c:1","offset":1,"data":"x"}"#);
        assert_eq!(tally.violation_count(), 1);
        d.frame(&subscribed("c:1", 4));
        d.frame(br#"{"type":"message","channel":"c:1","offset":5,"data":"x"}"#);
        assert_eq!(tally.violation_count(), 1, "unmarked channels check offsets only");
        d.frame(br#"{"type":"unsubscribed","channel":"c:1"}"#);
        d.frame(br#"{"type":"message","channel":"c:1","offset":6,"data":"x"}"#);
        assert_eq!(tally.violation_count(), 2);
    }
}
