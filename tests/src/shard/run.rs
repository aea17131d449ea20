//! One run of the sharding simulation: parameters in, figures out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use super::{pick, unit, zipf, Rng};

/// What a run simulates.
#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    pub models: usize,
    pub regions: usize,
    pub nodes: usize,
    pub accounts: usize,
    /// Requests arriving per millisecond (100: 100k requests/s).
    pub per_ms: usize,
    pub duration_ms: u64,
    /// One hop between two shards' writers (a record on one log read by the other).
    pub hop_ms: u64,
    /// A lease unused this long goes back to the home shard.
    pub idle_ms: u64,
    /// Seconds of an account's expected spending its deposit covers (some run dry: refused).
    pub deposit_seconds: u64,
    /// How many typical prices a lease asks for.
    pub lease_prices: u64,
}

impl Params {
    /// The design's target: a million nodes, 100k requests/s, 16 models in 4 regions.
    pub fn internet_scale(duration_ms: u64) -> Params {
        Params {
            seed: 42,
            models: 16,
            regions: 4,
            nodes: 1_000_000,
            accounts: 100_000,
            per_ms: 100,
            duration_ms,
            hop_ms: 5,
            idle_ms: 10_000,
            deposit_seconds: 120,
            lease_prices: 20,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub shards: usize,
    pub requests: u64,
    pub accepted: u64,
    /// Refused because the account's whole deposit was spent or reserved.
    pub refused_no_credit: u64,
    /// Reserved from a lease the shard already held (or the home's own balance): no message.
    pub local: u64,
    pub lease_requests: u64,
    pub grants: u64,
    pub recalls: u64,
    pub returns: u64,
    /// Requests that waited for a lease, and the waits' percentiles in ms.
    pub waited: u64,
    pub wait_p50_ms: u64,
    pub wait_p99_ms: u64,
    /// Requests per second of the busiest shard and of the mean shard.
    pub max_shard_rps: f64,
    pub mean_shard_rps: f64,
    /// Of the busiest shard: nodes and the peak fraction of them busy.
    pub max_shard_nodes: usize,
    pub peak_busy_fraction: f64,
    /// Conservation was checked this many times (every simulated second and at the end).
    pub conservation_checks: u64,
    /// Requests still waiting for a lease when the run ended.
    pub still_waiting: u64,
}

impl Figures {
    /// Cross-shard messages (lease requests, grants, recalls, returns) per request.
    pub fn messages_per_request(&self) -> f64 {
        (self.lease_requests + self.grants + self.recalls + self.returns) as f64
            / self.requests.max(1) as f64
    }
}

/// A request waiting for its shard to hold enough of its account's credit.
struct Waiting {
    since: u64,
    price: u64,
}

/// Credit in motion between two shards' logs.
enum Message {
    /// Shard `to` asks the home of `account` for at least `need`.
    LeaseRequest {
        to: usize,
        account: usize,
        need: u64,
        recalled: bool,
        /// Asked ahead of need, while the lease still serves: never recalls, never refuses.
        ahead: bool,
    },
    /// The home granted `amount` to shard `to`.
    Grant {
        to: usize,
        account: usize,
        amount: u64,
    },
    /// The home asks shard `from` to give its lease back.
    Recall { from: usize, account: usize },
    /// A lease goes back to the home.
    Return { account: usize, amount: u64 },
}

struct World {
    p: Params,
    shards: usize,
    home_available: Vec<u64>,
    deposit: Vec<u64>,
    spent: Vec<u64>,
    in_flight: Vec<u64>,
    /// `lease[shard][account]` and when it was last used.
    lease: Vec<Vec<u64>>,
    used_at: Vec<Vec<u64>>,
    waiting: HashMap<(usize, usize), VecDeque<Waiting>>,
    /// Leases asked for ahead of need and not granted yet.
    refilling: HashSet<(usize, usize)>,
    messages: BinaryHeap<Reverse<(u64, u64)>>,
    bodies: HashMap<u64, Message>,
    next_message: u64,
    f: Figures,
    waits: Vec<u64>,
}

impl World {
    fn home(&self, account: usize) -> usize {
        (account.wrapping_mul(0x9e37_79b9) >> 7) % self.shards
    }

    fn send(&mut self, at: u64, m: Message) {
        let id = self.next_message;
        self.next_message += 1;
        self.bodies.insert(id, m);
        self.messages.push(Reverse((at, id)));
    }

    /// Reserves `price` of `account` on `shard` from what it holds there; false if too little.
    fn reserve_local(&mut self, shard: usize, account: usize, price: u64, now: u64) -> bool {
        let held = if shard == self.home(account) {
            &mut self.home_available[account]
        } else {
            &mut self.lease[shard][account]
        };
        if *held < price {
            return false;
        }
        *held -= price;
        self.spent[account] += price;
        self.used_at[shard][account] = now;
        true
    }

    fn deliver(&mut self, now: u64, m: Message) {
        match m {
            Message::LeaseRequest {
                to,
                account,
                need,
                recalled,
                ahead,
            } => {
                let home = self.home(account);
                let available = self.home_available[account];
                if available >= need && to == home {
                    // The home spends from its own balance: no lease.
                    self.serve_waiting(to, account, now);
                } else if available >= need {
                    let want = need.max(self.chunk());
                    let amount = want.min(available);
                    self.home_available[account] -= amount;
                    self.in_flight[account] += amount;
                    self.f.grants += 1;
                    self.send(
                        now + self.p.hop_ms,
                        Message::Grant {
                            to,
                            account,
                            amount,
                        },
                    );
                } else if ahead {
                    self.refilling.remove(&(to, account));
                } else if !recalled {
                    // Too little at home: call the other shards' leases back, then try again.
                    for s in (0..self.shards).filter(|&s| s != to && s != home) {
                        if self.lease[s][account] > 0 {
                            self.f.recalls += 1;
                            self.send(now + self.p.hop_ms, Message::Recall { from: s, account });
                        }
                    }
                    let again = Message::LeaseRequest {
                        to,
                        account,
                        need,
                        recalled: true,
                        ahead: false,
                    };
                    self.send(now + 2 * self.p.hop_ms + 1, again);
                } else {
                    // Everything came back and it is still too little: the deposit is spent.
                    let refused = self.waiting.remove(&(to, account)).map_or(0, |w| w.len());
                    self.f.refused_no_credit += refused as u64;
                }
            }
            Message::Grant {
                to,
                account,
                amount,
            } => {
                self.in_flight[account] -= amount;
                self.refilling.remove(&(to, account));
                self.lease[to][account] += amount;
                self.used_at[to][account] = now;
                self.serve_waiting(to, account, now);
            }
            Message::Recall { from, account } => self.give_back(from, account, now),
            Message::Return { account, amount } => {
                self.in_flight[account] -= amount;
                self.home_available[account] += amount;
            }
        }
    }

    /// A request that finds too little of its account's credit on its shard waits, and the
    /// shard asks the home for a lease (at the home itself, the home recalls leases at once).
    fn wait_for_lease(&mut self, shard: usize, account: usize, price: u64, now: u64) {
        let mut queue = VecDeque::new();
        queue.push_back(Waiting { since: now, price });
        self.waiting.insert((shard, account), queue);
        self.f.lease_requests += 1;
        let m = Message::LeaseRequest {
            to: shard,
            account,
            need: price,
            recalled: false,
            ahead: false,
        };
        if shard == self.home(account) {
            self.deliver(now, m);
        } else {
            self.send(now + self.p.hop_ms, m);
        }
    }

    /// A shard whose lease has fallen under half a lease asks for the next one while it still
    /// serves from this one, so a busy account's requests do not wait for it.
    fn refill_ahead(&mut self, shard: usize, account: usize, now: u64) {
        if shard == self.home(account)
            || self.lease[shard][account] >= self.chunk() / 2
            || !self.refilling.insert((shard, account))
        {
            return;
        }
        self.f.lease_requests += 1;
        let m = Message::LeaseRequest {
            to: shard,
            account,
            need: TYPICAL_PRICE,
            recalled: false,
            ahead: true,
        };
        self.send(now + self.p.hop_ms, m);
    }

    fn give_back(&mut self, shard: usize, account: usize, now: u64) {
        let amount = std::mem::take(&mut self.lease[shard][account]);
        if amount > 0 {
            self.in_flight[account] += amount;
            self.f.returns += 1;
            self.send(now + self.p.hop_ms, Message::Return { account, amount });
        }
    }

    /// A lease's size: enough for `lease_prices` typical requests.
    fn chunk(&self) -> u64 {
        self.p.lease_prices * TYPICAL_PRICE
    }

    fn serve_waiting(&mut self, shard: usize, account: usize, now: u64) {
        let Some(mut queue) = self.waiting.remove(&(shard, account)) else {
            return;
        };
        while let Some(w) = queue.front() {
            if !self.reserve_local(shard, account, w.price, now) {
                break;
            }
            self.waits.push(now - w.since);
            self.f.accepted += 1;
            queue.pop_front();
        }
        if let Some(w) = queue.front() {
            // Still short: ask again for what the first one needs.
            let need = w.price;
            self.f.lease_requests += 1;
            let m = Message::LeaseRequest {
                to: shard,
                account,
                need,
                recalled: false,
                ahead: false,
            };
            self.send(now + self.p.hop_ms, m);
            self.waiting.insert((shard, account), queue);
        }
    }

    /// Home balances, credit in flight, leases and spending add up to the deposits.
    fn check_conservation(&mut self) {
        for a in 0..self.deposit.len() {
            let leased: u64 = self.lease.iter().map(|l| l[a]).sum();
            let total = self.home_available[a] + self.in_flight[a] + leased + self.spent[a];
            assert_eq!(
                total, self.deposit[a],
                "account {a}: credit created or lost"
            );
        }
        self.f.conservation_checks += 1;
    }
}

const TYPICAL_PRICE: u64 = 1_000 + 10 * 288;

/// Runs the simulation.
pub fn simulate(p: &Params) -> Figures {
    let mut rng = Rng::new(p.seed);
    let shards = p.models * p.regions;
    let model_cdf = zipf(p.models, 1.1);
    let region_weights = [0.4, 0.3, 0.2, 0.1];
    let region_cdf: Vec<f64> = {
        let w: Vec<f64> = (0..p.regions).map(|r| region_weights[r % 4]).collect();
        let sum: f64 = w.iter().sum();
        let mut acc = 0.0;
        w.iter()
            .map(|x| {
                acc += x / sum;
                acc
            })
            .collect()
    };
    let account_cdf = zipf(p.accounts, 1.0);
    // Expected share of each shard and each account, to place nodes and size deposits.
    let share = |cdf: &[f64], i: usize| cdf[i] - if i == 0 { 0.0 } else { cdf[i - 1] };
    let shard_share: Vec<f64> = (0..shards)
        .map(|s| share(&model_cdf, s / p.regions) * share(&region_cdf, s % p.regions))
        .collect();
    let nodes: Vec<usize> = shard_share
        .iter()
        .map(|x| ((x * p.nodes as f64) as usize).max(1))
        .collect();
    let per_second = (p.per_ms * 1000) as f64;
    let deposit: Vec<u64> = (0..p.accounts)
        .map(|a| {
            let spend = share(&account_cdf, a) * per_second * TYPICAL_PRICE as f64;
            (spend * p.deposit_seconds as f64) as u64 + 2 * TYPICAL_PRICE
        })
        .collect();
    let mut w = World {
        p: p.clone(),
        shards,
        home_available: deposit.clone(),
        deposit,
        spent: vec![0; p.accounts],
        in_flight: vec![0; p.accounts],
        lease: vec![vec![0; p.accounts]; shards],
        used_at: vec![vec![0; p.accounts]; shards],
        waiting: HashMap::new(),
        refilling: HashSet::new(),
        messages: BinaryHeap::new(),
        bodies: HashMap::new(),
        next_message: 0,
        f: Figures {
            shards,
            ..Figures::default()
        },
        waits: Vec::new(),
    };
    let mut per_shard = vec![0u64; shards];
    let mut busy = vec![0usize; shards];
    let mut done: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut peak_busy = 0.0f64;
    for now in 0..p.duration_ms {
        while let Some(&Reverse((at, id))) = w.messages.peek() {
            if at > now {
                break;
            }
            w.messages.pop();
            let m = w.bodies.remove(&id).expect("every message has a body");
            w.deliver(now, m);
        }
        while let Some(&Reverse((at, s))) = done.peek() {
            if at > now {
                break;
            }
            done.pop();
            busy[s] -= 1;
        }
        for _ in 0..p.per_ms {
            let model = pick(&model_cdf, unit(&mut rng));
            let shard = model * p.regions + pick(&region_cdf, unit(&mut rng));
            let account = pick(&account_cdf, unit(&mut rng));
            let tokens = 64 + rng.below(449);
            let price = 1_000 + 10 * tokens;
            w.f.requests += 1;
            per_shard[shard] += 1;
            // Each request runs on one of its shard's nodes for ~20 ms a token / 100.
            busy[shard] += 1;
            done.push(Reverse((now + 200 + tokens * 2, shard)));
            if w.waiting.contains_key(&(shard, account)) {
                // Behind others waiting for the same lease.
                let q = w.waiting.get_mut(&(shard, account)).expect("checked");
                q.push_back(Waiting { since: now, price });
            } else if w.reserve_local(shard, account, price, now) {
                w.f.local += 1;
                w.f.accepted += 1;
                w.refill_ahead(shard, account, now);
            } else {
                w.wait_for_lease(shard, account, price, now);
            }
        }
        for s in 0..shards {
            peak_busy = peak_busy.max(busy[s] as f64 / nodes[s] as f64);
        }
        if now % 1000 == 999 {
            // Leases unused for the idle time go home.
            for s in 0..shards {
                for a in 0..p.accounts {
                    if w.lease[s][a] > 0 && now - w.used_at[s][a] >= p.idle_ms {
                        w.give_back(s, a, now);
                    }
                }
            }
            w.check_conservation();
        }
    }
    w.check_conservation();
    w.f.still_waiting = w.waiting.values().map(|q| q.len() as u64).sum();
    w.waits.sort_unstable();
    let at = |q: f64| {
        w.waits
            .get(((w.waits.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    w.f.waited = w.waits.len() as u64;
    w.f.wait_p50_ms = at(0.5);
    w.f.wait_p99_ms = at(0.99);
    let secs = p.duration_ms as f64 / 1000.0;
    let (max_s, max_n) = per_shard
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .expect("a shard");
    w.f.max_shard_rps = *max_n as f64 / secs;
    w.f.mean_shard_rps = w.f.requests as f64 / secs / shards as f64;
    w.f.max_shard_nodes = nodes[max_s];
    w.f.peak_busy_fraction = peak_busy;
    w.f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Params {
        Params {
            nodes: 10_000,
            accounts: 500,
            per_ms: 10,
            duration_ms: 5_000,
            idle_ms: 1_000,
            deposit_seconds: 3,
            ..Params::internet_scale(0)
        }
    }

    #[test]
    fn credit_is_never_created_or_lost_and_runs_repeat() {
        let f = simulate(&small());
        assert!(f.conservation_checks >= 5);
        assert_eq!(f.requests, 50_000);
        assert_eq!(
            f.accepted + f.refused_no_credit + f.still_waiting,
            f.requests,
            "every request is accepted, refused or still waiting at the end: {f:?}"
        );
        // Only what arrived within the last recall (four hops) may still wait.
        let p = small();
        let recall = p.per_ms as u64 * (4 * p.hop_ms + 2);
        assert!(f.still_waiting <= recall, "none waits for long: {f:?}");
        assert!(f.refused_no_credit > 0, "some accounts run dry: {f:?}");
        assert!(f.grants > 0 && f.returns > 0, "{f:?}");
        let again = simulate(&small());
        assert_eq!((again.accepted, again.grants), (f.accepted, f.grants));
    }
}
