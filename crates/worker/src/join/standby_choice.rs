//! Which partitions a worker keeps warm copies of (`join.standby_replicas`,
//! `monitor.standby_replicas`): a pure choice from the group's members and what each holds,
//! the parser of the member assignments the coordinator describes, and the one call that asks
//! the coordinator ([`describe`]).
//!
//! Each partition's standbys are the `replicas` members other than its owner ranked highest
//! for it by rendezvous hashing of (member id, partition): every member computes the same
//! ranking from the same description, and a member joining or leaving moves only the
//! standbys it ranks for, not all of them.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};

/// One member of the join's consumer group, as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: String,
    /// Partitions of the predictions topic it holds.
    pub(crate) partitions: Vec<i32>,
}

/// The partitions this worker keeps standbys of: it owns `mine` of `partitions` partitions
/// in a group of `members`. `None` when this worker is not found among them (no member holds
/// any of `mine`, or it owns nothing and more than one member does), or when a partition has
/// no owner yet (a rebalance in progress): the caller keeps what it has.
pub(crate) fn standby_partitions(
    members: &[Member],
    mine: &BTreeSet<i32>,
    partitions: i32,
    replicas: usize,
) -> Option<BTreeSet<i32>> {
    let me = if mine.is_empty() {
        let mut idle = members.iter().filter(|m| m.partitions.is_empty());
        match (idle.next(), idle.next()) {
            (Some(m), None) => m,
            _ => return None,
        }
    } else {
        members
            .iter()
            .find(|m| m.partitions.iter().any(|p| mine.contains(p)))?
    };
    let mut chosen = BTreeSet::new();
    for p in 0..partitions {
        if mine.contains(&p) {
            continue;
        }
        let owner = members.iter().find(|m| m.partitions.contains(&p))?;
        let mut ranked: Vec<(u64, &str)> = members
            .iter()
            .filter(|m| m.id != owner.id)
            .map(|m| (rank(&m.id, p), m.id.as_str()))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        if ranked.iter().take(replicas).any(|(_, id)| *id == me.id) {
            chosen.insert(p);
        }
    }
    Some(chosen)
}

/// What the coordinator said of a group.
pub(crate) enum Described {
    Members(Vec<Member>),
    /// Not listed, or listed dead or empty: the group speaks KIP-848, whose members the
    /// classic description does not show (rust-rdkafka has no ConsumerGroupDescribe).
    NotListed,
    /// No answer, or an assignment that does not parse.
    Unknown,
}

/// The members of `group` and what each holds of `topic`, as the classic protocol's
/// description (DescribeGroups) gives them.
pub(crate) fn describe<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    topic: &str,
) -> Described {
    let Ok(list) = client.fetch_group_list(Some(group), Duration::from_secs(5)) else {
        return Described::Unknown;
    };
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        return Described::NotListed;
    };
    if g.state() == "Dead" || g.members().is_empty() {
        return Described::NotListed;
    }
    let members: Option<Vec<Member>> = g
        .members()
        .iter()
        .map(|m| {
            let bytes = m.assignment().unwrap_or_default();
            let partitions = if bytes.is_empty() {
                Vec::new()
            } else {
                assigned_partitions(bytes, topic)?
            };
            Some(Member {
                id: m.id().to_string(),
                partitions,
            })
        })
        .collect();
    members.map_or(Described::Unknown, Described::Members)
}

/// The partitions (of `partitions`) a worker that owns `owned` follows, from what the
/// coordinator said: its `replicas` share ([`standby_partitions`]); under KIP-848 (not listed
/// by the classic description) every partition it does not own; `None` when it cannot tell
/// (the caller keeps what it follows).
pub(crate) fn choose(
    described: Described,
    owned: &BTreeSet<i32>,
    partitions: i32,
    replicas: usize,
) -> Option<BTreeSet<i32>> {
    let mut chosen = match described {
        Described::Members(members) => standby_partitions(&members, owned, partitions, replicas)?,
        Described::NotListed => (0..partitions).collect(),
        Described::Unknown => return None,
    };
    chosen.retain(|p| !owned.contains(p));
    Some(chosen)
}

