//! Triton's rate limiter (`--rate-limit execution_count`): an engine
//! instance whose group has a `rate_limiter` runs a batch only while it
//! holds the resources that group lists, and among the instances waiting for
//! resources, the one with the fewest executions (scaled by its priority)
//! goes first, across every model of the server.
//!
//! The rules, read off Triton's `rate_limiter.cc`:
//! - a resource is per device unless the config marks it `global`; one name
//!   may not be both;
//! - how many of a resource there are: what `--rate-limit-resource
//!   NAME:COUNT[:DEVICE]` gives, or else the largest count that any loaded
//!   instance lists (so that every instance can run). Once any count is
//!   given, a resource that is not given has none, and a model that needs
//!   more than is given does not load;
//! - the waiting instance with the lowest `executions × priority` (a
//!   priority of 0 counts as 1; ties go to the one that waited longest) is
//!   the next to run, and no other instance overtakes it while it waits for
//!   its resources;
//! - an instance holds its resources for its whole engine call.
//!
//! Instances of groups without a `rate_limiter` are not held at all (Triton
//! gives them no resources and priority 1, so they wait only behind an
//! instance that does need resources).
//!
//! ```
//! use anemone_runtime::rate_limit::{RateLimit, Resource};
//! use anemone_runtime::{InferRequest, InstanceGroup, Manager, ModelSpec};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One engine call at a time across every instance that lists "GPU".
//! let manager = Manager::builder()
//!     .backend(anemone_backends::TractCpu)
//!     .rate_limit(Some(vec!["GPU:1".parse()?]))
//!     .build()?;
//! let gpu = RateLimit {
//!     resources: vec![Resource { name: "GPU".into(), count: 1, global: true }],
//!     priority: 1,
//! };
//! let spec = ModelSpec::new("add", "../../examples/models/add/1/model.onnx")
//!     .instance_group(InstanceGroup::new(2).rate_limit(gpu));
//! manager.load_model_blocking(spec)?;
//! let x = anemone_core::Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0])?;
//! let request = InferRequest::new("add").input("x", x.clone()).input("y", x);
//! let sum = manager.infer_blocking(request)?;
//! assert_eq!(sum.output("sum").unwrap().to_vec::<f32>()?, [2.0, 4.0, 6.0, 8.0]);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One resource an instance group needs (an entry of Triton's
/// `rate_limiter.resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The resource's name, shared across models.
    pub name: String,
    /// How many of it one engine call of an instance holds.
    pub count: u64,
    /// One pool for the whole server, instead of one per device.
    pub global: bool,
}

/// An instance group's `rate_limiter`: what each of its instances holds
/// while it runs, and its priority among waiting instances.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Resources each engine call holds.
    pub resources: Vec<Resource>,
    /// Weight against other instances: 2 gets half the turns of 1 when they
    /// compete. 0 counts as 1.
    pub priority: u32,
}

/// How many of a resource the server has (`--rate-limit-resource
/// NAME:COUNT[:DEVICE]`); without a device, on every device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// The resource's name.
    pub name: String,
    /// How many there are.
    pub count: u64,
    /// The device they are on; `None`: each device has `count`.
    pub device: Option<u32>,
}

impl std::str::FromStr for Available {
    type Err = String;

    /// `NAME:COUNT` or `NAME:COUNT:DEVICE`, as Triton's flag takes them.
    fn from_str(text: &str) -> Result<Available, String> {
        let bad = |why: &str| {
            format!("'{text}': {why}; write NAME:COUNT or NAME:COUNT:DEVICE (for example R1:4 or R1:4:0)")
        };
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default();
        if name.is_empty() {
            return Err(bad("the resource has no name"));
        }
        let count = parts
            .next()
            .ok_or_else(|| bad("no count"))?
            .parse::<u64>()
            .map_err(|_| bad("the count is not a whole number"))?;
        let device = parts
            .next()
            .map(|d| {
                d.parse::<u32>()
                    .map_err(|_| bad("the device is not a whole number"))
            })
            .transpose()?;
        if parts.next().is_some() {
            return Err(bad("too many parts"));
        }
        Ok(Available {
            name: name.to_string(),
            count,
            device,
        })
    }
}

