//! Seeded client workloads over a small, hot set of keys, recording every operation in a
//! shared [`History`].
//!
//! Each client issues a mix of every kind of single-key operation: put, get, get_partial, del,
//! put_if_not_exist (lock-style), cond_put races, atomic_add counters, set, list-free string
//! and map-free set operations, with arguments drawn from the seeded generator. Some clients
//! are synchronous, others keep a window of asynchronous operations outstanding and take
//! them back with `loop`. An operation whose reply is TIMEOUT (or any error that leaves its
//! outcome unknown) is recorded as *unknown outcome*.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperdex::client::{Client, ClientOptions, Deferred};
use hyperdex::rt;
use hyperdex_model::history::{History, OpId};
use hyperdex_model::{parse_space, Model, Operation, Reply, ReturnCode, Value};
use madsim::rand::{thread_rng, Rng};

pub use crate::ops::random_op;
use crate::ops::WIDE;

/// The name of the space every simulated run uses.
pub const SPACE_NAME: &str = "sim";

/// The space every simulated run uses; searches on `n` read its index where a daemon has
/// built it.
pub const SPACE: &str =
    "space sim key k attributes int n, set(int) s, string t subspace t index n \
     create 4 partitions tolerate 1 failure";

/// The model the history starts from: the space, no objects.
pub fn initial_model() -> Model {
    let mut m = Model::new();
    for text in [SPACE, WIDE] {
        let space = parse_space(text).expect("the simulation's spaces parse");
        let r = m.apply(&Operation::AddSpace(space));
        assert_eq!(r, Reply::Success);
    }
    m
}

/// The keys a workload touches: a few hot ones most operations contend on, and more cold
/// ones (so regions hold enough objects that a state transfer takes many windows).
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    pub hot: usize,
    pub cold: usize,
}

impl Keys {
    /// A key: hot seven times in ten.
    pub fn pick(&self) -> Value {
        let mut rng = thread_rng();
        if self.cold == 0 || rng.gen_range(0..10) < 7 {
            Value::string(format!("k{}", rng.gen_range(0..self.hot.max(1))))
        } else {
            Value::string(format!("c{}", rng.gen_range(0..self.cold)))
        }
    }

    /// Every key, hot ones first.
    pub fn all(&self) -> Vec<Value> {
        (0..self.hot)
            .map(|i| Value::string(format!("k{i}")))
            .chain((0..self.cold).map(|i| Value::string(format!("c{i}"))))
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    pub ops_per_client: usize,
    pub keys: Keys,
    /// Outstanding operations for asynchronous clients (every other client).
    pub window: usize,
    pub client: ClientOptions,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            ops_per_client: 200,
            keys: Keys { hot: 6, cold: 48 },
            window: 4,
            client: ClientOptions {
                timeout: Duration::from_secs(8),
                attempt_timeout: Duration::from_millis(800),
                ..ClientOptions::default()
            },
        }
    }
}

/// A history shared by the client tasks, with the run's time origin.
#[derive(Clone)]
pub struct Recorder {
    pub history: Arc<Mutex<History>>,
    pub start: rt::Instant,
    /// Clients other than the reader still issuing operations.
    writers: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    /// A recorder for `clients` clients.
    pub fn new(clients: usize) -> Recorder {
        let writers = (0..clients as u64).filter(|&i| i != READER).count();
        Recorder {
            history: Arc::new(Mutex::new(History::new(initial_model()))),
            start: rt::now(),
            writers: Arc::new(writers.into()),
        }
    }

    /// Whether any client other than the reader still issues operations.
    pub fn writers_running(&self) -> bool {
        self.writers.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    fn writer_done(&self) {
        self.writers
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn now(&self) -> u64 {
        rt::now().duration_since(self.start).as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` on `client` as history client `who`, recorded (see [`Recorder::complete`]).
    pub async fn call(&self, client: &Client, who: u64, op: Operation) -> Reply {
        let id = self.invoke(who, &op);
        let reply = client.call(op).await;
        self.complete(id, reply.clone());
        reply
    }

    pub fn invoke(&self, client: u64, op: &Operation) -> OpId {
        let t = self.now();
        self.lock().invoke(client, op.clone(), t)
    }

    /// Records a reply; errors that leave the outcome unknown are recorded as such.
    pub fn complete(&self, id: OpId, reply: Reply) {
        let t = self.now();
        let unknown = matches!(
            &reply,
            Reply::Error(
                ReturnCode::Timeout
                    | ReturnCode::Reconfigure
                    | ReturnCode::Offline
                    | ReturnCode::CoordFail
                    | ReturnCode::ServerError,
                _
            )
        );
        let mut h = self.lock();
        if unknown {
            h.unknown(id);
        } else {
            h.complete(id, t, reply);
        }
    }
}

/// The client that mostly reads.
pub const READER: u64 = 2;

/// One operation for client `index`: the [`READER`] mostly reads (six in ten are `get`s,
/// three are searches, a third of them through the subspace), so it keeps reading through a
/// head long after the writers have moved on, which is what exposes a head that answers reads
/// it should not; the others issue the whole mix.
fn op_for(index: u64, keys: Keys) -> Operation {
    if index == READER {
        match thread_rng().gen_range(0..10) {
            // Hot keys only: those the writers change most.
            0..=5 => return Operation::get(SPACE_NAME, Keys { cold: 0, ..keys }.pick()),
            6..=8 => return crate::ops::search(),
            _ => {}
        }
    }
    random_op(keys)
}

/// Runs one client: connects (retrying), then issues `opts.ops_per_client` operations,
/// synchronously or with a window of outstanding asynchronous ones.
pub async fn run_client(index: u64, opts: WorkloadOptions, rec: Recorder, coordinator: String) {
    let client = loop {
        match Client::connect_with(&coordinator, opts.client.clone()).await {
            Ok(c) => break c,
            Err(_) => rt::sleep(Duration::from_millis(100)).await,
        }
    };
    let window = if index.is_multiple_of(2) {
        1
    } else {
        opts.window.max(1)
    };
    if index == READER {
        // Reads every 5–20 ms for as long as any writer runs (and at least the usual count).
        let mut done = 0;
        while done < opts.ops_per_client || rec.writers_running() {
            rec.call(&client, index, op_for(index, opts.keys)).await;
            done += 1;
            rt::sleep(Duration::from_millis(thread_rng().gen_range(5..20))).await;
        }
        return;
    }
    let mut outstanding: Vec<(Deferred, OpId)> = Vec::new();
    for _ in 0..opts.ops_per_client {
        let op = op_for(index, opts.keys);
        let id = rec.invoke(index, &op);
        if window == 1 {
            let reply = client.call(op).await;
            rec.complete(id, reply);
            continue;
        }
        outstanding.push((client.start(op), id));
        if outstanding.len() >= window {
            finish_one(&client, &rec, &mut outstanding).await;
        }
    }
    while !outstanding.is_empty() {
        finish_one(&client, &rec, &mut outstanding).await;
    }
    rec.writer_done();
}

/// Takes back whichever outstanding operation finishes next.
async fn finish_one(client: &Client, rec: &Recorder, outstanding: &mut Vec<(Deferred, OpId)>) {
    match client.loop_next().await {
        Some((d, reply)) => {
            if let Some(i) = outstanding.iter().position(|(o, _)| *o == d) {
                let (_, id) = outstanding.remove(i);
                rec.complete(id, reply);
            }
        }
        // Nothing is running any more: whatever is left has an unknown outcome.
        None => {
            for (_, id) in outstanding.drain(..) {
                rec.complete(id, Reply::Error(ReturnCode::Timeout, "lost".into()));
            }
        }
    }
}
