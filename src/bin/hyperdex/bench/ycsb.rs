//! YCSB's core workloads and key distributions, as the benchmark uses them.
//!
//! Workloads (operation mix, default distribution), as YCSB defines them:
//! A 50% read / 50% update (zipfian); B 95% read / 5% update (zipfian); C 100% read
//! (zipfian); D 95% read / 5% insert (latest); E 95% scan / 5% insert (zipfian, scans of up
//! to 100 records); F 50% read / 50% read-modify-write (zipfian).
//!
//! Distributions: `uniform`; `zipfian`, YCSB's *scrambled* zipfian with constant 0.99 (Gray et
//! al.'s generator over the item count, then FNV-hashed so popular keys are spread over the
//! key space); `latest`, zipfian over insertion order, most recent first.

use hyperdex::config::fnv1a;

/// One operation of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum YcsbOp {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

impl YcsbOp {
    pub fn name(self) -> &'static str {
        match self {
            YcsbOp::Read => "read",
            YcsbOp::Update => "update",
            YcsbOp::Insert => "insert",
            YcsbOp::Scan => "scan",
            YcsbOp::ReadModifyWrite => "rmw",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    Uniform,
    Zipfian,
    Latest,
}

/// The operation mix of a core workload: (operation, weight in percent).
pub fn mix(workload: char) -> Option<(&'static [(YcsbOp, u32)], Distribution)> {
    use YcsbOp::*;
    Some(match workload.to_ascii_lowercase() {
        'a' => (&[(Read, 50), (Update, 50)], Distribution::Zipfian),
        'b' => (&[(Read, 95), (Update, 5)], Distribution::Zipfian),
        'c' => (&[(Read, 100)], Distribution::Zipfian),
        'd' => (&[(Read, 95), (Insert, 5)], Distribution::Latest),
        'e' => (&[(Scan, 95), (Insert, 5)], Distribution::Zipfian),
        'f' => (&[(Read, 50), (ReadModifyWrite, 50)], Distribution::Zipfian),
        _ => return None,
    })
}

/// A small, fast, seedable generator (xorshift64*), one per client.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Gray et al.'s zipfian generator over `[0, items)` with constant `theta`.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub const THETA: f64 = 0.99;

    pub fn new(items: u64) -> Zipfian {
        let items = items.max(1);
        let theta = Zipfian::THETA;
        let zetan = zeta(items, theta);
        let zeta2 = zeta(2, theta);
        Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    /// The next rank: 0 is the most popular.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let r = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.items - 1)
    }
}

/// Picks record numbers in `[0, items)` by a distribution.
#[derive(Clone, Debug)]
pub struct KeyChooser {
    dist: Distribution,
    zipf: Zipfian,
}

impl KeyChooser {
    pub fn new(dist: Distribution, items: u64) -> KeyChooser {
        KeyChooser {
            dist,
            zipf: Zipfian::new(items),
        }
    }

    /// A record among the first `items` (`items` grows with inserts).
    pub fn next(&self, rng: &mut Rng, items: u64) -> u64 {
        let items = items.max(1);
        match self.dist {
            Distribution::Uniform => rng.below(items),
            // Scrambled: hash the rank so the popular records are spread out.
            Distribution::Zipfian => fnv1a(&self.zipf.next(rng).to_le_bytes()) % items,
            // Latest: rank 0 is the newest record.
            Distribution::Latest => items - 1 - self.zipf.next(rng).min(items - 1),
        }
    }
}

/// Picks the next operation of a mix.
pub fn pick(mix: &[(YcsbOp, u32)], rng: &mut Rng) -> YcsbOp {
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut r = rng.below(u64::from(total.max(1))) as u32;
    for (op, w) in mix {
        if r < *w {
            return *op;
        }
        r -= w;
    }
    mix.first().map_or(YcsbOp::Read, |(op, _)| *op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_favours_low_ranks() {
        let z = Zipfian::new(1000);
        let mut rng = Rng::new(7);
        let mut top = 0;
        for _ in 0..10_000 {
            let r = z.next(&mut rng);
            assert!(r < 1000);
            if r < 10 {
                top += 1;
            }
        }
        // With theta 0.99 the 10 most popular of 1,000 items draw about 39% of the picks.
        assert!((3000..5000).contains(&top), "{top}");
    }

    #[test]
    fn mixes_follow_their_weights() {
        let (m, d) = mix('b').unwrap();
        assert_eq!(d, Distribution::Zipfian);
        let mut rng = Rng::new(1);
        let reads = (0..10_000)
            .filter(|_| pick(m, &mut rng) == YcsbOp::Read)
            .count();
        assert!((9300..9700).contains(&reads), "{reads}");
        assert!(mix('z').is_none());
    }

    #[test]
    fn latest_prefers_recent_records() {
        let k = KeyChooser::new(Distribution::Latest, 1000);
        let mut rng = Rng::new(3);
        let recent = (0..1000).filter(|_| k.next(&mut rng, 1000) >= 990).count();
        assert!(recent > 300, "{recent}");
    }
}