/// Where a resource's count lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Global,
    Device(u32),
}

type Key = (Scope, String);

/// Called when a waiting instance was given its resources.
pub(crate) type Wake = Arc<dyn Fn() + Send + Sync>;

/// The server's rate limiter: the resources, the instances registered with
/// it and those waiting for their turn.
pub struct RateLimiter {
    given: Vec<Available>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    next_id: u64,
    next_turn: u64,
    limits: HashMap<Key, u64>,
    held: HashMap<Key, u64>,
}

struct Member {
    /// The model it is an instance of, for messages.
    model: Arc<str>,
    needs: Arc<[(Key, u64)]>,
    priority: u64,
    executions: u64,
    /// Set while it waits: when it started waiting (a turn number).
    waiting: Option<u64>,
    /// Its resources are held for it; its next `acquire` takes them.
    granted: bool,
    wake: Wake,
}

/// What an instance asking to run gets.
pub(crate) enum Acquire {
    /// It runs, holding its resources until the grant is dropped.
    Granted(Grant),
    /// It waits; its queue is woken when its turn comes.
    Wait,
}

impl RateLimiter {
    /// A limiter with the counts given on the command line (none: each
    /// resource has as many as its largest user needs).
    pub fn new(given: Vec<Available>) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            given,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the engine instances (lanes) of model `model`, each with
    /// its group's rate limit, if it has one; every instance is on device
    /// 0. `None` when no lane is limited. Refused, with what to change,
    /// when the resources cannot all be met.
    pub(crate) fn register(
        self: &Arc<Self>,
        model: &str,
        lanes: &[Option<RateLimit>],
        wake: Wake,
    ) -> Result<Option<Registration>, String> {
        if lanes.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut state = self.lock();
        let model_name: Arc<str> = Arc::from(model);
        let new: Vec<Option<Member>> = lanes
            .iter()
            .map(|limit| {
                limit.as_ref().map(|limit| Member {
                    model: Arc::clone(&model_name),
                    needs: needs(limit, 0),
                    priority: u64::from(limit.priority.max(1)),
                    executions: 0,
                    waiting: None,
                    granted: false,
                    wake: Arc::clone(&wake),
                })
            })
            .collect();
        let all = state.members.values().chain(new.iter().flatten());
        let limits = self
            .limits(all)
            .map_err(|e| format!("model '{model}': {e}"))?;
        let mut ids = Vec::with_capacity(new.len());
        for member in new {
            ids.push(member.map(|m| {
                let id = state.next_id;
                state.next_id += 1;
                state.members.insert(id, m);
                id
            }));
        }
        state.limits = limits;
        let wakes = allocate(&mut state, &[]);
        drop(state);
        wakes.iter().for_each(|w| w());
        Ok(Some(Registration {
            limiter: Arc::clone(self),
            ids,
        }))
    }

