//! `Rooms`: the relay endpoint's rooms, in the hub's sharded map type; a room lives while it has members.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ws_core::{Conn, ConnId, SendError, ShardedMap};

use crate::outbound::{Kind, Outbound};

/// One room: the members' send queues.
#[derive(Debug, Default)]
pub(crate) struct Room {
    members: Mutex<Vec<Arc<Outbound>>>,
}

impl Room {
    /// Queues an encoded frame on every member but the sender (and on the sender too when `echo`). A member
    /// whose queue is full is a slow consumer and is closed with 4000. Returns how many members took it.
    pub(crate) fn forward(&self, from: ConnId, frame: &Bytes, echo: bool) -> usize {
        // Members' tasks are woken once the room's lock is released.
        ws_core::deferring(|| self.forward_now(from, frame, echo))
    }

    fn forward_now(&self, from: ConnId, frame: &Bytes, echo: bool) -> usize {
        let members = self.members.lock();
        let mut sent = 0;
        for member in members.iter().filter(|m| echo || m.id() != from) {
            match member.push(Kind::Frame, frame) {
                Ok(()) => sent += 1,
                Err(SendError::Full) => member.close(ws_protocol::close::SLOW_CONSUMER, "slow consumer"),
                Err(SendError::Closed) => {}
            }
        }
        sent
    }
}

/// Every relay room, by name.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    map: ShardedMap<Box<str>, Arc<Room>>,
}

impl Rooms {
    /// Adds a member to a room, creating the room if needed.
    pub(crate) fn join(&self, name: &str, member: Arc<Outbound>) -> Arc<Room> {
        let mut shard = self.map.shard(name).write();
        let room = Arc::clone(shard.entry(name.into()).or_default());
        room.members.lock().push(member);
        room
    }

    /// Takes a member out of its room, removing the room when it is left empty.
    pub(crate) fn leave(&self, name: &str, room: &Arc<Room>, id: ConnId) {
        // Joins and leaves both hold the shard lock, so a room is never removed while someone joins it.
        let mut shard = self.map.shard(name).write();
        let empty = {
            let mut members = room.members.lock();
            members.retain(|m| m.id() != id);
            members.is_empty()
        };
        if empty && shard.get(name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            shard.remove(name);
        }
    }

    /// How many rooms exist.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, queue: usize) -> Arc<Outbound> {
        Arc::new(Outbound::new(ConnId::new(id), queue, 1 << 20))
    }

    #[test]
    fn forward_skips_the_sender_unless_echo_and_rooms_go_when_empty() {
        let rooms = Rooms::default();
        let (a, b) = (member(1, 8), member(2, 8));
        let room = rooms.join("r", Arc::clone(&a));
        assert!(Arc::ptr_eq(&room, &rooms.join("r", Arc::clone(&b))));
        let frame = Bytes::from_static(b"\x81\x02hi");
        assert_eq!(room.forward(a.id(), &frame, false), 1);
        assert_eq!(room.forward(a.id(), &frame, true), 2);
        rooms.leave("r", &room, a.id());
        assert_eq!(rooms.len(), 1);
        rooms.leave("r", &room, b.id());
        assert_eq!(rooms.len(), 0);
    }

    #[test]
    fn a_full_member_is_closed_as_a_slow_consumer() {
        let rooms = Rooms::default();
        let (a, b) = (member(1, 1), member(2, 1));
        let room = rooms.join("r", Arc::clone(&a));
        rooms.join("r", Arc::clone(&b));
        let frame = Bytes::from_static(b"\x81\x01x");
        room.forward(a.id(), &frame, false);
        room.forward(a.id(), &frame, false);
        assert!(b.close_requested());
        assert!(!a.close_requested());
    }
}
