//! Elections: a voter that has heard no leader for the leader lease asks its peers whether
//! they would vote for it (Raft's pre-vote), and campaigns when a majority would. openraft
//! 0.9's own election timer is off on a cluster of two or more voters; this replaces it.
//!
//! openraft 0.9 has a follower that knew a leader campaign only once the lease
//! (`election_timeout_max`) *and* its own election timeout have passed since it last heard
//! one: 450–600 ms with our defaults. A candidate refused for a shorter log waits twice
//! `election_timeout_max` more, and as a voter that refuses it keeps its term, the voter's
//! own campaign then comes in the candidate's term and is refused in turn. It has no
//! pre-vote either: a restarted follower the leader has not reached yet (the leader backs off
//! 500 ms from a peer that went away) campaigns in a higher term, cannot win with its short
//! log, and deposes the leader all the same. A leader SIGKILL cost 0.6–2.7 s.
//!
//! Here each voter counts how long it has heard nothing from a leader (an AppendEntries or
//! an InstallSnapshot in its current term or later) or from a candidate it voted for, or
//! since its own last campaign. Past the lease plus a step per its rank among the voters
//! other than the leader it last followed (ids in order, a fifth of a heartbeat apart, so
//! two followers that lost the leader together do not split the vote), it asks every other voter `PreVote`. A voter says yes
//! only if it does not lead, has heard no leader for the lease itself, and holds no more log
//! than the asker; the one that holds more, refusing, asks for itself at once. With a
//! majority of yeses (its own counted) the voter asks openraft to elect (`trigger().elect()`,
//! what a leader transfer uses), climbing one term at a time above every candidate it
//! refused, so a candidate it turned down cannot turn it down for being in the same term.
//! Without one it asks again a step later, less often the more it is refused.
//!
//! Nothing here decides who wins: openraft's vote handling (terms, the lease, the log check)
//! is unchanged, so safety is openraft's. What it changes is liveness: an election starts
//! just after the lease instead of an election timeout later, and a voter that cannot win
//! (behind, or cut off from a leader its peers still hear) no longer raises the term. A
//! cluster with one voter keeps openraft's timer: it elects itself at once.

use crate::network::GrpcConnection;
use crate::proto::RaftMessage;
use crate::types::{LogId, NodeId, Raft, RotaNode};
use openraft::network::RaftNetworkFactory;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How many terms a campaign may climb to get above a candidate it refused.
const MAX_CLIMB: u32 = 3;
/// The most steps between two pre-votes of a voter its peers keep refusing.
const MAX_BACKOFF_STEPS: u32 = 16;

/// What a voter asks its peers before it campaigns.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PreVoteAsk {
    /// The voter asking.
    pub candidate: NodeId,
    /// Its last log id.
    pub last_log: Option<LogId>,
}

/// A peer's answer to a `PreVoteAsk`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    /// Whether the peer would vote for the asker now.
    pub granted: bool,
    /// The peer's term (the asker campaigns above it).
    pub term: u64,
}

/// When this node last heard from a leader or a candidate, as its transport sees it.
#[derive(Debug)]
pub(crate) struct Contact {
    base: Instant,
    /// Microseconds from `base` to the last contact (the start, before any).
    heard_us: AtomicU64,
    /// The highest term of a candidate this node refused a vote.
    refused_term: AtomicU64,
    /// A candidate whose log is behind this node's was refused since the watcher last looked.
    refused_behind: AtomicBool,
    wake: Notify,
}

impl Contact {
    /// A node that starts counts its silence from then: a whole cluster started at once
    /// elects a lease later.
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            heard_us: AtomicU64::new(0),
            refused_term: AtomicU64::new(0),
            refused_behind: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// A leader of the current term (or a later one) reached this node.
    pub(crate) fn leader_heard(&self) {
        self.stamp();
    }

    /// This node voted for a candidate: give its campaign time.
    pub(crate) fn vote_granted(&self) {
        self.stamp();
    }

    /// This node refused a candidate in `term`; `behind`: for a log shorter than its own.
    pub(crate) fn vote_refused(&self, term: u64, behind: bool) {
        self.refused_term.fetch_max(term, Ordering::Relaxed);
        if behind {
            self.refused_behind();
        }
    }

