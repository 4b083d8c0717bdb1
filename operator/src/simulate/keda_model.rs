//! KEDA's RabbitMQ scaler and the HorizontalPodAutoscaler it creates, with their
//! documented defaults, scaling the same Deployment on the same target: a
//! ScaledObject in `QueueLength` mode whose `value` is the TaskQueue's
//! `targetBacklogPerReplica` (warren's default when unset),
//! `minReplicaCount`/`maxReplicaCount` its bounds.
//!
//! - KEDA reads the queue every `pollingInterval` (30 s): active when the queue
//!   length is above `activationValue` (0); it scales 0 -> 1 (or to
//!   `minReplicaCount`) when active at 0 replicas, and N -> 0, with
//!   `minReplicaCount` 0, once the last active reading is more than
//!   `cooldownPeriod` (300 s) old
//!   (<https://keda.sh/docs/latest/reference/scaledobject-spec/>).
//! - Queue length is the management API's `messages` (ready + unacked), what the
//!   scaler's HTTP path reads from the per-queue endpoint; it comes from the
//!   statistics database, so it is as of the broker's last emission.
//! - The HPA syncs every 15 s (`--horizontal-pod-autoscaler-sync-period`) and reads
//!   the metric then (KEDA's metrics server queries the scaler on each request
//!   unless `useCachedMetrics`). With an `AverageValue` target it keeps the
//!   current count when `|1 - metric / (target x current)|` is within the
//!   tolerance (0.1), else recommends `ceil(metric / target)`; scale-up is
//!   limited per 15 s period to the larger of +4 pods and +100 % of the replicas
//!   at the period's start; scale-down takes the highest recommendation of the
//!   last 300 s (the default policy may then remove every pod in one period, so
//!   no rate limit is modelled); the result is bounded by the HPA's min (at
//!   least 1) and max. The HPA does nothing at 0 replicas
//!   (<https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/>).
//!
//! The arithmetic follows the HPA controller's (`stabilizeRecommendationWithBehaviors`,
//! `convertDesiredReplicasWithBehaviorRate`): a recommendation or scale event
//! exactly one window old no longer counts.

use std::collections::HashMap;

use super::broker_view::BrokerView;
use super::fleet::Fleet;
use super::{MIN_PERIOD, ScaleRequest};
use crate::crd::TaskQueueSpec;
use crate::decision::ScalingPolicy;

/// KEDA's and the HPA's settings; `Default` is their documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct KedaSettings {
    /// ScaledObject `pollingInterval`, seconds.
    pub polling_interval: f64,
    /// ScaledObject `cooldownPeriod`, seconds.
    pub cooldown_period: f64,
    /// The trigger's `activationValue`.
    pub activation_value: f64,
    /// kube-controller-manager `--horizontal-pod-autoscaler-sync-period`, seconds.
    pub hpa_sync_period: f64,
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// Default scale-up policies: this many pods, or this percent, per period.
    pub scale_up_pods: i32,
    pub scale_up_percent: i32,
    pub scale_up_period: f64,
    /// Default scale-down `stabilizationWindowSeconds`.
    pub scale_down_window: f64,
}

impl Default for KedaSettings {
    fn default() -> Self {
        Self {
            polling_interval: 30.0,
            cooldown_period: 300.0,
            activation_value: 0.0,
            hpa_sync_period: 15.0,
            tolerance: 0.1,
            scale_up_pods: 4,
            scale_up_percent: 100,
            scale_up_period: 15.0,
            scale_down_window: 300.0,
        }
    }
}

/// The HPA's state: recent recommendations and scale events.
#[derive(Debug, Clone)]
pub struct Hpa {
    min: i32,
    max: i32,
    target: f64,
    settings: KedaSettings,
    recommendations: Vec<(f64, i32)>,
    /// Replicas added (positive) or removed (negative) by the HPA, and when.
    scale_events: Vec<(f64, i32)>,
}

impl Hpa {
    pub fn new(min: i32, max: i32, target: f64, settings: KedaSettings) -> Self {
        Self {
            min: min.max(1),
            max: max.max(1),
            target,
            settings,
            recommendations: Vec::new(),
            scale_events: Vec::new(),
        }
    }

    /// One sync: the replicas the HPA sets, given the metric and current replicas.
    pub fn sync(&mut self, now: f64, metric: f64, current: i32) -> i32 {
        let desired = if current == 0 {
            0 // scaling is disabled at 0 replicas
        } else if current > self.max {
            self.max
        } else if current < self.min {
            self.min
        } else {
            let ratio = metric / (self.target * f64::from(current));
            let raw = if (1.0 - ratio).abs() <= self.settings.tolerance {
                current
            } else {
                clamp_to_i32((metric / self.target).ceil())
            };
            let stabilized = self.stabilize(now, raw, current);
            self.limit(now, stabilized, current)
        };
        let cutoff = now - self.settings.scale_up_period;
        self.scale_events.retain(|(at, _)| *at > cutoff);
        if desired != current && current > 0 {
            self.scale_events.push((now, desired - current));
        }
        desired
    }

