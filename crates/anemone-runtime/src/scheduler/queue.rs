//! A model's request queue: priority levels, each bounded by its policy,
//! with queue timeouts (reject, or delay behind every request on time) and
//! requests whose client has gone dropped, never handed out.
//!
//! Pure data: the queue thread in `batcher.rs` owns one behind a mutex.

use crate::spec::{QueueSettings, TimeoutAction};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// What the queue needs to know about what it holds.
pub(crate) trait Waiting {
    /// Whether the client stopped waiting (the item is dropped, never handed out).
    fn gone(&self) -> bool;
}

/// One queued item and its queue bookkeeping.
pub(crate) struct Entry<T> {
    /// The item.
    pub(crate) item: T,
    /// When it entered the queue.
    pub(crate) enqueued: Instant,
    /// When it times out in the queue; `None`: never.
    deadline: Option<Instant>,
    /// What a timeout does to it.
    action: TimeoutAction,
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full {
    /// The level whose queue is full.
    pub(crate) level: u32,
    /// Its bound.
    pub(crate) max_queue_size: usize,
}

/// Per-level FIFO queues (level 1, the highest, first), each followed by
/// its requests delayed by a timeout, which go after the level's requests
/// on time (Triton's `timeout_action: DELAY`) and still count toward its
/// `max_queue_size`, as in Triton.
pub(crate) struct PriorityQueue<T> {
    settings: QueueSettings,
    /// The queues that hold items, by [`key`]: only levels in use take room
    /// or time, so a model may have as many levels as Triton's
    /// `priority_levels` allows (a uint64).
    levels: BTreeMap<u64, VecDeque<Entry<T>>>,
    len: usize,
}

/// The key of `level`'s queue, on time or delayed: in serving order.
fn key(level: u32, delayed: bool) -> u64 {
    (u64::from(level) << 1) | u64::from(delayed)
}

/// Whether a queue's key is a level's delayed items.
fn is_delayed(key: u64) -> bool {
    key & 1 == 1
}

impl<T: Waiting> PriorityQueue<T> {
    /// An empty queue with these settings (levels below 1 count as 1).
    pub(crate) fn new(settings: QueueSettings) -> PriorityQueue<T> {
        PriorityQueue {
            settings,
            levels: BTreeMap::new(),
            len: 0,
        }
    }

    /// The level a request asking for `priority` goes to: as in Triton, 0 or a
    /// level beyond the model's levels means the default level.
    pub(crate) fn level(&self, priority: u32) -> u32 {
        self.settings.level(priority)
    }

    /// Queues `item` at `priority` (see [`PriorityQueue::level`]). Its queue
    /// timeout is the level's default, or the request's own `deadline` when
    /// the level allows overrides. Refuses at once when the level is full.
    pub(crate) fn push(
        &mut self,
        item: T,
        priority: u32,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(), (T, Full)> {
        let level = self.level(priority);
        let policy = self.settings.policy(level);
        let waiting: usize = [key(level, false), key(level, true)]
            .iter()
            .map(|k| self.levels.get(k).map_or(0, VecDeque::len))
            .sum();
        if let Some(max) = policy.max_queue_size {
            if waiting >= max {
                return Err((
                    item,
                    Full {
                        level,
                        max_queue_size: max,
                    },
                ));
            }
        }
        // A request's own timeout replaces the level's only to shorten it,
        // as in Triton (or to set one where the level has none).
        let default = policy.default_timeout.map(|t| now + t);
        let deadline = match (deadline, default) {
            (Some(d), Some(t)) if policy.allow_timeout_override => Some(d.min(t)),
            (Some(d), None) if policy.allow_timeout_override => Some(d),
            _ => default,
        };
        let entry = Entry {
            item,
            enqueued: now,
            deadline,
            action: policy.timeout_action,
        };
        (self.levels.entry(key(level, false)).or_default()).push_back(entry);
        self.len += 1;
        Ok(())
    }

    /// Puts back items that already ran and run again (rescheduled
    /// requests: `reschedule.rs`), each at `priority`, at the front of its
    /// level in their order, ahead of the items waiting there: never
    /// refused (they were admitted once) and never timed out.
    pub(crate) fn requeue(&mut self, items: Vec<(T, u32)>, now: Instant) {
        self.len += items.len();
        for (item, priority) in items.into_iter().rev() {
            let level = self.level(priority);
            let action = self.settings.policy(level).timeout_action;
            let entry = Entry {
                item,
                enqueued: now,
                deadline: None,
                action,
            };
            (self.levels.entry(key(level, false)).or_default()).push_front(entry);
        }
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops items whose client has gone, moves timed-out `Delay` items
    /// behind everything, and returns the timed-out `Reject` items for the
    /// caller to fail.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut rejected = Vec::new();
        let mut delayed: Vec<(u64, Entry<T>)> = Vec::new();
        for (&at, queue) in self.levels.iter_mut() {
            let mut kept = VecDeque::with_capacity(queue.len());
            for entry in queue.drain(..) {
                if entry.item.gone() {
                    continue;
                }
                match entry.deadline {
                    Some(d) if d <= now && !is_delayed(at) => match entry.action {
                        TimeoutAction::Reject => rejected.push(entry.item),
                        TimeoutAction::Delay => delayed.push((
                            at | 1,
                            Entry {
                                deadline: None,
                                ..entry
                            },
                        )),
                    },
                    _ => kept.push_back(entry),
                }
            }
            *queue = kept;
        }
        for (at, entry) in delayed {
            self.levels.entry(at).or_default().push_back(entry);
        }
        self.levels.retain(|_, queue| !queue.is_empty());
        self.len = self.levels.values().map(VecDeque::len).sum();
        rejected
    }

    /// The earliest queue timeout still ahead, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.levels
            .values()
            .flat_map(|q| q.iter().filter_map(|e| e.deadline))
            .min()
    }