    /// This node refused a voter whose log is behind its own: it may be the one to win.
    fn refused_behind(&self) {
        self.refused_behind.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn stamp(&self) {
        let us = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.heard_us.fetch_max(us, Ordering::Relaxed);
    }

    /// How long since the last contact (or since the node started).
    fn silence(&self) -> Duration {
        let heard = self.heard_us.load(Ordering::Relaxed);
        self.base
            .elapsed()
            .saturating_sub(Duration::from_micros(heard))
    }
}

/// How long a voter waits, silent, before it campaigns: the lease and one step per rank.
fn patience(lease: Duration, step: Duration, rank: usize) -> Duration {
    let steps = u32::try_from(rank).unwrap_or(u32::MAX).saturating_add(1);
    lease + step.saturating_mul(steps)
}

/// This node's rank among the voters (ids in order) other than `leader` (the one it last
/// followed, silent now: the survivors of a leader's loss rank 0 and 1), if it is one of two
/// or more voters.
fn rank(voters: impl Iterator<Item = NodeId>, id: NodeId, leader: Option<NodeId>) -> Option<usize> {
    let mut voters: Vec<NodeId> = voters.collect();
    voters.sort_unstable();
    voters.dedup();
    if voters.len() < 2 || !voters.contains(&id) {
        return None;
    }
    voters
        .iter()
        .filter(|v| **v == id || Some(**v) != leader)
        .position(|v| *v == id)
}

/// A peer's side of a pre-vote (see the module).
pub(crate) async fn answer_pre_vote(
    raft: &Raft,
    contact: &Contact,
    ask: PreVoteAsk,
) -> PreVoteAnswer {
    let (leads, term) = {
        let m = raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader, m.current_term)
    };
    let refuse = PreVoteAnswer {
        granted: false,
        term,
    };
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    if leads || contact.silence() < lease {
        return refuse;
    }
    let mine = raft.data_metrics().borrow().last_log;
    if ask.last_log < mine {
        contact.refused_behind();
        return refuse;
    }
    PreVoteAnswer {
        granted: true,
        term,
    }
}

/// Runs `raft`'s node's elections (see the module) until its Raft stops: `network` reaches
/// its peers, `stats` counts the campaigns.
pub(crate) async fn elections(
    raft: Raft,
    contact: Arc<Contact>,
    mut network: crate::network::GrpcNetwork,
    stats: Arc<crate::Stats>,
) {
    let config = raft.config().clone();
    let lease = Duration::from_millis(config.election_timeout_max);
    let heartbeat = Duration::from_millis(config.heartbeat_interval);
    let step = (heartbeat / 5).max(Duration::from_millis(1));
    let tick = (step / 4).max(Duration::from_millis(1));
    let mut metrics = raft.metrics();
    let mut peers: BTreeMap<NodeId, GrpcConnection> = BTreeMap::new();
    let mut own_timer = None;
    let mut refused: u32 = 0;
    let mut next_ask = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = contact.wake.notified() => {}
        }
        let due = {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() || m.state == ServerState::Shutdown {
                return;
            }
            let membership = m.membership_config.membership();
            let rank = rank(membership.voter_ids(), m.id, m.current_leader);
            // openraft's own timer only where this loop does not run elections.
            let single = rank.is_none() && membership.voter_ids().any(|v| v == m.id);
            if own_timer != Some(single) {
                raft.runtime_config().elect(single);
                own_timer = Some(single);
            }
            let Some(rank) = rank else {
                continue;
            };
            if m.state == ServerState::Leader || m.state == ServerState::Learner {
                continue;
            }
            patience(lease, step, rank)
        };
        let silent = contact.silence();
        let behind = contact.refused_behind.swap(false, Ordering::Relaxed);
        if silent < due && !(behind && silent >= lease) {
            refused = 0;
            continue;
        }
        if Instant::now() < next_ask && !behind {
            continue;
        }
        let (others, id): (Vec<(NodeId, RotaNode)>, NodeId) = {
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            let others = membership
                .voter_ids()
                .filter(|v| *v != m.id)
                .filter_map(|v| membership.get_node(&v).map(|n| (v, n.clone())))
                .collect();
            (others, m.id)
        };
        let ask = PreVoteAsk {
            candidate: id,
            last_log: raft.data_metrics().borrow().last_log,
        };
        let (yes, term) = pre_vote(&mut network, &mut peers, &others, ask, heartbeat).await;
        let voters = others.len() + 1;
        if (yes + 1) * 2 <= voters {
            refused = (refused + 1).min(MAX_BACKOFF_STEPS);
            next_ask = Instant::now() + step * refused;
            tracing::debug!(yes, voters, "pre-vote refused: not campaigning");
            continue;
        }
        refused = 0;
        let above = contact.refused_term.load(Ordering::Relaxed).max(term);
        contact.stamp();
        tracing::info!(
            silent_ms = silent.as_millis() as u64,
            yes,
            above,
            "no leader heard for the lease and a majority would vote: campaigning"
        );
        if campaign(&raft, &mut metrics, above, step).await.is_err() {
            return;
        }
        stats.campaigned();
    }
}

