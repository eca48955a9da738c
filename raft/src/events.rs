//! What each applied log entry changed, as a stream for watchers (the node's
//! `/api/events`): the state machine's notes, and a new leader's first entry. Every event is
//! named by its log position, `(index, ordinal within the entry)`, which is the same on
//! every replica, so a watcher may resume on any node. Each node keeps the latest events in
//! a bounded ring; a watcher that asks for an older position is told it is gone.

use crate::NodeId;
use rota_state_machine::Note;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{broadcast, watch};

/// Events a node keeps for watchers that resume.
pub const EVENT_RING: usize = 65_536;
/// Events a live watcher may fall behind by before it is told it lagged.
pub const EVENT_BACKLOG: usize = 4_096;

/// A log position: an entry's index and an event's ordinal within it.
pub type Position = (u64, u32);

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    /// A change the state machine noted.
    Note(Note),
    /// A new leader's first entry: the cluster has a leader for `term`.
    Leader {
        /// Its term.
        term: u64,
        /// The leader.
        node: NodeId,
    },
    /// This node installed a snapshot up to this event's index: the events before it were
    /// not seen here, so a watcher cannot go on from where it was.
    Jumped,
}

/// One event, at its log position.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The entry's index.
    pub index: u64,
    /// Its ordinal among the entry's events, from 0.
    pub ordinal: u32,
    /// The leader that proposed the entry (0 for a `Jumped` notice): the one node that
    /// reports it where each event should be told once (the job log).
    pub leader: NodeId,
    /// What happened.
    pub body: EventBody,
}

impl Event {
    /// Its log position.
    pub fn position(&self) -> Position {
        (self.index, self.ordinal)
    }
}

/// What a watcher gets: the kept events after its position, and a receiver of the rest.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Why a watcher cannot resume where it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone {
    /// Every position at or before this one has left this node's ring.
    pub floor: Position,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Positions at or before this are not here (evicted, or before this node's snapshot).
    floor: Option<Position>,
}

/// Called with each entry's events as they are applied, before any watcher sees them:
/// for what must see every event (metrics, the job log), so it must be quick. Taps alone
/// see lease extensions (heartbeats); the ring and live watchers do not.
pub type Tap = Arc<dyn Fn(&[Arc<Event>]) + Send + Sync>;

/// The stream of one node's applied events.
pub struct EventHub {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Event>>,
    taps: RwLock<Vec<Tap>>,
    /// The index of the last entry applied (or snapshot installed), sent once its apply
    /// is over and the state unlocked: what a waiting lease wakes on.
    applied: watch::Sender<u64>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(None)
    }
}

impl EventHub {
    /// A hub whose history starts after `floor` (a snapshot's last index, say).
    pub fn new(floor: Option<u64>) -> Self {
        let (live, _) = broadcast::channel(EVENT_BACKLOG);
        Self {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                floor: floor.map(|index| (index, u32::MAX)),
            }),
            live,
            taps: RwLock::default(),
            applied: watch::Sender::new(floor.unwrap_or(0)),
        }
    }

    /// Tells those waiting on `applied` that the state moved on to `index`.
    pub fn applied_to(&self, index: u64) {
        self.applied.send_replace(index);
    }

    /// A receiver that changes whenever the state moves on (entries applied, a snapshot
    /// installed); its value is the last index applied.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Calls `tap` with every entry's events from now on.
    pub fn tap(&self, tap: Tap) {
        if let Ok(mut taps) = self.taps.write() {
            taps.push(tap);
        }
    }

    /// Publishes the events of entry `index`, which `leader` proposed, in order.
    pub fn publish(&self, index: u64, leader: NodeId, bodies: Vec<EventBody>) {
        if bodies.is_empty() {
            return;
        }
        let events: Vec<Arc<Event>> = bodies
            .into_iter()
            .enumerate()
            .map(|(ordinal, body)| {
                Arc::new(Event {
                    index,
                    ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                    leader,
                    body,
                })
            })
            .collect();
        if let Ok(taps) = self.taps.read() {
            for tap in taps.iter() {
                tap(&events);
            }
        }
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        // Heartbeats go to the taps only: in the ring they would crowd out the transitions
        // a watcher resumes to (the ids of those kept stay as they were).
        let watched = events
            .into_iter()
            .filter(|e| !matches!(e.body, EventBody::Note(Note::LeaseExtended { .. })));
        for event in watched {
            if ring.events.len() == EVENT_RING {
                if let Some(old) = ring.events.pop_front() {
                    ring.floor = Some(old.position());
                }
            }
            ring.events.push_back(event.clone());
            // No receiver is fine: nobody is watching.
            let _ = self.live.send(event);
        }
    }

    /// The state jumped to `index` without its entries (a snapshot was installed): earlier
    /// positions are gone here, and watchers are told so.
    pub fn reset(&self, index: u64) {
        // Under the ring's lock, as `publish` sends: no watcher subscribes between the
        // reset and its notice.
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        ring.events.clear();
        ring.floor = Some((index, u32::MAX));
        let _ = self.live.send(Arc::new(Event {
            index,
            ordinal: u32::MAX,
            leader: 0,
            body: EventBody::Jumped,
        }));
    }

    /// The events after `after` (all kept ones when none) and a receiver of those still to
    /// come, taken together so that nothing falls between them; `Gone` when `after` is
    /// older than this node keeps.
    pub fn subscribe(&self, after: Option<Position>) -> Result<Subscription, Gone> {
        let ring = self.ring.lock().map_err(|_| Gone { floor: (0, 0) })?;
        if let (Some(floor), Some(after)) = (ring.floor, after) {
            if after < floor {
                return Err(Gone { floor });
            }
        }
        let receiver = self.live.subscribe();
        let backlog = match after {
            Some(after) => {
                // The ring is in log order: start at the first event after `after`.
                let start = ring.events.partition_point(|e| e.position() <= after);
                ring.events.range(start..).cloned().collect()
            }
            None => Vec::new(),
        };
        Ok((backlog, receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(term: u64) -> EventBody {
        EventBody::Leader { term, node: 1 }
    }

    #[test]
    fn a_watcher_resumes_after_its_position_and_hears_what_follows() {
        let hub = EventHub::new(None);
        hub.publish(3, 1, vec![leader(1), leader(2)]);
        hub.publish(5, 1, vec![leader(3)]);
        let (backlog, mut live) = hub.subscribe(Some((3, 0))).unwrap();
        let seen: Vec<Position> = backlog.iter().map(|e| e.position()).collect();
        assert_eq!(seen, vec![(3, 1), (5, 0)]);
        hub.publish(6, 1, vec![leader(4)]);
        assert_eq!(live.try_recv().unwrap().position(), (6, 0));
        let (fresh, _) = hub.subscribe(None).unwrap();
        assert!(fresh.is_empty(), "without a position, only what comes next");
    }

    #[test]
    fn positions_before_the_floor_are_gone() {
        let hub = EventHub::new(Some(10));
        assert_eq!(
            hub.subscribe(Some((9, 4))).unwrap_err(),
            Gone {
                floor: (10, u32::MAX)
            }
        );
        assert!(hub.subscribe(Some((10, u32::MAX))).is_ok());
        hub.reset(20);
        assert!(hub.subscribe(Some((15, 0))).is_err());
    }
}
