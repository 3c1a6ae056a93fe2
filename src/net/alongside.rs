//! Two futures in one task: a connection's reading side and, beside it, its writing side.
//!
//! [`alongside`] polls the writing side right after each poll of the reading side, so the
//! replies queued while frames are handled are written as soon as the reading side waits for
//! more, in the same turn of the task: no other task to wake, no hop to another worker. The writing side is polled with a waker of its own
//! ([`Gate`]) that ignores wake-ups arriving while the task is already being polled (they are
//! the reading side's own replies, which the writing side is about to take): passed on, they
//! would make the runtime run the task again at once, waking an idle worker to share the
//! work, for nothing. A wake-up that comes from another thread after the writing side was
//! polled is not lost: the writing side is polled once more before the turn ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use crate::rt;

/// Runs `reading` to its end with `writing` beside it in the same task (see the module's
/// documentation); when `reading` ends, what `writing` still has to do is done by a task of
/// its own. Dropping the returned future before then drops `writing` with it, and what it
/// had queued.
pub async fn alongside<R, W>(reading: R, writing: Pin<Box<W>>) -> R::Output
where
    R: Future,
    W: Future<Output = ()> + Send + 'static,
{
    let mut reading = std::pin::pin!(reading);
    let mut writing = Some(writing);
    let gate = Arc::new(Gate::default());
    let waker = Waker::from(gate.clone());
    let out = std::future::poll_fn(|cx| {
        gate.enter(cx.waker());
        let out = reading.as_mut().poll(cx);
        if out.is_ready() {
            gate.close();
            return out;
        }
        let mut wcx = Context::from_waker(&waker);
        for _ in 0..REPOLLS {
            gate.rearm();
            if let Some(w) = writing.as_mut() {
                if w.as_mut().poll(&mut wcx).is_ready() {
                    writing = None;
                }
            }
            if gate.leave() {
                return out;
            }
        }
        // Woken every time it is polled: let the runtime run the task again later.
        gate.close();
        cx.waker().wake_by_ref();
        out
    })
    .await;
    *gate.task.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if let Some(w) = writing {
        rt::spawn(w);
    }
    out
}

/// How many times in one turn the writing side is polled because it was woken meanwhile.
const REPOLLS: usize = 4;

/// Neither side is being polled: a wake-up goes to the task.
const IDLE: u8 = 0;
/// The task is being polled: a wake-up is noted, not passed on.
const POLLING: u8 = 1;
/// A wake-up was noted during the poll.
const MISSED: u8 = 2;

/// The writing side's waker: passes wake-ups on to the task unless the task is being polled.
#[derive(Default)]
struct Gate {
    state: AtomicU8,
    task: Mutex<Option<Waker>>,
}

impl Gate {
    /// The task is being polled (with `task` as its waker).
    fn enter(&self, task: &Waker) {
        let mut t = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !t.as_ref().is_some_and(|w| w.will_wake(task)) {
            *t = Some(task.clone());
        }
        drop(t);
        self.state.store(POLLING, Ordering::SeqCst);
    }

    /// The writing side is about to be polled: it will see whatever woke it until now.
    fn rearm(&self) {
        self.state.store(POLLING, Ordering::SeqCst);
    }

