//! Many timers, one task: the transaction layers' timers (RFC 3261 §17: G, H, I, J, L, D) wait
//! in one deadline-ordered map served by a single sleeping task, rather than in a task (and a
//! spawn, and often a wake-up of another worker thread) per transaction. Under thousands of
//! calls a second that spawn was a large part of a refusal's cost.
//!
//! Most transaction timers are never cancelled: what they fire for checks whether it still
//! applies (a Timer G whose final response was acknowledged meanwhile does nothing), which costs
//! less than finding them. A timer that would otherwise wait long after it stopped applying (a
//! client INVITE's Timer B once answered, a dialog's session timer due in minutes) is cancelled
//! by the key it was set with.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A timer set in a [`TimerQueue`]: its deadline and an order among equal deadlines, which
/// together name it for [`TimerQueue::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    deadline: Instant,
    sequence: u64,
}

struct Pending<E> {
    /// Timers by deadline (then by the order they were set), earliest first.
    timers: BTreeMap<TimerKey, E>,
    sequence: u64,
    /// When the serving task wakes next (`None`: not before it is told).
    wakes_at: Option<Instant>,
}

struct Shared<E> {
    pending: Mutex<Pending<E>>,
    /// Wakes the serving task for a deadline earlier than it sleeps to, or to stop.
    wake: Arc<Notify>,
}

impl<E> Drop for Shared<E> {
    fn drop(&mut self) {
        // The serving task holds only a weak reference: told to look, it finds it gone.
        self.wake.notify_one();
    }
}

/// Timers firing events of type `E`, served by one task.
pub(crate) struct TimerQueue<E> {
    shared: Arc<Shared<E>>,
}

impl<E: Send + 'static> TimerQueue<E> {
    /// A queue whose timers call `fire` when due, from its serving task (spawned on the
    /// current tokio runtime; it ends when the queue is dropped).
    pub(crate) fn start(fire: impl Fn(E) + Send + Sync + 'static) -> Self {
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending { timers: BTreeMap::new(), sequence: 0, wakes_at: None }),
            wake: wake.clone(),
        });
        tokio::spawn(serve(Arc::downgrade(&shared), wake, fire));
        Self { shared }
    }

    /// Fires `event` once `delay` has passed.
    pub(crate) fn after(&self, delay: Duration, event: E) -> TimerKey {
        self.at(Instant::now() + delay, event)
    }

    /// Fires `event` at `deadline`.
    pub(crate) fn at(&self, deadline: Instant, event: E) -> TimerKey {
        let mut pending = self.shared.pending.lock();
        let key = TimerKey { deadline, sequence: pending.sequence };
        pending.sequence += 1;
        pending.timers.insert(key, event);
        // Only a deadline before the task's next wake-up needs waking it: under load it is
        // almost never so (most timers wait the same time, in the order they were set).
        if pending.wakes_at.is_none_or(|wakes_at| deadline < wakes_at) {
            pending.wakes_at = Some(deadline);
            drop(pending);
            self.shared.wake.notify_one();
        }
        key
    }

    /// Takes back the timer set as `key` unless it has fired: its event, dropped here, is
    /// what it kept.
    pub(crate) fn cancel(&self, key: TimerKey) -> Option<E> {
        // The task may wake for nothing at the cancelled deadline; that is cheaper than
        // working out its next one here.
        self.shared.pending.lock().timers.remove(&key)
    }

    /// Timers waiting.
    pub(crate) fn len(&self) -> usize {
        self.shared.pending.lock().timers.len()
    }
}

/// Fires what is due, then sleeps until the next deadline or until woken.
async fn serve<E>(shared: Weak<Shared<E>>, wake: Arc<Notify>, fire: impl Fn(E)) {
    let mut due = Vec::new();
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            let mut pending = shared.pending.lock();
            let now = Instant::now();
            while let Some(entry) = pending.timers.first_entry() {
                if entry.key().deadline > now {
                    break;
                }
                due.push(entry.remove());
            }
            let next = pending.timers.first_key_value().map(|(key, _)| key.deadline);
            pending.wakes_at = next;
            next
        };
        // Fired without the lock: what fires may set timers.
        for event in due.drain(..) {
            fire(event);
        }
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events fired, each with the milliseconds since the start.
    type Fired = Arc<Mutex<Vec<(u32, u128)>>>;

    fn recording() -> (TimerQueue<u32>, Fired, Instant) {
        let fired = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let log = fired.clone();
        let queue = TimerQueue::start(move |event| log.lock().push((event, start.elapsed().as_millis())));
        (queue, fired, start)
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_deadline_order_at_their_time() {
        let (queue, fired, start) = recording();
        queue.after(Duration::from_millis(300), 3);
        queue.after(Duration::from_millis(100), 1);
        queue.at(start + Duration::from_millis(200), 2);
        queue.after(Duration::from_millis(100), 11);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // An earlier deadline set while the task sleeps to a later one wakes it.
        queue.after(Duration::from_millis(10), 4);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*fired.lock(), [(1, 100), (11, 100), (4, 160), (2, 200), (3, 300)]);
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_timer_never_fires_and_gives_back_its_event() {
        let (queue, fired, _) = recording();
        queue.after(Duration::from_millis(100), 1);
        let second = queue.after(Duration::from_millis(200), 2);
        let first_of_equals = queue.after(Duration::from_millis(300), 3);
        queue.after(Duration::from_millis(300), 33);
        assert_eq!(queue.cancel(second), Some(2));
        assert_eq!(queue.cancel(first_of_equals), Some(3), "equal deadlines are told apart");
        assert_eq!(queue.len(), 2, "nothing of a cancelled timer stays");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*fired.lock(), [(1, 100), (33, 300)]);
        assert_eq!(queue.cancel(second), None, "cancelled once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_may_set_another_and_the_task_ends_with_the_queue() {
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = fired.clone();
        let again: Arc<Mutex<Option<TimerQueue<u32>>>> = Arc::new(Mutex::new(None));
        let handle = again.clone();
        let queue = TimerQueue::start(move |event: u32| {
            log.lock().push(event);
            if event < 3 {
                if let Some(queue) = handle.lock().as_ref() {
                    queue.after(Duration::from_millis(100), event + 1);
                }
            }
        });
        queue.after(Duration::from_millis(100), 1);
        *again.lock() = Some(TimerQueue { shared: queue.shared.clone() });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*fired.lock(), [1, 2, 3]);
        let weak = Arc::downgrade(&queue.shared);
        drop(queue);
        again.lock().take();
        tokio::task::yield_now().await;
        assert!(weak.upgrade().is_none(), "nothing keeps the timers once the queue is gone");
    }
}
