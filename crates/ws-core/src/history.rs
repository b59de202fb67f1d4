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

impl Entry {
    /// What the entry holds in memory: its frame, its publication's data and event, and itself.
    fn cost(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.frame.len()
            + self.publication.data.len()
            + self.publication.event.as_ref().map_or(0, String::capacity)
    }
}

/// Recent publications of one channel, oldest first, with consecutive offsets.
///
/// It counts the bytes it holds, and every change reports how many it gained or freed, so the node's
/// [`HistoryBudget`](crate::budget::HistoryBudget) stays exact. Empty, it is one null pointer: most channels
/// (a user's own channel, say) keep no history.
#[derive(Debug, Default)]
pub(crate) struct History {
    ring: Option<Box<Ring>>,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// No entries, for the methods that read.
static EMPTY: VecDeque<Entry> = VecDeque::new();

/// Bytes a history change gained and freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "the node's history budget must hear of every change"]
pub(crate) struct Resize {
    pub(crate) added: usize,
    pub(crate) freed: usize,
}

impl History {
    /// Appends a publication and trims to `size` entries and `ttl_ms` age (0: no age limit).
    pub(crate) fn push(
        &mut self,
        publication: Publication,
        frame: Bytes,
        now_ms: u64,
        size: usize,
        ttl_ms: u64,
    ) -> Resize {
        let entry = Entry { at_ms: now_ms, publication, frame };
        let added = entry.cost();
        let ring = self.ring.get_or_insert_with(Box::default);
        ring.entries.push_back(entry);
        ring.bytes += added;
        let mut freed = 0;
        while self.entries().len() > size {
            freed += self.pop_front();
        }
        freed += self.expire(now_ms, ttl_ms).freed;
        Resize { added, freed }
    }

    /// Drops entries older than `ttl_ms` (0: no age limit).
    pub(crate) fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> Resize {
        let mut freed = 0;
        if ttl_ms > 0 {
            while self.entries().front().is_some_and(|e| now_ms.saturating_sub(e.at_ms) >= ttl_ms) {
                freed += self.pop_front();
            }
        }
        Resize { added: 0, freed }
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) -> Resize {
        let freed = self.ring.take().map_or(0, |ring| ring.bytes);
        Resize { added: 0, freed }
    }

    fn pop_front(&mut self) -> usize {
        let Some(ring) = &mut self.ring else { return 0 };
        let cost = ring.entries.pop_front().map_or(0, |e| e.cost());
        ring.bytes -= cost;
        if ring.entries.is_empty() {
            self.ring = None;
        }
        cost
    }

    fn entries(&self) -> &VecDeque<Entry> {
        self.ring.as_ref().map_or(&EMPTY, |ring| &ring.entries)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_none()
    }

    /// When the newest entry was added, if there is one.
    pub(crate) fn newest_at(&self) -> Option<u64> {
        self.entries().back().map(|e| e.at_ms)
    }

    /// The frames after `offset`, when the ring still holds every one of them up to `latest`.
    pub(crate) fn frames_after(&self, offset: u64, latest: u64) -> Option<Vec<Bytes>> {
        if offset >= latest {
            return Some(Vec::new());
        }
        let first = self.entries().front()?.publication.offset;
        if first > offset + 1 {
            return None;
        }
        let skip = usize::try_from(offset + 1 - first).ok()?;
        Some(self.entries().iter().skip(skip).map(|e| e.frame.clone()).collect())
    }

    /// Up to `limit` publications after `since` (all kept ones when `None`), the newest `limit` of them.
    pub(crate) fn publications(&self, since: Option<u64>, limit: usize) -> Vec<Publication> {
        let after = since.unwrap_or(0);
        let matching: Vec<&Entry> = self.entries().iter().filter(|e| e.publication.offset > after).collect();
        let start = matching.len().saturating_sub(limit);
        matching[start..].iter().map(|e| e.publication.clone()).collect()
    }
}
