//! Utilization telemetry: each pool's busy GPUs as its provider reports them, checked against the
//! pool and the clock, and kept in storage's bounded series (`suanli_store::utilization`).
//! Telemetry moves no money: it is stored in a transaction of its own, outside the ledger and the
//! log, and memory holds none of it. A conflicting replay is kept as an anomaly.

use super::*;
use crate::model::{UtilizationInput, UtilizationOutcome};
use suanli_store::utilization::{RAW_KEEP_S, Sample, SampleAnswer};

/// The most samples one batch holds.
pub use suanli_wire::UTILIZATION_BATCH_SAMPLES_MAX;

impl Service {
    /// Records a batch of `provider`'s utilization samples, each answered on its own: stored, the
    /// same as one stored before (`exists`), or refused (a pool not the provider's, more GPUs busy
    /// than the pool has, a time in the future or older than samples are kept as reported, or
    /// another value for a pool and instant already stored).
    pub fn record_utilization(
        &mut self,
        actor: &Actor,
        provider: ProviderId,
        samples: &[UtilizationInput],
    ) -> Result<Vec<UtilizationOutcome>> {
        if !self.state.providers.contains_key(&provider) {
            return Err(ServiceError::not_found(provider));
        }
        if samples.is_empty() || samples.len() > UTILIZATION_BATCH_SAMPLES_MAX {
            return Err(ServiceError::field(
                "samples",
                format!("must hold 1 to {UTILIZATION_BATCH_SAMPLES_MAX} samples, got {}", samples.len()),
            ));
        }
        let now = self.now_s();
        let mut answers: Vec<Option<UtilizationOutcome>> = Vec::with_capacity(samples.len());
        let mut accepted = Vec::new();
        for (index, input) in samples.iter().enumerate() {
            match self.check_sample(provider, input, now, index) {
                Ok(sample) => {
                    accepted.push(sample);
                    answers.push(None);
                }
                Err(error) => answers.push(Some(outcome(input, "error", Some(error)))),
            }
        }
        let stored = match accepted.is_empty() {
            true => Vec::new(),
            false => {
                self.recover()?;
                self.durable.record_utilization(&accepted, now).map_err(storage_error)?
            }
        };
        let mut stored = stored.into_iter();
        let mut conflicts = Vec::new();
        let outcomes: Vec<UtilizationOutcome> = samples
            .iter()
            .zip(answers)
            .map(|(input, answer)| {
                answer.unwrap_or_else(|| match stored.next().expect("one answer per sample stored") {
                    SampleAnswer::Stored => outcome(input, "ok", None),
                    SampleAnswer::Duplicate => outcome(input, "exists", None),
                    SampleAnswer::Conflict { busy_gpus, .. } => {
                        let error = ServiceError::new(
                            ErrorCode::UtilizationConflict,
                            format!(
                                "busy_gpus: {} at {} was reported before as {busy_gpus}, not {}",
                                input.pool, input.at_s, input.busy_gpus
                            ),
                        );
                        conflicts.push(error.message.clone());
                        outcome(input, "error", Some(error))
                    }
                })
            })
            .collect();
        if let Some(first) = conflicts.first() {
            let detail = match conflicts.len() {
                1 => first.clone(),
                n => format!("{n} samples of one batch, the first: {first}"),
            };
            self.flag_anomaly(actor, "utilization_conflict", &provider.to_string(), &detail)?;
        }
        // Cross-checked with the platform's own orders: a pool cannot be less busy than the
        // orders running on it hold. The sample is kept as reported, and the batch flagged.
        let stored: Vec<&UtilizationInput> =
            samples.iter().zip(&outcomes).filter(|(_, o)| o.status == "ok").map(|(input, _)| input).collect();
        let below = self.below_orders(&stored);
        if let Some(first) = below.first() {
            let detail = match below.len() {
                1 => first.clone(),
                n => format!("{n} samples of one batch, the first: {first}"),
            };
            self.flag_anomaly(actor, "utilization_below_orders", &provider.to_string(), &detail)?;
        }
        Ok(outcomes)
    }

