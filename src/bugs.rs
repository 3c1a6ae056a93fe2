//! Bugs planted on purpose, to prove that the simulation catches them.
//!
//! Each [`Bug`] switches off one safety rule of the protocol. Outside the simulation
//! (`--cfg madsim`) [`planted`] is the constant `false`, so production code carries no trace of
//! them; inside it, the simulation's planted-bug tests switch them on one at a time and check
//! that a seed sweep finds a violation (see `docs/simulation.md`).

/// A safety rule that can be switched off in simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u64)]
pub enum Bug {
    /// The head answers a write as soon as it forwards it, before the tail has it.
    EarlyReply = 1,
    /// Daemons acknowledge writes they have only staged, syncing rarely.
    AckBeforeSync = 2,
    /// A daemon serves clients without checking their configuration version or its lease,
    /// so a head cut off from the coordinator keeps answering with a stale configuration.
    StaleConfig = 4,
    /// The head answers reads from writes still in flight rather than acknowledged ones.
    ReadPending = 8,
    /// Daemons take chain messages from any connection, introduced or not, and from any
    /// member, whatever the configuration says of the sender.
    TrustAnyPeer = 16,
    /// A server that becomes the head of a region by a failover never answers its reads (a
    /// liveness bug: nothing wrong is ever answered).
    StallReads = 32,
    /// The actor sends replies and acknowledgements before syncing the batch they vouch for.
    ReplyBeforeSync = 64,
    /// Coordinators promise (votes, log entries) what they have only staged, syncing one
    /// round in four: a coordinator that loses its disk forgets what it promised.
    CoordinatorEarlyAnswer = 128,
    /// A daemon's lease lasts four times as long as it should, longer than the coordinator
    /// waits before replacing it: a head cut off from the coordinator answers reads after
    /// another server has become head.
    LongLease = 256,
    /// Chain members take a write that skips versions (an earlier one was lost on the way),
    /// storing its effect without the skipped writes' retry records.
    AcceptGap = 512,
    /// Chain members that store writes when they are acknowledged (every member but the
    /// tail) drop each write's retry record: a retry after the head fails is applied again.
    LostRecord = 1024,
    /// The coordinator acknowledges administrative changes as soon as they are committed:
    /// daemons that have not heard of them still answer for a removed space, and a killed
    /// head keeps answering reads while its successor takes writes.
    ChangeNotInForce = 2048,
    /// Searches are answered without checking the lease or the configuration version, so a
    /// server cut off from the coordinator answers them from data that has moved on.
    SearchWithoutLease = 4096,
    /// A joiner trusts the copy of a region it held before the join: a write is judged
    /// against a version that may never have been committed, or is older than the chain's.
    TrustStaleCopy = 8192,
    /// A joiner keeps keys it held before the join that its source does not have (a write
    /// the tail stored whose commit every other member lost in a power failure).
    KeepStaleKeys = 16384,
    /// A write that changes an indexed value removes the old index entry and adds no new one:
    /// a search through the index misses the object.
    IndexMissesUpdate = 32768,
    /// Retry records are dropped one second after their object's newest one, well within
    /// the time a request may still be retried: a late retry of a write is applied again.
    ShortRecordHorizon = 65536,
    /// A store opened after a crash ignores its write-ahead log: writes synced since the last
    /// checkpoint (acknowledged ones among them) are gone.
    LogNotReplayed = 131072,
    /// A background checkpoint empties the old log before the tree holds its writes (the
    /// simulated disk swaps its two steps): a crash in between loses what was synced since
    /// the checkpoint before, acknowledged writes among it.
    LogEmptiedFirst = 262144,
    /// Members other than the tail do not keep the writes they hold pending on disk, yet
    /// acknowledge them (and the head answers) before their commit is synced: a crash loses
    /// an acknowledged write from the member that may be the last copy.
    PendingNotKept = 524288,
    /// A restarted member drops the pending writes it kept on disk instead of committing
    /// them: a write it acknowledged before its commit was synced is gone from its copy.
    PendingNotRecovered = 1048576,
    /// A write that moves an object to another region of a subspace skips that region (the
    /// key tail neither sends it the new values nor waits for it): a search through the
    /// subspace misses the object.
    SubspaceHopSkipped = 2097152,
    /// A subspace region answers a search with the keys of its current values only, not of
    /// values kept for searches in progress: a search misses an object whose move away is
    /// still pending at its key's head.
    CandidatesCurrentOnly = 4194304,
    /// A restarted member of a space with subspaces commits the writes it kept pending and
    /// forgets them, without holding them until the subspaces' regions have them: a write
    /// the chain acknowledged may never reach its subspace regions.
    PromotedNotHeld = 8388608,
    /// A transfer window does not carry the writes its source holds for the subspaces
    /// although it stores them: a joiner that becomes the region's only member never sends
    /// them to the subspaces' regions.
    HeldNotCarried = 16777216,
    /// A key tail that receives a write whose version it already stores acknowledges it at
    /// once, even if it stores the object only from a transfer or a promotion whose
    /// subspace regions never had it.
    StoredNotRechecked = 33554432,
    /// A subspace region ignores an update of the version it holds with other values (a
    /// later write given the version of one the key's chain dropped): it keeps the dropped
    /// write's values as the object's.
    VersionGivenAgainIgnored = 67108864,
    /// A key's head answers reads and searches with a write it holds for the subspaces
    /// although it stores it (a promotion after a restart), before the subspaces' regions
    /// hold it: a search through a subspace then misses an object a read has shown.
    HeldShown = 134217728,
    /// A subspace region keeps one former per version: an older update whose version it
    /// keeps a dropped write's values for is not kept, though a later head gave that version
    /// to the write it shows.
    FormersOnePerVersion = 268435456,
    /// A write staged at a key's head does not take the key's object out of the read cache:
    /// reads answered without the actor go on showing the object from before the write.
    ReadCacheStale = 536870912,
    /// Reads answered from the cache skip the lease: a head cut off from the coordinator
    /// answers them after another server has become head and taken writes.
    CachedReadWithoutLease = 1073741824,
    /// A joiner holds a write to a key it has not verified yet (for the other subspaces)
    /// over the copy it kept from an earlier life: the write commits over that copy, and a
    /// version the copy has and the chain gave to another write hides the chain's.
    HeldOverStaleCopy = 2147483648,
    /// A state transfer sends an object without the retry records kept apart from it: the
    /// joiner, once head, applies a retry of a write it stores again.
    RecordsLeftBehind = 4294967296,
    /// A compaction of a key's retry records keeps only those of the clients the write
    /// touches, as if every other one had expired.
    CompactionDropsLive = 8589934592,
    /// A write that stores a client's first record apart does not count it in its object's
    /// summary: the count falls below what the entries hold, and at 0 they are not read.
    RecordsMiscounted = 17179869184,
    /// A write never compacts a key's records for their number, only for their age: a key
    /// written by many clients within the retry horizon holds more than the limit.
    CountLimitIgnored = 34359738368,
    /// A compaction that finds more records than the limit drops the newest beyond it, not
    /// the oldest: records of the latest writes go (often the compacting write's own), and a
    /// retry of such a write is applied again.
    NewestCutAtLimit = 68719476736,
}

