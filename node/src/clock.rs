//! Where log time comes from. The leader stamps every entry with its wall clock, clamped so
//! that log time never goes backwards; everything on the node that asks "what time would
//! the log say now?" asks `LogClock`, so the clamp lives in one place.

use rota_raft::RaftNode;
use rota_state_machine::State;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a node's clock comes from: milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The machine's clock.
pub fn system_clock() -> Clock {
    Arc::new(wall_ms)
}

/// This machine's clock, in ms since the Unix epoch.
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Log time as this node would stamp it now: its clock, but never behind the applied
/// state's time or a stamp it already handed out. (A new leader's clock may be behind the
/// old one's; `State::apply` clamps again, so every replica agrees whatever the stamp.)
#[derive(Clone)]
pub struct LogClock {
    clock: Clock,
    raft: Arc<RaftNode>,
    last_ms: Arc<AtomicU64>,
}

impl LogClock {
    /// Log time from `clock`, never behind what `raft` has applied.
    pub fn new(clock: Clock, raft: Arc<RaftNode>) -> Self {
        Self {
            clock,
            raft,
            last_ms: Arc::default(),
        }
    }

    /// The time the next entry would carry, with the state it was clamped against: `read`
    /// sees both at once, so a decision about time (a lease that may grant, a tick that is
    /// due) never mixes a clock and a state read apart.
    pub fn read<R>(&self, read: impl FnOnce(&State, u64) -> R) -> R {
        self.raft.read_local(|applied| {
            let now_ms = (self.clock)()
                .max(applied.state.now_ms())
                .max(self.last_ms.load(Ordering::Relaxed));
            read(&applied.state, now_ms)
        })
    }

    /// The stamp for an entry about to be proposed; later stamps are never earlier.
    pub fn stamp(&self) -> u64 {
        let now_ms = self.read(|_, now_ms| now_ms);
        self.last_ms
            .fetch_max(now_ms, Ordering::Relaxed)
            .max(now_ms)
    }
}