    /// Ends the poll, so that wake-ups go to the task again, unless one came since the
    /// writing side was last polled (`false`: poll it again).
    fn leave(&self) -> bool {
        self.state
            .compare_exchange(POLLING, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The reading side has ended (the writing side goes to a task of its own, which the
    /// gate no longer wakes), or the poll ends with the task woken anyway.
    fn close(&self) {
        self.state.store(IDLE, Ordering::SeqCst);
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self
            .state
            .compare_exchange(POLLING, MISSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
        if self.state.load(Ordering::SeqCst) == MISSED {
            return;
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(t) = task {
            t.wake();
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::mpsc;

    use super::*;

    /// Counts the wake-ups the task gets.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_once<F: Future>(f: Pin<&mut F>, task: &Waker) -> bool {
        f.poll(&mut Context::from_waker(task)).is_ready()
    }

    /// The writing side of a connection in these tests: takes what is queued, in order.
    fn writer(
        mut rx: mpsc::Receiver<u32>,
        written: Arc<Mutex<Vec<u32>>>,
    ) -> Pin<Box<impl Future<Output = ()> + Send>> {
        Box::pin(async move {
            while let Some(x) = rx.recv().await {
                written.lock().unwrap().push(x);
            }
        })
    }

    #[test]
    fn a_reply_queued_while_reading_is_written_in_the_same_turn_without_a_wake_up() {
        let (tx, rx) = mpsc::channel(8);
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut polls = 0;
        let reading = std::future::poll_fn(|_| {
            polls += 1;
            if polls == 2 {
                tx.try_send(7).unwrap();
            }
            std::task::Poll::<()>::Pending
        });
        let count = Arc::new(Count::default());
        let task = Waker::from(count.clone());
        let mut both = std::pin::pin!(alongside(reading, writer(rx, written.clone())));
        assert!(!poll_once(both.as_mut(), &task));
        assert!(written.lock().unwrap().is_empty());
        // The writing side now waits on its queue; the reading side queues a reply.
        assert!(!poll_once(both.as_mut(), &task));
        assert_eq!(*written.lock().unwrap(), vec![7]);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "the task woke itself");
    }

    #[test]
    fn a_reply_queued_from_elsewhere_wakes_the_task() {
        let (tx, rx) = mpsc::channel(8);
        let written = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(Count::default());
        let task = Waker::from(count.clone());
        let reading = std::future::pending::<()>();
        let mut both = std::pin::pin!(alongside(reading, writer(rx, written.clone())));
        assert!(!poll_once(both.as_mut(), &task));
        tx.try_send(1).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(!poll_once(both.as_mut(), &task));
        assert_eq!(*written.lock().unwrap(), vec![1]);
    }

    #[test]
    fn a_wake_up_while_the_writing_side_is_polled_is_not_lost() {
        // A writing side woken (from another thread, say) after it looked at its queue and
        // before its poll returned: it must be polled again before the task sleeps.
        let polled = Arc::new(AtomicUsize::new(0));
        let p = polled.clone();
        let writing = Box::pin(std::future::poll_fn(move |cx| {
            if p.fetch_add(1, Ordering::SeqCst) == 0 {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(())
        }));
        let count = Arc::new(Count::default());
        let task = Waker::from(count.clone());
        let mut both = std::pin::pin!(alongside(std::future::pending::<()>(), writing));
        assert!(!poll_once(both.as_mut(), &task));
        assert_eq!(polled.load(Ordering::SeqCst), 2);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn replies_after_reading_ends_reach_the_writing_sides_own_task() {
        // The writing side waited (through the gate) before the reading side ended; what is
        // queued afterwards must wake the task it now runs in.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let written = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel(8);
        let w = written.clone();
        runtime.block_on(async move {
            let mut polls = 0;
            let reading = std::future::poll_fn(|cx| {
                polls += 1;
                if polls == 1 {
                    cx.waker().wake_by_ref();
                    return std::task::Poll::Pending;
                }
                std::task::Poll::Ready(())
            });
            alongside(reading, writer(rx, w)).await;
            tx.send(3).await.unwrap();
            drop(tx);
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(*written.lock().unwrap(), vec![3]);
    }

    #[test]
    fn what_is_queued_when_reading_ends_is_still_written() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let written = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel(8);
        let w = written.clone();
        runtime.block_on(async move {
            let reading = async move {
                tx.send(1).await.unwrap();
                tx.send(2).await.unwrap();
            };
            alongside(reading, writer(rx, w)).await;
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(*written.lock().unwrap(), vec![1, 2]);
    }
}