/// Asks each of `others` `ask`, at once, each within `within`; returns how many said yes
/// and the highest term any answered with. A peer that failed is dialled afresh next time.
async fn pre_vote(
    network: &mut crate::network::GrpcNetwork,
    peers: &mut BTreeMap<NodeId, GrpcConnection>,
    others: &[(NodeId, RotaNode)],
    ask: PreVoteAsk,
    within: Duration,
) -> (usize, u64) {
    let Ok(payload) = crate::network::encode(&ask) else {
        return (0, 0);
    };
    let mut asks = tokio::task::JoinSet::new();
    for (id, node) in others {
        let peer = match peers.remove(id) {
            Some(peer) => peer,
            None => network.new_client(*id, node).await,
        };
        let payload = payload.clone();
        let id = *id;
        asks.spawn(async move {
            let mut peer = peer;
            let answer = tokio::time::timeout(within, ask_peer(&mut peer, payload)).await;
            (id, peer, answer.ok().flatten())
        });
    }
    let (mut yes, mut term) = (0, 0);
    while let Some(done) = asks.join_next().await {
        let Ok((id, peer, answer)) = done else {
            continue;
        };
        // A peer that did not answer is dialled afresh next time: the connection may be
        // what failed.
        if let Some(answer) = answer {
            yes += usize::from(answer.granted);
            term = term.max(answer.term);
            peers.insert(id, peer);
        }
    }
    (yes, term)
}

async fn ask_peer(peer: &mut GrpcConnection, payload: Vec<u8>) -> Option<PreVoteAnswer> {
    let mut client = peer.client::<openraft::error::Infallible>().await.ok()?;
    let reply = client
        .pre_vote(tonic::Request::new(RaftMessage { payload }))
        .await
        .ok()?;
    crate::network::decode(reply.get_ref()).ok()
}

/// Asks openraft to elect, again while this node is still a candidate in a term not above
/// `above` (each ask climbs one term), at most `MAX_CLIMB` times.
async fn campaign(
    raft: &Raft,
    metrics: &mut watch::Receiver<crate::RaftMetrics>,
    above: u64,
    wait: Duration,
) -> Result<(), openraft::error::Fatal<NodeId>> {
    for _ in 0..MAX_CLIMB {
        let before = metrics.borrow_and_update().current_term;
        raft.trigger().elect().await?;
        let moved = metrics.wait_for(|m| m.current_term > before || m.state == ServerState::Leader);
        let _ = tokio::time::timeout(wait, moved).await;
        let m = metrics.borrow_and_update();
        if m.state != ServerState::Candidate || m.current_term > above {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_campaign_in_the_order_of_their_ids() {
        let voters = [3, 1, 2];
        assert_eq!(rank(voters.into_iter(), 1, None), Some(0));
        assert_eq!(rank(voters.into_iter(), 3, None), Some(2));
        assert_eq!(
            rank(voters.into_iter(), 3, Some(1)),
            Some(1),
            "the lost leader not counted"
        );
        assert_eq!(rank(voters.into_iter(), 1, Some(1)), Some(0));
        assert_eq!(rank(voters.into_iter(), 4, None), None, "not a voter");
        assert_eq!(
            rank([5].into_iter(), 5, None),
            None,
            "one voter elects itself"
        );
        let (lease, step) = (Duration::from_millis(300), Duration::from_millis(20));
        assert_eq!(patience(lease, step, 0), Duration::from_millis(320));
        assert_eq!(patience(lease, step, 2), Duration::from_millis(360));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_counts_from_the_last_contact() {
        let contact = Contact::new();
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(contact.silence(), Duration::from_millis(100), "since start");
        contact.leader_heard();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(contact.silence(), Duration::from_millis(250));
        contact.vote_granted();
        tokio::time::advance(Duration::from_millis(40)).await;
        assert_eq!(contact.silence(), Duration::from_millis(40));
        contact.vote_refused(7, false);
        assert!(!contact.refused_behind.load(Ordering::Relaxed));
        contact.vote_refused(5, true);
        assert_eq!(contact.refused_term.load(Ordering::Relaxed), 7);
        assert!(contact.refused_behind.load(Ordering::Relaxed));
    }
}