    /// The samples that report fewer busy GPUs than the platform's orders running on the pool at
    /// that instant hold, in words: orders started at or before it, neither ended nor past the
    /// hours they bought (an order cannot be billed beyond them, so its GPUs may be idle then).
    fn below_orders(&self, samples: &[&UtilizationInput]) -> Vec<String> {
        if samples.is_empty() {
            return Vec::new();
        }
        let pools: std::collections::HashSet<PoolId> = samples.iter().map(|s| s.pool).collect();
        let mut running: std::collections::HashMap<PoolId, Vec<(i64, i64, u32)>> = std::collections::HashMap::new();
        for order in self.state.orders.values().filter(|o| pools.contains(&o.pool)) {
            if let Some(started) = order.started_at_s {
                let bought = started.saturating_add(i64::from(order.hours_ordered()) * 3_600);
                let ended = order.ended_at_s.unwrap_or(i64::MAX).min(bought);
                running.entry(order.pool).or_default().push((started, ended, order.quote.gpu_count));
            }
        }
        samples
            .iter()
            .filter_map(|s| {
                let held: u32 = running
                    .get(&s.pool)
                    .map(|orders| orders.iter().filter(|(a, b, _)| *a <= s.at_s && s.at_s < *b).map(|o| o.2).sum())
                    .unwrap_or(0);
                (s.busy_gpus < held).then(|| {
                    format!(
                        "busy_gpus: {} at {} reported {} busy, but the platform's orders running on it hold {held}",
                        s.pool,
                        crate::calendar::format_timestamp(s.at_s),
                        s.busy_gpus
                    )
                })
            })
            .collect()
    }

    fn check_sample(&self, provider: ProviderId, input: &UtilizationInput, now: i64, index: usize) -> Result<Sample> {
        let at = |field: &str| format!("samples[{index}].{field}");
        let pool = self
            .state
            .pools
            .get(&input.pool)
            .filter(|pool| self.state.sites.get(&pool.site).is_some_and(|site| site.spec.provider == provider))
            .ok_or_else(|| {
                ServiceError::new(ErrorCode::NotFound, format!("{}: no pool {} of {provider}", at("pool"), input.pool))
            })?;
        if input.busy_gpus > pool.gpu_count {
            return Err(ServiceError::new(
                ErrorCode::UtilizationExceedsPool,
                format!("{}: {} busy, but {} has {} GPUs", at("busy_gpus"), input.busy_gpus, pool.id, pool.gpu_count),
            ));
        }
        if input.at_s > now.saturating_add(self.clock_skew_s) {
            return Err(ServiceError::new(
                ErrorCode::UtilizationInFuture,
                format!(
                    "{}: {} is more than {} s after the server's clock ({})",
                    at("at"),
                    crate::calendar::format_timestamp(input.at_s),
                    self.clock_skew_s,
                    crate::calendar::format_timestamp(now)
                ),
            ));
        }
        if input.at_s < now.saturating_sub(RAW_KEEP_S).max(0) {
            return Err(ServiceError::new(
                ErrorCode::UtilizationTooOld,
                format!("{}: samples older than {} days are no longer taken", at("at"), RAW_KEEP_S / 86_400),
            ));
        }
        Ok(Sample { pool: input.pool.get(), at_s: input.at_s, busy_gpus: input.busy_gpus, gpus: pool.gpu_count })
    }
}

fn outcome(input: &UtilizationInput, status: &'static str, error: Option<ServiceError>) -> UtilizationOutcome {
    UtilizationOutcome {
        pool: input.pool,
        at_s: input.at_s,
        status,
        code: error.as_ref().map(|e| e.code.as_str().to_owned()),
        message: error.map(|e| e.message),
    }
}