    fn stabilize(&mut self, now: f64, raw: i32, current: i32) -> i32 {
        let down_cutoff = now - self.settings.scale_down_window;
        // Scale-up stabilization is 0 s by default: only `raw` counts upwards.
        let highest = self
            .recommendations
            .iter()
            .filter(|(at, _)| *at > down_cutoff)
            .map(|(_, r)| *r)
            .fold(raw, i32::max);
        self.recommendations.retain(|(at, _)| *at > down_cutoff);
        self.recommendations.push((now, raw));
        current.max(raw).min(highest)
    }

    fn limit(&self, now: f64, stabilized: i32, current: i32) -> i32 {
        if stabilized > current {
            let cutoff = now - self.settings.scale_up_period;
            let changed: i32 = self
                .scale_events
                .iter()
                .filter(|(at, _)| *at > cutoff)
                .map(|(_, change)| *change)
                .sum();
            let start = current - changed;
            let by_pods = start + self.settings.scale_up_pods;
            let by_percent = clamp_to_i32(
                (f64::from(start) * (1.0 + f64::from(self.settings.scale_up_percent) / 100.0))
                    .ceil(),
            );
            let limit = by_pods.max(by_percent).max(current);
            stabilized.min(limit).min(self.max)
        } else {
            stabilized.max(self.min)
        }
    }
}

fn clamp_to_i32(value: f64) -> i32 {
    // `as` saturates; the metric is a count, never NaN here.
    value.clamp(0.0, f64::from(i32::MAX)) as i32
}

/// KEDA's operator loop and the HPA, as one scaler of the simulated Deployment.
pub struct KedaModel {
    min_replica_count: i32,
    activation_value: f64,
    polling_interval: f64,
    cooldown_period: f64,
    hpa_sync_period: f64,
    hpa: Hpa,
    next_poll: f64,
    next_sync: f64,
    last_active: Option<f64>,
}

impl KedaModel {
    /// The ScaledObject for `spec`; KEDA's poll and the HPA's sync start at `phase`
    /// (0..1) of their periods.
    pub fn new(spec: &TaskQueueSpec, settings: KedaSettings, phase: f64) -> Self {
        let min = spec.min_replicas.max(0);
        let max = spec.max_replicas.max(min).max(1);
        // warren's own number: targetBacklogPerReplica, or its default when unset.
        let target = ScalingPolicy::from(spec).target_backlog_per_replica as f64;
        Self {
            min_replica_count: min,
            activation_value: settings.activation_value,
            polling_interval: settings.polling_interval.max(MIN_PERIOD),
            cooldown_period: settings.cooldown_period,
            hpa_sync_period: settings.hpa_sync_period.max(MIN_PERIOD),
            next_poll: phase * settings.polling_interval,
            next_sync: phase * settings.hpa_sync_period,
            hpa: Hpa::new(min, max, target, settings),
            last_active: None,
        }
    }

    pub fn floor(&self) -> usize {
        usize::try_from(self.min_replica_count).unwrap_or(0)
    }

    pub fn next_tick_at(&self) -> f64 {
        self.next_poll.min(self.next_sync)
    }

    /// KEDA's poll and the HPA's sync that are due, in that order.
    pub fn tick(&mut self, fleet: &Fleet, view: &BrokerView) -> Option<ScaleRequest> {
        let now = fleet.now();
        let metric = view.statistics().messages() as f64;
        let before = i32::try_from(fleet.replicas()).unwrap_or(i32::MAX);
        let mut replicas = before;
        if self.next_poll <= now {
            replicas = self.poll(now, metric, replicas);
            self.next_poll += self.polling_interval;
        }
        if self.next_sync <= now {
            replicas = self.hpa.sync(now, metric, replicas);
            self.next_sync += self.hpa_sync_period;
        }
        (replicas != before).then(|| ScaleRequest {
            replicas: usize::try_from(replicas).unwrap_or(0),
            costs: HashMap::new(),
            reason: format!("{before} -> {replicas}: queue length {metric} (KEDA + HPA)"),
        })
    }

    /// KEDA's own decision: activation from 0 and the cooldown to 0.
    pub fn poll(&mut self, now: f64, metric: f64, current: i32) -> i32 {
        let active = metric > self.activation_value;
        if active {
            self.last_active = Some(now);
        }
        if current == 0 && active {
            return self.min_replica_count.max(1);
        }
        let cooled = self
            .last_active
            .is_none_or(|at| now - at > self.cooldown_period);
        if !active && current > 0 && self.min_replica_count == 0 && cooled {
            return 0;
        }
        current
    }
}

#[cfg(test)]
#[path = "keda_model_tests.rs"]
mod tests;
