//! The simulated world below the autoscaler: a FIFO queue, the worker pods of one
//! Deployment, and the tasks they run, advanced event by event.
//!
//! Assumptions (each one a simplification of what RabbitMQ, the kubelet and
//! warren's worker do):
//!
//! - a published task goes to the tail of the queue; a pod takes tasks from its
//!   head, at most `concurrency` at once (the worker's prefetch equals its
//!   concurrency, so a pod never holds a task it has not started); free slots are
//!   served round-robin, as the broker serves consumers with credit;
//! - `ready` = tasks in the queue, `unacked` = tasks held by pods; a task is
//!   acknowledged when it finishes;
//! - a new pod consumes after its start-up delay, drawn per pod from `--startup`;
//!   the ReplicaSet creates and deletes pods at once (no scheduling delay beyond
//!   the start-up);
//! - a removed pod is deleted as the ReplicaSet controller ranks pods: not yet
//!   ready first, then by lowest `pod-deletion-cost`, then the most recently
//!   ready, then the newest;
//! - a removed pod terminates gracefully, as warren's worker does on SIGTERM: a
//!   pod still starting goes at once; a consuming pod cancels its consumer, lets
//!   its running tasks finish and exits when the last one does, or at its grace
//!   period, when the tasks still running are interrupted: they go back to the
//!   head of the queue (redelivered from scratch) and count as interrupted;
//! - a pod costs from its creation until it exits (start-up and termination
//!   included).

use std::collections::{HashMap, VecDeque};

use rand::SeedableRng;

use super::SimRng;
use super::agenda::Agenda;
use super::distribution::Distribution;
use super::replica_set::{Candidate, victims};
use super::report::BacklogRecord;

pub type TaskId = usize;
pub type PodId = usize;

/// A task, from publication to its acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub published_at: f64,
    pub service: f64,
    /// Start of the latest delivery; of the one that completed, once done.
    pub started_at: Option<f64>,
    pub completed_at: Option<f64>,
    /// Deliveries so far (the first, then one per interruption).
    pub deliveries: u32,
    /// Acknowledgements: 1 once done; more would be a duplicate.
    pub completions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Starting,
    Consuming,
    /// Removed: finishing its tasks within the grace period.
    Terminating,
    Gone,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub created_at: f64,
    /// When it consumes (or would have, had it not been removed first).
    pub ready_at: f64,
    pub gone_at: Option<f64>,
    pub phase: PodPhase,
    holding: Vec<TaskId>,
}

impl Pod {
    /// Tasks the pod runs now.
    pub fn holding(&self) -> usize {
        self.holding.len()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub concurrency: usize,
    pub startup: Distribution,
    /// Seconds a removed pod may take to finish its tasks.
    pub grace_period: f64,
    /// Seeds the start-up delays (pod k gets the same delay in every run).
    pub seed: u64,
}

#[derive(Debug)]
enum Happening {
    PodReady(PodId),
    Done {
        task: TaskId,
        pod: PodId,
        delivery: u32,
    },
    GraceOver(PodId),
}

pub struct Fleet {
    now: f64,
    tasks: Vec<Task>,
    /// `tasks[..published]` have been published.
    published: usize,
    queue: VecDeque<TaskId>,
    unacked: usize,
    pods: Vec<Pod>,
    /// Pods neither terminating nor gone: the Deployment's replicas.
    replicas: usize,
    /// One entry per free slot of a consuming pod, in round-robin order; entries
    /// of pods that stopped consuming are dropped when reached.
    credits: VecDeque<PodId>,
    events: Agenda<Happening>,
    config: FleetConfig,
    rng: SimRng,
    acked: usize,
    interrupted: usize,
    record: BacklogRecord,
}

impl Fleet {
    /// `tasks` as (publish time, service seconds), published in time order (a
    /// stable sort: equal times keep their order); `replicas` pods consume from
    /// time 0 (they ran before the trace began).
    pub fn new(tasks: &[(f64, f64)], replicas: usize, config: FleetConfig) -> Self {
        let rng = SimRng::seed_from_u64(config.seed);
        let mut in_order = tasks.to_vec();
        in_order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut fleet = Self {
            now: 0.0,
            tasks: in_order
                .iter()
                .map(|&(published_at, service)| Task {
                    published_at,
                    service,
                    started_at: None,
                    completed_at: None,
                    deliveries: 0,
                    completions: 0,
                })
                .collect(),
            published: 0,
            queue: VecDeque::new(),
            unacked: 0,
            pods: Vec::new(),
            replicas: 0,
            credits: VecDeque::new(),
            events: Agenda::new(),
            config,
            rng,
            acked: 0,
            interrupted: 0,
            record: BacklogRecord::default(),
        };
        for _ in 0..replicas {
            let pod = fleet.pods.len();
            fleet.pods.push(Pod {
                created_at: 0.0,
                ready_at: 0.0,
                gone_at: None,
                phase: PodPhase::Starting,
                holding: Vec::new(),
            });
            fleet.replicas += 1;
            fleet.become_ready(pod);
        }
        fleet
    }

