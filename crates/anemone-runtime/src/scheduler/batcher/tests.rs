use super::*;

/// `(rows, width)`: fits with items of the same width.
struct Item(Option<usize>, usize);
impl Waiting for Item {
    fn gone(&self) -> bool {
        false
    }
}
impl Batchable for Item {
    fn rows(&self) -> Option<usize> {
        self.0
    }
    fn fits(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}

/// An item bound to a lane (a sequence model's request).
struct Bound(Option<usize>);
impl Waiting for Bound {
    fn gone(&self) -> bool {
        false
    }
}
impl Batchable for Bound {
    fn rows(&self) -> Option<usize> {
        Some(1)
    }
    fn fits(&self, _: &Self) -> bool {
        true
    }
    fn lane(&self) -> Option<usize> {
        self.0
    }
}

#[test]
fn a_batch_for_a_lane_takes_only_the_requests_that_may_run_there() {
    let now = Instant::now();
    let mut q = PriorityQueue::new(QueueSettings::default());
    for lane in [Some(1), None, Some(0), Some(1), Some(0)] {
        assert!(q.push(Bound(lane), 0, None, now).is_ok());
    }
    let p = plan(8, 0, vec![]);
    assert_eq!(
        decide_on(&q, &p, now, Some(0)),
        Some(Decision::Run(vec![1, 2, 4]))
    );
    assert_eq!(
        decide_on(&q, &p, now, Some(1)),
        Some(Decision::Run(vec![0, 1, 3]))
    );
    assert_eq!(
        decide_on(&q, &p, now, Some(2)),
        Some(Decision::Run(vec![1]))
    );
    assert_eq!(
        decide_on(&q, &p, now, None),
        Some(Decision::Run(vec![0, 1, 2, 3, 4]))
    );
    // With a delay, the oldest request that may run there sets the wait.
    let mut q = PriorityQueue::new(QueueSettings::default());
    assert!(q.push(Bound(Some(1)), 0, None, now).is_ok());
    let later = now + Duration::from_millis(3);
    assert!(q.push(Bound(Some(0)), 0, None, later).is_ok());
    assert_eq!(
        decide_on(&q, &plan(8, 5, vec![]), later, Some(0)),
        Some(Decision::WaitUntil(later + Duration::from_millis(5)))
    );
    assert_eq!(decide_on(&q, &plan(8, 5, vec![]), later, Some(3)), None);
}

fn plan(max_rows: usize, delay_ms: u64, preferred: Vec<usize>) -> BatchPlan {
    BatchPlan {
        batching: Some(Batching {
            preferred_batch_sizes: preferred,
            max_queue_delay: Duration::from_millis(delay_ms),
            preserve_ordering: false,
        }),
        max_rows,
        gates: Default::default(),
    }
}

fn queue(items: Vec<Item>, at: Instant) -> PriorityQueue<Item> {
    let mut q = PriorityQueue::new(QueueSettings::default());
    for i in items {
        assert!(q.push(i, 0, None, at).is_ok());
    }
    q
}

#[test]
fn batches_fill_up_to_max_rows_and_never_mix_shapes() {
    let now = Instant::now();
    let q = queue(
        vec![
            Item(Some(1), 4),
            Item(Some(1), 8),
            Item(Some(2), 4),
            Item(Some(2), 4),
        ],
        now,
    );
    // 1 + 2 rows of width 4 fit in 4; the next 2 would not; width 8 never joins.
    assert_eq!(
        decide(&q, &plan(4, 0, vec![]), now),
        Some(Decision::Run(vec![0, 2]))
    );
    assert_eq!(
        decide(&q, &plan(8, 0, vec![]), now),
        Some(Decision::Run(vec![0, 2, 3]))
    );
    let unbatched = BatchPlan {
        batching: None,
        max_rows: 8,
        gates: Default::default(),
    };
    assert_eq!(decide(&q, &unbatched, now), Some(Decision::Run(vec![0])));
}

/// Requests passed over for another shape do not wait out the head's
/// delay when they make a batch that runs at once on its own (a preferred
/// size); the head's batch still waits for more of its shape.
#[test]
fn requests_passed_over_run_when_they_make_a_preferred_size() {
    let now = Instant::now();
    let due = now + Duration::from_millis(5);
    let q = queue(
        vec![
            Item(Some(1), 16),
            Item(Some(3), 16),
            Item(Some(1), 8),
            Item(Some(5), 8),
        ],
        now,
    );
    assert_eq!(
        decide(&q, &plan(8, 5, vec![2, 6]), now),
        Some(Decision::Run(vec![2, 3]))
    );
    // Not a preferred size: both wait, until the earlier of their delays.
    let q = queue(
        vec![Item(Some(1), 16), Item(Some(3), 16), Item(Some(1), 8)],
        now,
    );
    assert_eq!(
        decide(&q, &plan(8, 5, vec![2, 6]), now),
        Some(Decision::WaitUntil(due))
    );
}

#[test]
fn the_batching_gate_off_runs_one_request_at_once() {
    let now = Instant::now();
    let q = queue(vec![Item(Some(1), 4), Item(Some(1), 4)], now);
    let gated = plan(4, 5, vec![]);
    assert_eq!(
        decide(&q, &gated, now),
        Some(Decision::WaitUntil(now + Duration::from_millis(5)))
    );
    gated.gates.set("batching", false).unwrap();
    // Neither waits for the delay nor takes the second request along.
    assert_eq!(decide(&q, &gated, now), Some(Decision::Run(vec![0])));
    gated.gates.set("batching", true).unwrap();
    assert_eq!(
        decide(&q, &gated, now + Duration::from_millis(5)),
        Some(Decision::Run(vec![0, 1]))
    );
}

#[test]
fn the_largest_preferred_size_the_queue_can_form_runs_at_once() {
    let now = Instant::now();
    let ones = |n| queue((0..n).map(|_| Item(Some(1), 4)).collect(), now);
    let due = now + Duration::from_millis(5);
    // 23 queued, preferred 16 and 32: 16 run now, as Triton does (this
    // waited out the delay for 32 before).
    assert_eq!(
        decide(&ones(23), &plan(32, 5, vec![16, 32]), now),
        Some(Decision::Run((0..16).collect()))
    );
    assert_eq!(
        decide(&ones(5), &plan(8, 5, vec![2, 4]), now),
        Some(Decision::Run(vec![0, 1, 2, 3]))
    );
    // Under the smallest preferred size: wait, then run what is there.
    assert_eq!(
        decide(&ones(3), &plan(8, 5, vec![4]), now),
        Some(Decision::WaitUntil(due))
    );
    assert_eq!(
        decide(&ones(3), &plan(8, 5, vec![4]), due),
        Some(Decision::Run(vec![0, 1, 2]))
    );
    // Once the delay has passed, everything that fits runs.
    assert_eq!(
        decide(&ones(23), &plan(32, 5, vec![16]), due),
        Some(Decision::Run((0..23).collect()))
    );
    // Requests of 3 rows and a preferred 4: the batch cannot reach 4
    // without passing it, so 3 rows run at once.
    let threes = queue(vec![Item(Some(3), 4), Item(Some(3), 4)], now);
    assert_eq!(
        decide(&threes, &plan(8, 5, vec![4]), now),
        Some(Decision::Run(vec![0]))
    );
}

#[test]
fn lanes_on_one_backend_never_wait_and_a_faster_busy_backend_is_waited_for() {
    let latency = [100u128, 1_000, 5_000];
    let cost = |l: usize, busy: bool| latency[l] * (1 + u128::from(busy));
    let same = |_: usize| "tract-cuda";
    // The cheapest idle lane.
    assert_eq!(pick_lane(&[false, false, false], cost, same), Some(0));
    assert_eq!(pick_lane(&[true, false, false], cost, same), Some(1));
    // One backend: an idle lane runs even when a busy one is 25x faster.
    assert_eq!(pick_lane(&[true, true, false], cost, same), Some(2));
    assert_eq!(pick_lane(&[true, true, true], cost, same), None);
    // Lane 0 on a GPU, the others on the CPU: the busy GPU (200) beats
    // lane 2 (5,000), so the batch waits for it; at 150 it would not.
    let mixed = |l: usize| if l == 0 { "tract-cuda" } else { "tract-cpu" };
    assert_eq!(pick_lane(&[true, true, false], cost, mixed), None);
    let close = [100u128, 150, 150];
    let cost_close = |l: usize, busy: bool| close[l] * (1 + u128::from(busy));
    assert_eq!(pick_lane(&[true, false, false], cost_close, mixed), Some(1));
}

#[test]
fn the_delay_waits_for_more_unless_full_or_preferred() {
    let now = Instant::now();
    let q = queue(vec![Item(Some(1), 4), Item(Some(1), 4)], now);
    let due = now + Duration::from_millis(5);
    assert_eq!(
        decide(&q, &plan(4, 5, vec![]), now),
        Some(Decision::WaitUntil(due))
    );
    assert_eq!(
        decide(&q, &plan(4, 5, vec![]), due),
        Some(Decision::Run(vec![0, 1]))
    );
    assert_eq!(
        decide(&q, &plan(4, 5, vec![2]), now),
        Some(Decision::Run(vec![0, 1]))
    );
    assert_eq!(
        decide(&q, &plan(2, 5, vec![]), now),
        Some(Decision::Run(vec![0, 1]))
    );
    let empty = queue(vec![], now);
    assert_eq!(decide(&empty, &plan(4, 5, vec![]), now), None);
}
