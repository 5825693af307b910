use proptest::prelude::*;

use super::*;

type P = Pairing<u32, u32>;

fn paired(events: &[PairEvent<u32, u32>]) -> Vec<(String, u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            PairEvent::Paired {
                id,
                request,
                response,
                ..
            } => Some((id.clone(), *request, *response)),
            _ => None,
        })
        .collect()
}

#[test]
fn request_and_response_pair_in_either_order() {
    let mut p = P::new(1_000);
    assert!(p.offer("a", Half::Request(1), 10).is_empty());
    assert_eq!(
        paired(&p.offer("a", Half::Response(2), 12)),
        vec![("a".into(), 1, 2)]
    );
    assert!(p.offer("b", Half::Response(4), 20).is_empty());
    let e = p.offer("b", Half::Request(3), 21);
    assert_eq!(
        e,
        vec![PairEvent::Paired {
            id: "b".into(),
            request: 3,
            response: 4,
            request_time: 21,
            response_time: 20
        }]
    );
    assert_eq!(p.counters().paired, 2);
    assert_eq!(p.pending(), 0);
}

#[test]
fn a_half_expires_once_the_watermark_passes_its_time_plus_the_wait() {
    let mut p = P::new(100);
    p.offer("a", Half::Request(1), 0);
    assert!(
        p.offer("x", Half::Request(9), 100).is_empty(),
        "deadline 100 is not passed at 100"
    );
    let e = p.offer("y", Half::Request(9), 101);
    assert_eq!(
        e,
        vec![PairEvent::Expired {
            id: "a".into(),
            half: Half::Request(1),
            time: 0
        }]
    );
    // The response that comes after the expiry is unpaired too: it is already too old.
    let e = p.offer("a", Half::Response(2), 0);
    assert!(matches!(e[..], [PairEvent::Expired { .. }]));
}

#[test]
fn first_half_wins_and_redeliveries_within_the_wait_are_duplicates() {
    let mut p = P::new(100);
    p.offer("a", Half::Request(1), 0);
    assert!(matches!(
        p.offer("a", Half::Request(5), 1)[..],
        [PairEvent::Duplicate { .. }]
    ));
    assert_eq!(
        paired(&p.offer("a", Half::Response(2), 2)),
        vec![("a".into(), 1, 2)]
    );
    assert!(matches!(
        p.offer("a", Half::Response(3), 50)[..],
        [PairEvent::Duplicate { .. }]
    ));
    // After the wait the id is forgotten: a new half waits again (and expires unpaired).
    p.offer("z", Half::Request(0), 500);
    assert!(p.offer("a", Half::Request(7), 450).is_empty());
    assert_eq!(p.drain().len(), 2);
    assert_eq!(p.counters().accounted(), p.counters().halves_in);
}

#[test]
fn waiting_halves_offered_again_with_the_watermark_expire_as_they_would_have() {
    let mut p = P::new(100);
    p.offer("a", Half::Request(1), 0);
    p.offer("b", Half::Request(2), 80);
    // Rebuilt from the waiting halves only, then the watermark restored: "a" expires at the
    // same next offer as in the uninterrupted state.
    let mut q = P::new(100);
    q.offer("a", Half::Request(1), 0);
    assert!(q.advance(80).is_empty());
    for s in [&mut p, &mut q] {
        let e = s.offer("c", Half::Request(3), 101);
        assert!(
            matches!(&e[..], [PairEvent::Expired { id, .. }] if id == "a"),
            "{e:?}"
        );
    }
    assert_eq!(q.advance(10).len(), 0, "the watermark never goes back");
}

#[derive(Debug, Clone)]
enum Step {
    Offer { id: u8, request: bool, time: i64 },
    DeadLetter,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        9 => (0u8..12, any::<bool>(), 0i64..2_000).prop_map(|(id, request, time)| Step::Offer { id, request, time }),
        1 => Just(Step::DeadLetter),
    ]
}

proptest! {
    /// Every half offered or dead-lettered comes out exactly once: in one event (a pair carries
    /// two halves) or as dead-lettered, and the counters say the same at every step.
    #[test]
    fn every_half_is_accounted_exactly_once(
        steps in proptest::collection::vec(step(), 0..300),
        wait in 1i64..500,
    ) {
        let mut p: Pairing<usize, usize> = Pairing::new(wait);
        let mut seen = vec![0u32; steps.len()];
        let mut dead = 0u64;
        let note = |events: Vec<PairEvent<usize, usize>>, seen: &mut Vec<u32>| {
            for e in events {
                match e {
                    PairEvent::Paired { request, response, .. } => {
                        seen[request] += 1;
                        seen[response] += 1;
                    }
                    PairEvent::Expired { half, .. } | PairEvent::Duplicate { half, .. } => {
                        let (Half::Request(i) | Half::Response(i)) = half;
                        seen[i] += 1;
                    }
                }
            }
        };
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Offer { id, request, time } => {
                    let half = if *request { Half::Request(i) } else { Half::Response(i) };
                    let events = p.offer(&id.to_string(), half, *time);
                    note(events, &mut seen);
                }
                Step::DeadLetter => {
                    p.count_dead_letter_step(&mut dead);
                    seen[i] += 1;
                }
            }
            let c = p.counters();
            prop_assert_eq!(c.accounted() + p.pending() as u64, c.halves_in);
        }
        let events = p.drain();
        note(events, &mut seen);
        prop_assert!(seen.iter().all(|&n| n == 1), "{:?}", seen);
        let c = p.counters();
        prop_assert_eq!(c.accounted(), c.halves_in);
        prop_assert_eq!(c.halves_in, steps.len() as u64);
        prop_assert_eq!(c.dead_lettered, dead);
        prop_assert_eq!(p.pending(), 0);
    }

    /// A request and a response of one id within the wait of each other always pair.
    #[test]
    fn halves_within_the_wait_always_pair(t in 0i64..10_000, gap in 0i64..100, response_first in any::<bool>()) {
        let mut p: Pairing<u8, u8> = Pairing::new(100);
        let (first, second) = if response_first {
            (Half::Response(2), Half::Request(1))
        } else {
            (Half::Request(1), Half::Response(2))
        };
        prop_assert!(p.offer("id", first, t).is_empty());
        let e = p.offer("id", second, t + gap);
        let ok = matches!(e[..], [PairEvent::Paired { request: 1, response: 2, .. }]);
        prop_assert!(ok, "{:?}", e);
    }
}

impl<Q, R> Pairing<Q, R> {
    fn count_dead_letter_step(&mut self, dead: &mut u64) {
        self.count_dead_lettered();
        *dead += 1;
    }
}