    /// When the next thing happens in the fleet, if anything is left to happen.
    pub fn next_event_at(&self) -> Option<f64> {
        let arrival = self.tasks.get(self.published).map(|t| t.published_at);
        let event = self.events.next_at();
        match (arrival, event) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        }
    }

    /// Runs every event up to and including `until`, then sets the clock there.
    pub fn advance(&mut self, until: f64) {
        loop {
            let arrival = self
                .tasks
                .get(self.published)
                .map(|t| t.published_at)
                .filter(|at| *at <= until);
            let event = self.events.next_at().filter(|at| *at <= until);
            match (arrival, event) {
                // Events first at equal times: a finished task frees its slot
                // before the next arrival is dispatched.
                (Some(a), Some(e)) if e <= a => self.next_happening(),
                (Some(a), _) => {
                    self.now = a;
                    self.queue.push_back(self.published);
                    self.published += 1;
                }
                (None, Some(_)) => self.next_happening(),
                (None, None) => break,
            }
            self.dispatch();
            self.track_backlog();
        }
        self.now = self.now.max(until);
    }

    /// Sets the Deployment's replicas: new pods start, or pods are removed as the
    /// ReplicaSet controller ranks them with `costs` (pod-deletion-cost; 0 when absent).
    pub fn scale_to(&mut self, replicas: usize, costs: &HashMap<PodId, i32>) {
        while self.replicas < replicas {
            let ready_at = self.now + self.config.startup.sample(&mut self.rng);
            let pod = self.pods.len();
            self.pods.push(Pod {
                created_at: self.now,
                ready_at,
                gone_at: None,
                phase: PodPhase::Starting,
                holding: Vec::new(),
            });
            self.replicas += 1;
            self.schedule(ready_at, Happening::PodReady(pod));
        }
        if self.replicas > replicas {
            for pod in self.victims(self.replicas - replicas, costs) {
                self.remove(pod);
            }
        }
        self.dispatch();
        self.track_backlog();
    }

    fn victims(&self, count: usize, costs: &HashMap<PodId, i32>) -> Vec<PodId> {
        let candidates = self
            .live_pods()
            .map(|(id, pod)| Candidate {
                id,
                ready: pod.phase == PodPhase::Consuming,
                ready_at: pod.ready_at,
                created_at: pod.created_at,
            })
            .collect();
        victims(candidates, count, costs)
    }

    fn remove(&mut self, pod: PodId) {
        self.replicas -= 1;
        let now = self.now;
        let grace = self.config.grace_period;
        let state = &mut self.pods[pod];
        if state.phase == PodPhase::Consuming && !state.holding.is_empty() {
            state.phase = PodPhase::Terminating;
            self.schedule(now + grace, Happening::GraceOver(pod));
        } else {
            state.phase = PodPhase::Gone;
            state.gone_at = Some(now);
        }
    }

    fn next_happening(&mut self) {
        let Some((at, happening)) = self.events.pop() else {
            return;
        };
        self.now = at;
        match happening {
            Happening::PodReady(pod) => {
                if self.pods[pod].phase == PodPhase::Starting {
                    self.become_ready(pod);
                }
            }
            Happening::Done {
                task,
                pod,
                delivery,
            } => self.finish(task, pod, delivery),
            Happening::GraceOver(pod) => self.interrupt(pod),
        }
    }

