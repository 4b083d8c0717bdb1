//! One queue's reading as the poller keeps it: the counts of the latest totals
//! listing joined with the consumers and rates of the latest statistics listing,
//! or why the queue could not be read.

use std::time::Instant;

use super::management::ListMode;
use super::{BrokerError, QueueStats};

/// The latest reading of a queue, or why there is none, and when it was taken.
#[derive(Debug, Clone)]
pub struct Sample {
    pub result: Result<QueueStats, BrokerError>,
    pub taken_at: Instant,
    /// When the consumers and rates were listed, and whether messages were ready
    /// then (the statistics listing's own count, taken with its rates).
    pub rates: Option<RatesListed>,
}

/// When a statistics listing gave the consumers and rates of a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatesListed {
    pub at: Instant,
    pub ready: i64,
    pub unacked: i64,
}

/// Combines a new listing with the previous reading: counts and their time come
/// from totals listings (fresh), consumers and rates from statistics listings.
/// A statistics listing never supplies counts: they trail the queue by seconds,
/// and after a purge, an outage or a broker restart they may say 0 of a full
/// queue (read as 0 after the management API came back, they scaled 3 -> 1 a
/// queue of 30). Without a good reading to join it keeps what is there (`None`).
pub(super) fn merge(
    previous: Option<&Sample>,
    mode: ListMode,
    fresh: Result<QueueStats, BrokerError>,
    now: Instant,
) -> Option<Sample> {
    let previous_ok =
        previous.and_then(|p| p.result.as_ref().ok().map(|stats| (stats, p.taken_at)));
    let rates_before = previous.and_then(|p| p.rates);
    let (result, taken_at, rates) = match (fresh, mode, previous_ok) {
        (Err(error), _, _) => (Err(error), now, None),
        (Ok(totals), ListMode::Totals, Some((before, _))) => (
            Ok(QueueStats {
                consumers: before.consumers,
                publish_rate: before.publish_rate,
                ack_rate: before.ack_rate,
                ..totals
            }),
            now,
            rates_before,
        ),
        (Ok(totals), ListMode::Totals, None) => (Ok(totals), now, None),
        (Ok(stats), ListMode::Stats, Some((before, taken_at))) => {
            let listed = RatesListed {
                at: now,
                ready: stats.ready,
                unacked: stats.unacked,
            };
            (
                Ok(QueueStats {
                    ready: before.ready,
                    unacked: before.unacked,
                    ..stats
                }),
                taken_at,
                Some(listed),
            )
        }
        (Ok(_), ListMode::Stats, None) => return None,
    };
    Some(Sample {
        result,
        taken_at,
        rates,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;

    /// Counts of a queue for tests: `consumers` known, with a publish rate, or not.
    pub(in crate::broker) fn stats(ready: i64, consumers: Option<i64>) -> QueueStats {
        QueueStats {
            ready,
            unacked: 0,
            consumers,
            publish_rate: consumers.map(|_| 2.0),
            ack_rate: None,
        }
    }

    #[test]
    fn totals_refresh_counts_and_stats_refresh_consumers() {
        let t0 = Instant::now();
        let first = merge(None, ListMode::Totals, Ok(stats(30, None)), t0).expect("counts");
        let joined =
            merge(Some(&first), ListMode::Stats, Ok(stats(5, Some(2))), t0).expect("joined");
        let got = joined.result.clone().expect("ok");
        assert_eq!(
            (got.ready, got.consumers, got.publish_rate),
            (30, Some(2), Some(2.0))
        );
        let t1 = t0 + Duration::from_secs(1);
        let fresh = merge(Some(&joined), ListMode::Totals, Ok(stats(40, None)), t1).expect("ok");
        let got = fresh.result.clone().expect("ok");
        assert_eq!(
            (got.ready, got.consumers, got.publish_rate),
            (40, Some(2), Some(2.0))
        );
        assert_eq!(fresh.taken_at, t1);
        // A lagging statistics listing keeps the fresh count and its time.
        let t2 = t1 + Duration::from_secs(1);
        let after_stats =
            merge(Some(&fresh), ListMode::Stats, Ok(stats(5, Some(3))), t2).expect("ok");
        let got = after_stats.result.clone().expect("ok");
        assert_eq!((got.ready, got.consumers), (40, Some(3)));
        assert_eq!(after_stats.taken_at, t1);
        assert_eq!(
            after_stats.rates,
            Some(RatesListed {
                at: t2,
                ready: 5,
                unacked: 0
            })
        );
        assert_eq!(
            joined.rates,
            Some(RatesListed {
                at: t0,
                ready: 5,
                unacked: 0
            })
        );
        assert_eq!(fresh.rates, joined.rates, "totals keep the rates' time");
        // Errors replace the reading.
        let failed = merge(
            Some(&after_stats),
            ListMode::Totals,
            Err(BrokerError::Unauthorized {
                url: "http://rabbitmq:15672".into(),
            }),
            t2,
        )
        .expect("an error is stored");
        assert!(failed.result.is_err());
    }

    #[test]
    fn a_statistics_listing_alone_never_gives_counts() {
        let t0 = Instant::now();
        assert!(merge(None, ListMode::Stats, Ok(stats(0, Some(1))), t0).is_none());
        let failed = Sample {
            result: Err(BrokerError::Server {
                url: "http://rabbitmq:15672".into(),
                status: 500,
            }),
            taken_at: t0,
            rates: None,
        };
        assert!(
            merge(Some(&failed), ListMode::Stats, Ok(stats(0, Some(1))), t0).is_none(),
            "after an error the lagging count of a statistics listing is not a reading"
        );
    }
}
