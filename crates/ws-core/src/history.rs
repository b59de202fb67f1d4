//! `History`: a channel's bounded ring of recent publications, for history and recovery.

use std::collections::VecDeque;

use bytes::Bytes;
use ws_protocol::Publication;

#[derive(Debug)]
struct Entry {
    at_ms: u64,
    publication: Publication,
    frame: Bytes,
}

/// Recent publications of one channel, oldest first, with consecutive offsets.
#[derive(Debug, Default)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
}

impl History {
    /// Appends a publication and trims to `size` entries and `ttl_ms` age (0: no age limit).
    pub(crate) fn push(&mut self, publication: Publication, frame: Bytes, now_ms: u64, size: usize, ttl_ms: u64) {
        self.entries.push_back(Entry { at_ms: now_ms, publication, frame });
        while self.entries.len() > size {
            self.entries.pop_front();
        }
        self.expire(now_ms, ttl_ms);
    }

    /// Drops entries older than `ttl_ms` (0: no age limit).
    pub(crate) fn expire(&mut self, now_ms: u64, ttl_ms: u64) {
        if ttl_ms == 0 {
            return;
        }
        while self.entries.front().is_some_and(|e| now_ms.saturating_sub(e.at_ms) >= ttl_ms) {
            self.entries.pop_front();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The frames after `offset`, when the ring still holds every one of them up to `latest`.
    pub(crate) fn frames_after(&self, offset: u64, latest: u64) -> Option<Vec<Bytes>> {
        if offset >= latest {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.publication.offset;
        if first > offset + 1 {
            return None;
        }
        let skip = usize::try_from(offset + 1 - first).ok()?;
        Some(self.entries.iter().skip(skip).map(|e| e.frame.clone()).collect())
    }

    /// Up to `limit` publications after `since` (all kept ones when `None`), the newest `limit` of them.
    pub(crate) fn publications(&self, since: Option<u64>, limit: usize) -> Vec<Publication> {
        let after = since.unwrap_or(0);
        let matching: Vec<&Entry> = self.entries.iter().filter(|e| e.publication.offset > after).collect();
        let start = matching.len().saturating_sub(limit);
        matching[start..].iter().map(|e| e.publication.clone()).collect()
    }
}