    fn become_ready(&mut self, pod: PodId) {
        self.pods[pod].phase = PodPhase::Consuming;
        self.credits
            .extend(std::iter::repeat_n(pod, self.config.concurrency));
    }

    fn finish(&mut self, task: TaskId, pod: PodId, delivery: u32) {
        let state = &mut self.pods[pod];
        let Some(slot) = state.holding.iter().position(|t| *t == task) else {
            return; // interrupted since: this delivery never completes
        };
        if self.tasks[task].deliveries != delivery {
            return;
        }
        state.holding.swap_remove(slot);
        match state.phase {
            PodPhase::Consuming => self.credits.push_back(pod),
            PodPhase::Terminating if state.holding.is_empty() => {
                state.phase = PodPhase::Gone;
                state.gone_at = Some(self.now);
            }
            _ => {}
        }
        let done = &mut self.tasks[task];
        done.completed_at = Some(self.now);
        done.completions += 1;
        self.unacked -= 1;
        self.acked += 1;
    }

    /// The grace period is over: running tasks go back to the head of the queue.
    fn interrupt(&mut self, pod: PodId) {
        let state = &mut self.pods[pod];
        if state.phase != PodPhase::Terminating {
            return;
        }
        let held = std::mem::take(&mut state.holding);
        state.phase = PodPhase::Gone;
        state.gone_at = Some(self.now);
        self.unacked -= held.len();
        self.interrupted += held.len();
        for task in held.into_iter().rev() {
            self.queue.push_front(task);
        }
    }

    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(pod) = self.credits.pop_front() else {
                return;
            };
            if self.pods[pod].phase != PodPhase::Consuming {
                continue;
            }
            let Some(task) = self.queue.pop_front() else {
                return;
            };
            let state = &mut self.tasks[task];
            state.deliveries += 1;
            state.started_at = Some(self.now);
            let (delivery, service) = (state.deliveries, state.service);
            self.pods[pod].holding.push(task);
            self.unacked += 1;
            self.schedule(
                self.now + service,
                Happening::Done {
                    task,
                    pod,
                    delivery,
                },
            );
        }
    }

    fn schedule(&mut self, at: f64, what: Happening) {
        self.events.schedule(at, what);
    }

    fn track_backlog(&mut self) {
        self.record
            .observe(self.now, self.queue.len(), self.unacked);
    }

    pub fn now(&self) -> f64 {
        self.now
    }
    pub fn ready(&self) -> usize {
        self.queue.len()
    }
    pub fn unacked(&self) -> usize {
        self.unacked
    }
    /// The Deployment's replicas: pods starting or consuming.
    pub fn replicas(&self) -> usize {
        self.replicas
    }
    pub fn published(&self) -> usize {
        self.published
    }
    pub fn acked(&self) -> usize {
        self.acked
    }
    pub fn interrupted(&self) -> usize {
        self.interrupted
    }
    pub fn max_ready(&self) -> usize {
        self.record.max_ready()
    }
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Pods that count as replicas (starting or consuming), with their ids.
    pub fn live_pods(&self) -> impl Iterator<Item = (PodId, &Pod)> {
        self.pods
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.phase, PodPhase::Starting | PodPhase::Consuming))
    }

    /// The longest time to drain; `None` while busy (see [`BacklogRecord`]).
    pub fn longest_busy(&self) -> Option<f64> {
        self.record.longest_busy()
    }

    /// Every task published and acknowledged.
    pub fn all_done(&self) -> bool {
        self.acked == self.tasks.len()
    }

    /// At `replicas` with no pod still terminating: nothing more will change.
    pub fn settled_at(&self, replicas: usize) -> bool {
        self.replicas == replicas && self.pods.iter().all(|p| p.phase != PodPhase::Terminating)
    }

    /// Seconds of pod life up to `end` (pods still there count until then).
    pub fn pod_seconds(&self, end: f64) -> f64 {
        self.pods
            .iter()
            .map(|p| p.gone_at.unwrap_or(end) - p.created_at)
            .sum()
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