impl Bug {
    pub const ALL: [Bug; 37] = [
        Bug::EarlyReply,
        Bug::AckBeforeSync,
        Bug::StaleConfig,
        Bug::ReadPending,
        Bug::TrustAnyPeer,
        Bug::StallReads,
        Bug::ReplyBeforeSync,
        Bug::CoordinatorEarlyAnswer,
        Bug::LongLease,
        Bug::AcceptGap,
        Bug::LostRecord,
        Bug::ChangeNotInForce,
        Bug::SearchWithoutLease,
        Bug::TrustStaleCopy,
        Bug::KeepStaleKeys,
        Bug::IndexMissesUpdate,
        Bug::ShortRecordHorizon,
        Bug::LogNotReplayed,
        Bug::LogEmptiedFirst,
        Bug::PendingNotKept,
        Bug::PendingNotRecovered,
        Bug::SubspaceHopSkipped,
        Bug::CandidatesCurrentOnly,
        Bug::PromotedNotHeld,
        Bug::HeldNotCarried,
        Bug::StoredNotRechecked,
        Bug::VersionGivenAgainIgnored,
        Bug::HeldShown,
        Bug::FormersOnePerVersion,
        Bug::ReadCacheStale,
        Bug::CachedReadWithoutLease,
        Bug::HeldOverStaleCopy,
        Bug::RecordsLeftBehind,
        Bug::CompactionDropsLive,
        Bug::RecordsMiscounted,
        Bug::CountLimitIgnored,
        Bug::NewestCutAtLimit,
    ];
}

#[cfg(madsim)]
static PLANTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether `bug` is planted (always `false` outside the simulation).
#[inline]
pub fn planted(bug: Bug) -> bool {
    #[cfg(madsim)]
    {
        PLANTED.load(std::sync::atomic::Ordering::Relaxed) & bug as u64 != 0
    }
    #[cfg(not(madsim))]
    {
        let _ = bug;
        false
    }
}

/// Plants exactly the given bugs (simulation only).
#[cfg(madsim)]
pub fn plant(bugs: &[Bug]) {
    let mask = bugs.iter().fold(0, |m, b| m | *b as u64);
    PLANTED.store(mask, std::sync::atomic::Ordering::Relaxed);
}