    /// The items in the order they are served: level 1 first, FIFO within a
    /// level, a level's delayed items after its items on time.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry<T>> {
        self.levels.values().flat_map(|q| q.iter())
    }

    /// Removes the items at these positions of [`PriorityQueue::iter`]'s
    /// order (ascending), returning them in that order.
    pub(crate) fn take(&mut self, positions: &[usize]) -> Vec<Entry<T>> {
        let mut wanted = positions.iter().copied().peekable();
        let mut taken = Vec::with_capacity(positions.len());
        let mut index = 0;
        for queue in self.levels.values_mut() {
            let mut kept = VecDeque::with_capacity(queue.len());
            for entry in queue.drain(..) {
                if wanted.next_if_eq(&index).is_some() {
                    taken.push(entry);
                } else {
                    kept.push_back(entry);
                }
                index += 1;
            }
            *queue = kept;
        }
        self.levels.retain(|_, queue| !queue.is_empty());
        self.len -= taken.len();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::QueuePolicy;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    struct Item(u32, Arc<AtomicBool>);
    impl Waiting for Item {
        fn gone(&self) -> bool {
            self.1.load(Ordering::SeqCst)
        }
    }
    fn item(n: u32) -> Item {
        Item(n, Arc::default())
    }
    fn order(q: &PriorityQueue<Item>) -> Vec<u32> {
        q.iter().map(|e| e.item.0).collect()
    }
    fn settings(levels: u32) -> QueueSettings {
        QueueSettings {
            priority_levels: levels,
            default_priority: levels,
            ..QueueSettings::default()
        }
    }

    #[test]
    fn higher_priority_overtakes_and_levels_are_fifo() {
        let mut q = PriorityQueue::new(settings(3));
        let now = Instant::now();
        for (n, p) in [(1, 3), (2, 0), (3, 1), (4, 2), (5, 1), (6, 9)] {
            assert!(q.push(item(n), p, None, now).is_ok());
        }
        // 0 and 9 are out of range: the default level (3).
        assert_eq!(order(&q), vec![3, 5, 4, 1, 2, 6]);
        let taken: Vec<u32> = q.take(&[0, 2]).into_iter().map(|e| e.item.0).collect();
        assert_eq!(taken, vec![3, 4]);
        assert_eq!(order(&q), vec![5, 1, 2, 6]);
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn requeued_items_go_first_in_their_level_even_when_it_is_full() {
        let mut q = PriorityQueue::new(QueueSettings {
            default_policy: QueuePolicy {
                max_queue_size: Some(2),
                default_timeout: Some(Duration::ZERO),
                ..QueuePolicy::default()
            },
            ..settings(2)
        });
        let now = Instant::now();
        for (n, p) in [(1, 2), (2, 1), (3, 2)] {
            assert!(q.push(item(n), p, None, now).is_ok());
        }
        q.requeue(vec![(item(7), 2), (item(8), 2), (item(9), 1)], now);
        assert_eq!(order(&q), vec![9, 2, 7, 8, 1, 3]);
        assert_eq!(q.len(), 6);
        // Those waiting time out at once (a timeout of 0); the requeued stay.
        let rejected: Vec<u32> = q.expire(now).into_iter().map(|i| i.0).collect();
        assert_eq!(rejected, vec![2, 1, 3]);
        assert_eq!(order(&q), vec![9, 7, 8]);
    }

    #[test]
    fn billions_of_levels_take_room_only_for_those_in_use() {
        // It allocated a deque per level up front: 4e9 levels aborted the
        // process (128 GB asked for).
        let mut q = PriorityQueue::new(settings(4_000_000_000));
        let now = Instant::now();
        for (n, p) in [(1, 3_999_999_999), (2, 7), (3, 0), (4, 7)] {
            assert!(q.push(item(n), p, None, now).is_ok());
        }
        // 0 is the default level, the last.
        assert_eq!(order(&q), vec![2, 4, 1, 3]);
        assert_eq!(q.levels.len(), 3);
        let taken: Vec<u32> = q.take(&[0, 1]).into_iter().map(|e| e.item.0).collect();
        assert_eq!((taken, q.levels.len(), q.len()), (vec![2, 4], 2, 2));
    }

    #[test]
    fn a_full_level_refuses_and_others_still_take() {
        let mut s = settings(2);
        s.priority_policies.insert(
            1,
            QueuePolicy {
                max_queue_size: Some(1),
                ..QueuePolicy::default()
            },
        );
        let mut q = PriorityQueue::new(s);
        let now = Instant::now();
        assert!(q.push(item(1), 1, None, now).is_ok());
        let (back, full) = q.push(item(2), 1, None, now).unwrap_err();
        assert_eq!((back.0, full.level, full.max_queue_size), (2, 1, 1));
        assert!(q.push(item(3), 2, None, now).is_ok());
        assert_eq!(order(&q), vec![1, 3]);
    }

    #[test]
    fn timeouts_reject_or_delay_and_gone_clients_are_dropped() {
        let mut s = settings(2);
        s.default_policy.default_timeout = Some(Duration::from_millis(10));
        s.priority_policies.insert(
            1,
            QueuePolicy {
                default_timeout: Some(Duration::from_millis(10)),
                timeout_action: TimeoutAction::Delay,
                ..QueuePolicy::default()
            },
        );
        let mut q = PriorityQueue::new(s);
        let now = Instant::now();
        q.push(item(1), 1, None, now).ok(); // delays
        q.push(item(2), 2, None, now).ok(); // rejects
        let gone = item(3);
        let flag = gone.1.clone();
        q.push(gone, 2, None, now).ok();
        q.push(item(4), 1, None, now + Duration::from_millis(8))
            .ok();
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(10)));
        flag.store(true, Ordering::SeqCst);
        let rejected: Vec<u32> = q
            .expire(now + Duration::from_millis(11))
            .into_iter()
            .map(|i| i.0)
            .collect();
        assert_eq!(rejected, vec![2]);
        // 1 timed out and waits behind 4, which is still on time.
        assert_eq!(order(&q), vec![4, 1]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn delayed_requests_stay_in_their_level_and_count_toward_its_bound() {
        // As read off tritonserver 2.51: a level-1 request delayed by its
        // timeout still goes before level 2 (it went behind every level),
        // and a level full of delayed requests refuses the next one (they
        // did not count).
        let mut s = settings(2);
        let delay = QueuePolicy {
            max_queue_size: Some(2),
            default_timeout: Some(Duration::from_millis(10)),
            timeout_action: TimeoutAction::Delay,
            ..QueuePolicy::default()
        };
        s.default_policy = delay.clone();
        let mut q = PriorityQueue::new(s);
        let now = Instant::now();
        q.push(item(1), 1, None, now).ok();
        q.push(item(2), 1, None, now).ok();
        let later = now + Duration::from_millis(11);
        q.expire(later);
        q.push(item(3), 2, None, later).ok();
        assert_eq!(order(&q), vec![1, 2, 3]);
        let (back, full) = q.push(item(4), 1, None, later).unwrap_err();
        assert_eq!((back.0, full.level), (4, 1));
        // A level's request on time goes before its delayed ones.
        let mut q = PriorityQueue::new(settings_with(delay));
        q.push(item(5), 1, None, now).ok();
        q.expire(later);
        q.push(item(6), 1, None, later).ok();
        assert_eq!(order(&q), vec![6, 5]);
    }

    fn settings_with(policy: QueuePolicy) -> QueueSettings {
        QueueSettings {
            default_policy: policy,
            ..settings(1)
        }
    }

    #[test]
    fn a_request_timeout_only_shortens_the_levels() {
        // As in Triton: a longer request timeout leaves the level's.
        let mut s = settings(1);
        s.default_policy.default_timeout = Some(Duration::from_millis(300));
        s.default_policy.allow_timeout_override = true;
        let now = Instant::now();
        let mut q = PriorityQueue::new(s);
        q.push(item(1), 0, Some(now + Duration::from_secs(5)), now)
            .ok();
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(300)));
        q.push(item(2), 0, Some(now + Duration::from_millis(50)), now)
            .ok();
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(50)));
    }

    #[test]
    fn a_request_timeout_counts_only_where_overrides_are_allowed() {
        let mut s = settings(1);
        s.default_policy.default_timeout = Some(Duration::from_secs(60));
        let now = Instant::now();
        let mut q = PriorityQueue::new(s.clone());
        q.push(item(1), 0, Some(now + Duration::from_millis(1)), now)
            .ok();
        assert_eq!(q.next_deadline(), Some(now + Duration::from_secs(60)));
        s.default_policy.allow_timeout_override = true;
        let mut q = PriorityQueue::new(s);
        q.push(item(1), 0, Some(now + Duration::from_millis(1)), now)
            .ok();
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(1)));
    }
}