    /// The count of each resource the members need: given, or their largest need.
    fn limits<'a>(
        &self,
        members: impl Iterator<Item = &'a Member>,
    ) -> Result<HashMap<Key, u64>, String> {
        let mut most: HashMap<Key, u64> = HashMap::new();
        // Which models list each resource, for the conflict's message.
        let mut users: HashMap<Key, Vec<Arc<str>>> = HashMap::new();
        for member in members {
            for (key, n) in member.needs.iter() {
                let entry = most.entry(key.clone()).or_default();
                *entry = (*entry).max(*n);
                let models = users.entry(key.clone()).or_default();
                if !models.contains(&member.model) {
                    models.push(Arc::clone(&member.model));
                }
            }
        }
        let listed = |pick: &dyn Fn(&Scope) -> bool, name: &str| {
            let mut models: Vec<String> = users
                .iter()
                .filter(|((scope, n), _)| n == name && pick(scope))
                .flat_map(|(_, models)| models.iter().map(|m| format!("'{m}'")))
                .collect();
            models.sort();
            models.dedup();
            models.join(", ")
        };
        for (scope, name) in most.keys() {
            if *scope == Scope::Global && most.keys().any(|(s, n)| n == name && *s != Scope::Global)
            {
                return Err(format!(
                    "rate-limiter resource \"{name}\" is global in model {} and per device in model {}; \
                     mark it global: true in every rate_limiter that lists it, or in none",
                    listed(&|s| *s == Scope::Global, name),
                    listed(&|s| *s != Scope::Global, name),
                ));
            }
        }
        if self.given.is_empty() {
            return Ok(most);
        }
        let mut limits = HashMap::new();
        for ((scope, name), need) in most {
            let count = self
                .given
                .iter()
                .filter(|a| a.name == name)
                .filter(|a| match &scope {
                    Scope::Global => true,
                    Scope::Device(d) => a.device.is_none_or(|x| x == *d),
                })
                .map(|a| a.count)
                .max()
                .unwrap_or(0);
            if count < need {
                return Err(format!(
                    "rate-limiter resource \"{name}\" is limited to {count} by --rate-limit-resource, \
                     but an instance needs {need}, so it could never run; give \
                     --rate-limit-resource {name}:{need} or more, or lower the count in the \
                     model's rate_limiter"
                ));
            }
            limits.insert((scope, name), count);
        }
        Ok(limits)
    }
}

/// The resources a limit holds, as keys on `device`; a name listed twice
/// keeps its last count, as Triton's map does.
fn needs(limit: &RateLimit, device: u32) -> Arc<[(Key, u64)]> {
    let mut out: Vec<(Key, u64)> = Vec::new();
    for r in &limit.resources {
        let scope = if r.global {
            Scope::Global
        } else {
            Scope::Device(device)
        };
        let key = (scope, r.name.clone());
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = r.count,
            None => out.push((key, r.count)),
        }
    }
    out.into()
}

/// Gives resources to waiting members in turn, as long as the next one's
/// fit; returns the wakes of those given them, except `quiet` ones (the
/// caller's own, which it checks itself).
fn allocate(state: &mut State, quiet: &[Option<u64>]) -> Vec<Wake> {
    let mut wakes = Vec::new();
    loop {
        let next = state
            .members
            .iter()
            .filter_map(|(id, m)| {
                m.waiting
                    .map(|turn| (m.executions.saturating_mul(m.priority), turn, *id))
            })
            .min();
        let Some((_, _, id)) = next else {
            return wakes;
        };
        let member = &state.members[&id];
        let fits = member.needs.iter().all(|(key, n)| {
            let held = state.held.get(key).copied().unwrap_or(0);
            held + n <= state.limits.get(key).copied().unwrap_or(0)
        });
        if !fits {
            return wakes;
        }
        let needs = Arc::clone(&member.needs);
        for (key, n) in needs.iter() {
            *state.held.entry(key.clone()).or_default() += n;
        }
        let member = state.members.get_mut(&id).expect("the member just found");
        member.waiting = None;
        member.granted = true;
        if !quiet.contains(&Some(id)) {
            wakes.push(Arc::clone(&member.wake));
        }
    }
}

fn give_back(state: &mut State, needs: &[(Key, u64)]) {
    for (key, n) in needs {
        if let Some(held) = state.held.get_mut(key) {
            *held = held.saturating_sub(*n);
        }
    }
}

/// A model's instances in the limiter, removed on drop.
pub(crate) struct Registration {
    limiter: Arc<RateLimiter>,
    /// One per lane: `None` for a lane that is not limited.
    ids: Vec<Option<u64>>,
}