/// Rendezvous weight of `member` for `partition` (seedless xxh3: the same on every worker).
fn rank(member: &str, partition: i32) -> u64 {
    let mut bytes = member.as_bytes().to_vec();
    bytes.extend_from_slice(&partition.to_be_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The partitions of `topic` in a member assignment as the coordinator describes it (Kafka's
/// `ConsumerProtocolAssignment`: version i16, then topics as an i32 count of (i16-length name,
/// i32 count of i32 partitions), then user data). `None` when the bytes do not parse.
pub(crate) fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut r = Reader(bytes);
    r.take(2)?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = r.take(len)?;
        let count = r.i32()?;
        for _ in 0..count.max(0) {
            let p = r.i32()?;
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2)
            .and_then(|b| b.try_into().ok())
            .map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, partitions: &[i32]) -> Member {
        Member {
            id: id.into(),
            partitions: partitions.to_vec(),
        }
    }

    fn group(n: usize, partitions: i32) -> Vec<Member> {
        (0..n)
            .map(|i| {
                let owned: Vec<i32> = (0..partitions)
                    .filter(|p| usize::try_from(*p).unwrap_or(0) % n == i)
                    .collect();
                member(&format!("member-{i}"), &owned)
            })
            .collect()
    }

    #[test]
    fn each_partition_gets_exactly_its_replicas_never_on_its_owner() {
        for n in 2..6 {
            let members = group(n, 8);
            for replicas in 1..n {
                let mut holders = vec![0usize; 8];
                for m in &members {
                    let mine: BTreeSet<i32> = m.partitions.iter().copied().collect();
                    let chosen = standby_partitions(&members, &mine, 8, replicas).expect("found");
                    assert!(chosen.is_disjoint(&mine), "a standby of its own partition");
                    for p in chosen {
                        holders[usize::try_from(p).unwrap_or(0)] += 1;
                    }
                }
                assert!(
                    holders.iter().all(|h| *h == replicas),
                    "{n} {replicas} {holders:?}"
                );
            }
        }
    }

    #[test]
    fn as_many_replicas_as_other_members_keeps_every_other_partition() {
        let members = group(3, 8);
        let mine: BTreeSet<i32> = members[0].partitions.iter().copied().collect();
        let chosen = standby_partitions(&members, &mine, 8, 5).expect("found");
        let others: BTreeSet<i32> = (0..8).filter(|p| !mine.contains(p)).collect();
        assert_eq!(chosen, others);
    }

    #[test]
    fn an_unknown_worker_or_an_unowned_partition_keeps_what_it_has() {
        let members = group(2, 8);
        let stranger: BTreeSet<i32> = [9].into_iter().collect();
        assert_eq!(standby_partitions(&members, &stranger, 8, 1), None);
        let mut partial = group(2, 8);
        partial[1].partitions.retain(|p| *p != 7);
        let mine: BTreeSet<i32> = partial[0].partitions.iter().copied().collect();
        assert_eq!(standby_partitions(&partial, &mine, 8, 1), None);
        // One idle member: that is this worker, owning nothing.
        let mut idle = group(2, 8);
        idle.push(member("member-2", &[]));
        let chosen = standby_partitions(&idle, &BTreeSet::new(), 8, 2).expect("found");
        assert!(!chosen.is_empty());
    }

    #[test]
    fn a_member_leaving_moves_only_the_standbys_it_ranked_for() {
        let members = group(4, 8);
        let without: Vec<Member> = members
            .iter()
            .filter(|m| m.id != "member-3")
            .cloned()
            .map(|mut m| {
                // Its partitions go to member-0.
                if m.id == "member-0" {
                    m.partitions.extend([3, 7]);
                }
                m
            })
            .collect();
        let mine1: BTreeSet<i32> = members[1].partitions.iter().copied().collect();
        let before = standby_partitions(&members, &mine1, 8, 1).expect("found");
        let after = standby_partitions(&without, &mine1, 8, 1).expect("found");
        // member-1 keeps every standby of a partition whose owner did not change.
        for p in &before {
            if ![3, 7].contains(p) {
                assert!(after.contains(p), "{p}: {before:?} → {after:?}");
            }
        }
    }

    #[test]
    fn assignments_parse_and_garbage_does_not() {
        let mut b = vec![0, 3];
        b.extend(2i32.to_be_bytes());
        for (name, parts) in [("preds", &[1i32, 5][..]), ("labels", &[1, 5][..])] {
            b.extend(i16::try_from(name.len()).unwrap_or(0).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend(i32::try_from(parts.len()).unwrap_or(0).to_be_bytes());
            for p in parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        assert_eq!(assigned_partitions(&b, "preds"), Some(vec![1, 5]));
        assert_eq!(assigned_partitions(&b, "other"), Some(vec![]));
        assert_eq!(assigned_partitions(&b[..9], "preds"), None);
        assert_eq!(assigned_partitions(&[], "preds"), None);
    }
}