impl Registration {
    /// Asks for engine instance `lane` to run now. The wakes it returns
    /// (other queues' instances given their turn) are the caller's to call
    /// once it holds no lock. A lane that is not limited always runs.
    pub(crate) fn acquire(&self, lane: usize) -> (Acquire, Vec<Wake>) {
        let Some(id) = self.ids.get(lane).copied().flatten() else {
            return (Acquire::Granted(Grant::free()), Vec::new());
        };
        let mut state = self.limiter.lock();
        let mut wakes = Vec::new();
        if !state.members[&id].granted {
            if state.members[&id].waiting.is_none() {
                let turn = state.next_turn;
                state.next_turn += 1;
                state.members.get_mut(&id).expect("registered").waiting = Some(turn);
            }
            wakes = allocate(&mut state, &self.ids);
        }
        let member = state.members.get_mut(&id).expect("registered");
        if !member.granted {
            return (Acquire::Wait, wakes);
        }
        member.granted = false;
        let grant = Grant {
            limiter: Some(Arc::clone(&self.limiter)),
            id,
            needs: Arc::clone(&member.needs),
        };
        (Acquire::Granted(grant), wakes)
    }

    /// Puts lane `lane` in the line without giving anything out: an
    /// instance about to give its resources back while its queue has more
    /// work (it then competes for the turn it frees). Its queue's next
    /// [`Registration::acquire`] takes what it is given.
    pub(crate) fn stage(&self, lane: usize) {
        let Some(id) = self.ids.get(lane).copied().flatten() else {
            return;
        };
        let mut state = self.limiter.lock();
        let turn = state.next_turn;
        let member = state.members.get_mut(&id).expect("registered");
        if !member.granted && member.waiting.is_none() {
            member.waiting = Some(turn);
            state.next_turn += 1;
        }
    }

    /// Lane `lane` no longer wants to run (its queue emptied while it
    /// waited): it leaves the line, and resources given to it meanwhile go
    /// back. Returns the wakes to call, as [`Registration::acquire`] does.
    pub(crate) fn withdraw(&self, lane: usize) -> Vec<Wake> {
        let Some(id) = self.ids.get(lane).copied().flatten() else {
            return Vec::new();
        };
        let mut state = self.limiter.lock();
        let member = state.members.get_mut(&id).expect("registered");
        member.waiting = None;
        if !std::mem::take(&mut member.granted) {
            return Vec::new();
        }
        let needs = Arc::clone(&member.needs);
        give_back(&mut state, &needs);
        allocate(&mut state, &self.ids)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        for id in self.ids.iter().flatten() {
            if let Some(member) = state.members.remove(id) {
                if member.granted {
                    give_back(&mut state, &member.needs);
                }
            }
        }
        // Fewer users: the counts nobody gave shrink (removing members
        // cannot make them conflict).
        if let Ok(limits) = self.limiter.limits(state.members.values()) {
            state.limits = limits;
        }
        let wakes = allocate(&mut state, &[]);
        drop(state);
        wakes.iter().for_each(|w| w());
    }
}

/// Resources held by a running engine call, given back on drop (which
/// counts the execution and gives the next waiting instance its turn).
pub(crate) struct Grant {
    limiter: Option<Arc<RateLimiter>>,
    id: u64,
    needs: Arc<[(Key, u64)]>,
}

impl Grant {
    /// Whether it holds resources of the limiter (not a lane that is not limited).
    pub(crate) fn holds(&self) -> bool {
        self.limiter.is_some()
    }

    /// A grant of nothing: a lane that is not limited.
    pub(crate) fn free() -> Grant {
        Grant {
            limiter: None,
            id: 0,
            needs: Arc::new([]),
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let Some(limiter) = self.limiter.take() else {
            return;
        };
        let mut state = limiter.lock();
        give_back(&mut state, &self.needs);
        if let Some(member) = state.members.get_mut(&self.id) {
            member.executions += 1;
        }
        let wakes = allocate(&mut state, &[]);
        drop(state);
        wakes.iter().for_each(|w| w());
    }
}

#[cfg(test)]
mod tests;
