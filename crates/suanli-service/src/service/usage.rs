//! Usage records: idempotent by id, checked against physics and the order, priced and split.

use super::*;
use crate::occupancy;

impl Service {
    /// Records a batch of usage records from `provider` in one commit. Each record gets its own
    /// answer: recorded, a duplicate of one recorded before (same id, same body: the first result
    /// again), or refused. A refusal that depends on the state (physics, the order's run) is
    /// kept, so that id stays failed; a record with the same id and a different body is refused
    /// without being kept.
    pub fn record_usage(
        &mut self,
        actor: &Actor,
        provider: ProviderId,
        records: &[UsageInput],
    ) -> Result<Vec<UsageOutcome>> {
        let group = UsageGroup { actor: actor.clone(), provider, records: records.to_vec() };
        Ok(self.record_usage_groups(actor, std::slice::from_ref(&group))?.pop().expect("one group in, one out"))
    }

    /// Records several providers' batches in **one commit** (group commit): the HTTP writer
    /// gathers the batches waiting in its queue and commits them together, each record still
    /// answered on its own and each log entry naming the actor that sent it. At most
    /// [`USAGE_BATCH_RECORDS_MAX`] records in all.
    pub fn record_usage_groups(&mut self, actor: &Actor, groups: &[UsageGroup]) -> Result<Vec<Vec<UsageOutcome>>> {
        if let Some(group) = groups.iter().find(|g| !self.state.providers.contains_key(&g.provider)) {
            return Err(ServiceError::not_found(group.provider));
        }
        let total: usize = groups.iter().map(|g| g.records.len()).sum();
        if total > USAGE_BATCH_RECORDS_MAX {
            return Err(ServiceError::field(
                "records",
                format!("a batch holds at most {USAGE_BATCH_RECORDS_MAX} records, got {total}"),
            ));
        }
        let now = self.now_s();
        // Every id of the batch is looked up in storage at once; ids decided earlier in the same
        // batch are found in the change itself.
        let keys: Vec<(ProviderId, &str)> =
            groups.iter().flat_map(|g| g.records.iter().map(|r| (g.provider, r.id.as_str()))).collect();
        let known = self.usage_decisions(&keys)?;
        let mut change = self.begin();
        let mut answers = Vec::with_capacity(groups.len());
        for group in groups {
            change.actors.push((change.events.len(), group.actor.clone()));
            let mut evidence = Vec::new();
            let outcomes: Vec<UsageOutcome> = group
                .records
                .iter()
                .map(|input| self.record_one(&mut change, &known, group.provider, input, now, &mut evidence))
                .collect();
            // Refusals that are not kept (clock skew, conflicting replays) are evidence: one
            // anomaly per kind per batch, so a batch cannot fill the log with them.
            let mut kinds: Vec<String> = evidence.iter().map(|a: &Anomaly| a.kind.clone()).collect();
            kinds.sort();
            kinds.dedup();
            for kind in kinds {
                let of_kind: Vec<&Anomaly> = evidence.iter().filter(|a| a.kind == kind).collect();
                let first = of_kind[0];
                let anomaly = match of_kind.len() {
                    1 => first.clone(),
                    n => Anomaly {
                        time_s: now,
                        kind: kind.clone(),
                        object: first.object.clone(),
                        detail: format!("{n} records of one batch, the first {}: {}", first.object, first.detail),
                    },
                };
                self.record(&mut change, Event::AnomalyFlagged { anomaly }, now);
            }
            answers.push(outcomes);
        }
        self.commit(actor, now, change)?;
        Ok(answers)
    }

    pub(super) fn record_one(
        &mut self,
        change: &mut Change,
        known: &std::collections::HashMap<(ProviderId, String), UsageEntry>,
        provider: ProviderId,
        input: &UsageInput,
        now: i64,
        evidence: &mut Vec<Anomaly>,
    ) -> UsageOutcome {
        let refused = |error: ServiceError| UsageOutcome::Refused {
            id: input.id.clone(),
            code: error.code.as_str().to_owned(),
            message: error.message,
        };
        if input.id.is_empty() || input.id.len() > 128 || input.id.chars().any(char::is_control) {
            return refused(ServiceError::field("id", "must be 1-128 bytes without control characters"));
        }
        let key = (provider, input.id.clone());
        match change.decided.get(&key).or_else(|| known.get(&key)) {
            Some(&UsageEntry::Recorded(facts, cost_fen, voucher_part_fen, enterprise_part_fen))
                if facts == UsageFacts::of(input) =>
            {
                return UsageOutcome::Duplicate {
                    id: input.id.clone(),
                    cost_fen,
                    voucher_part_fen,
                    enterprise_part_fen,
                };
            }
            Some(&UsageEntry::Recorded(UsageFacts(order, gpu_seconds, start, end), ..)) => {
                // A replay with another body: refused, and kept as evidence.
                let error = ServiceError::new(
                    ErrorCode::UsageRecordConflict,
                    format!("id: usage record {:?} was already recorded with a different body", input.id),
                );
                let anomaly = Anomaly {
                    time_s: now,
                    kind: "usage_record_conflict".to_owned(),
                    object: format!("usage:{provider}:{}", input.id),
                    detail: format!(
                        "recorded as {} GPU-seconds on {} from {} to {}; replayed as {} GPU-seconds on {} from {} to {}",
                        gpu_seconds,
                        order,
                        format_timestamp(start),
                        format_timestamp(end),
                        input.gpu_seconds,
                        input.order,
                        format_timestamp(input.period_start_s),
                        format_timestamp(input.period_end_s)
                    ),
                };
                evidence.push(anomaly);
                return refused(error);
            }
            Some(UsageEntry::Refused(_, code, message)) => {
                return refused(ServiceError::new(
                    ErrorCode::UsageIdAlreadyFailed,
                    format!("id: usage record {:?} already failed ({code}: {message})", input.id),
                ));
            }
            None => {}
        }
        match self.check_usage(provider, input, now) {
            Ok(record) => {
                let outcome = UsageOutcome::Recorded {
                    id: input.id.clone(),
                    cost_fen: record.cost_fen,
                    voucher_part_fen: record.voucher_part_fen,
                    enterprise_part_fen: record.enterprise_part_fen,
                };
                let sequence = change.next_sequence();
                let order = &self.state.orders[&input.order];
                let mut legs = Vec::with_capacity(3);
                if record.voucher_part_fen > Fen::ZERO {
                    legs.push(transfer(
                        sequence,
                        0,
                        TransferKind::UsageVoucherPart,
                        account_id(AccountKind::Hold, order.id.get(), 0),
                        account_id(AccountKind::ProviderReceivable, provider.get(), order.program.get()),
                        record.voucher_part_fen.fen(),
                    ));
                }
                if record.enterprise_part_fen > Fen::ZERO {
                    legs.push(transfer(
                        sequence,
                        1,
                        TransferKind::UsageEnterprisePart,
                        account_id(AccountKind::Enterprise, order.enterprise.get(), 0),
                        account_id(AccountKind::ProviderDirect, provider.get(), 0),
                        record.enterprise_part_fen.fen(),
                    ));
                }
                // Compute bought between hub nodes: its cost moves between the two regions.
                if let Some(&(buyer, seller)) = self.state.traded_orders.get(&order.id)
                    && record.cost_fen > Fen::ZERO
                {
                    legs.push(transfer(
                        sequence,
                        2,
                        TransferKind::InterRegion,
                        account_id(AccountKind::RegionTrade, u64::from(buyer.code()), 0),
                        account_id(AccountKind::RegionTrade, u64::from(seller.code()), 0),
                        record.cost_fen.fen(),
                    ));
                }
                link(&mut legs);
                change.ledger.extend(legs);
                self.record(change, Event::UsageRecorded { record: Box::new(record) }, now);
                outcome
            }
            Err(error) if error.code == ErrorCode::InvalidField || error.code == ErrorCode::NotFound => refused(error),
            // Not kept, so the id is not burned: the provider's clock may run ahead of ours.
            // The attempt is kept as an anomaly.
            Err(error) if error.code == ErrorCode::UsageInFuture => {
                let anomaly = Anomaly {
                    time_s: now,
                    kind: "clock_skew".to_owned(),
                    object: format!("usage:{provider}:{}", input.id),
                    detail: error.message.clone(),
                };
                evidence.push(anomaly);
                refused(error)
            }
            Err(error) => {
                let event = Event::UsageRefused {
                    provider,
                    input: input.clone(),
                    code: error.code.as_str().to_owned(),
                    message: error.message.clone(),
                };
                self.record(change, event, now);
                refused(error)
            }
        }
    }
}

impl View {
    pub(super) fn check_usage(&self, provider: ProviderId, input: &UsageInput, now: i64) -> Result<UsageRecord> {
        if self.is_archived(input.order) {
            return Err(ServiceError::new(
                ErrorCode::UsageAfterOrderEnd,
                format!(
                    "order: {} ended more than 31 days ago and is archived; late records are no longer taken",
                    input.order
                ),
            ));
        }
        let order = self.order(input.order)?;
        // Another provider's order answers as one that does not exist (and is not kept).
        if order.provider != provider {
            return Err(ServiceError::not_found(order.id));
        }
        if input.gpu_seconds <= 0 {
            return Err(ServiceError::field("gpu_seconds", "must be positive"));
        }
        if input.period_end_s <= input.period_start_s {
            return Err(ServiceError::field("period_end", "must be after period_start"));
        }
        // Records of the run may arrive after the order ended (a provider reports hourly); a
        // period past the end (beyond the clock-skew tolerance) is refused.
        if let Some(ended) = order.ended_at_s
            && (order.started_at_s.is_none() || input.period_end_s > ended.saturating_add(self.clock_skew_s))
        {
            return Err(ServiceError::new(
                ErrorCode::UsageAfterOrderEnd,
                format!(
                    "period_end: {} is after order {} ended ({:?}) at {}",
                    format_timestamp(input.period_end_s),
                    order.id,
                    order.state,
                    format_timestamp(ended)
                ),
            ));
        }
        let Some(started) = order.started_at_s else {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {} is {:?}; usage needs a started order", order.id, order.state),
            ));
        };
        if input.period_end_s > now.saturating_add(self.clock_skew_s) {
            return Err(ServiceError::new(
                ErrorCode::UsageInFuture,
                format!(
                    "period_end: {} is more than {} s after now ({}); send it again once the period has ended",
                    format_timestamp(input.period_end_s),
                    self.clock_skew_s,
                    format_timestamp(now)
                ),
            ));
        }
        if input.period_start_s < started {
            return Err(ServiceError::new(
                ErrorCode::UsageOutsideOrderRun,
                format!(
                    "period_start: {} is before the order started at {}",
                    format_timestamp(input.period_start_s),
                    format_timestamp(started)
                ),
            ));
        }
        let gpus = i64::from(order.quote.gpu_count);
        let period = input.period_end_s - input.period_start_s;
        if input.gpu_seconds > gpus.saturating_mul(period) {
            return Err(ServiceError::new(
                ErrorCode::UsageExceedsPhysics,
                format!("gpu_seconds: {} is more than {gpus} GPUs can run in {period} s", input.gpu_seconds),
            ));
        }
        // All records of the order together cannot exceed its GPUs over the time it has run.
        let until = order.usage_until_s.map_or(input.period_end_s, |u| u.max(input.period_end_s));
        let total = order.gpu_seconds.saturating_add(input.gpu_seconds);
        if total > gpus.saturating_mul(until - started) {
            return Err(ServiceError::new(
                ErrorCode::UsageExceedsPhysics,
                format!(
                    "gpu_seconds: the order's records would total {total} GPU-seconds, more than {gpus} GPUs can run in the {} s since it started",
                    until - started
                ),
            ));
        }
        // Nor at any instant: overlapping records are checked against each other.
        let rate = occupancy::rate(input.gpu_seconds, input.period_start_s, input.period_end_s);
        let peak = self.state.occupancy.get(&order.id).map_or(0, |o| o.peak(input.period_start_s, input.period_end_s));
        if peak.saturating_add(rate) > gpus.saturating_mul(occupancy::MICRO) {
            return Err(ServiceError::new(
                ErrorCode::UsageExceedsOrderGpus,
                format!(
                    "gpu_seconds: with the records already reported for {} to {}, the order would run {:.2} GPUs at once; it has {gpus}",
                    format_timestamp(input.period_start_s),
                    format_timestamp(input.period_end_s),
                    (peak.saturating_add(rate)) as f64 / occupancy::MICRO as f64
                ),
            ));
        }
        // And never beyond the GPU-hours ordered.
        let ordered = gpus.saturating_mul(i64::from(order.hours_ordered())).saturating_mul(3_600);
        if total > ordered {
            return Err(ServiceError::new(
                ErrorCode::UsageExceedsOrderHours,
                format!(
                    "gpu_seconds: the order's records would total {total} GPU-seconds, more than the {ordered} ordered ({gpus} GPUs × {} h); extend the order first",
                    order.hours_ordered()
                ),
            ));
        }
        let cost = cost_of(input.gpu_seconds, order.quote.price_fen_per_gpu_hour)?;
        let program = self.program(order.program)?;
        let voucher = self.voucher(order.voucher)?;
        let mut voucher_part = order.quote.rate_bp.share_floor(cost).min(order.hold_remaining_fen);
        if voucher.state != VoucherState::Active {
            // A suspended or revoked voucher pays nothing; expired vouchers still honour the
            // holds of orders placed while they were valid.
            if voucher.state != VoucherState::Expired {
                voucher_part = Fen::ZERO;
            }
        }
        if let Some(cap) = program.terms.annual_cap_fen {
            let left = cap.checked_sub(self.state.annual_used(order.enterprise, program.id, now))?;
            voucher_part = voucher_part.min(Fen::new(left.fen().max(0)));
        }
        let record = UsageRecord {
            provider,
            input: input.clone(),
            program: program.id,
            cost_fen: cost,
            voucher_part_fen: voucher_part,
            enterprise_part_fen: cost.checked_sub(voucher_part)?,
            recorded_at_s: now,
        };
        self.check_totals(order, &record)?;
        Ok(record)
    }
}

impl View {
    /// Refuses a record that would carry a running total past what an `i64` holds: the order's
    /// GPU-seconds and money and the enterprise's payments (the statement lines of one order are
    /// part of the order's totals; voucher and programme totals are bounded by face values and
    /// budgets). Applying the record then cannot overflow.
    pub(super) fn check_totals(&self, order: &Order, record: &UsageRecord) -> Result<()> {
        let overflow = |what: &str| {
            ServiceError::new(
                ErrorCode::AmountOverflow,
                format!("gpu_seconds: this record would carry {what} past the largest amount kept"),
            )
        };
        order.gpu_seconds.checked_add(record.input.gpu_seconds).ok_or_else(|| overflow("the order's GPU-seconds"))?;
        for (total, part) in [
            (order.cost_fen, record.cost_fen),
            (order.voucher_paid_fen, record.voucher_part_fen),
            (order.enterprise_paid_fen, record.enterprise_part_fen),
        ] {
            total.checked_add(part).map_err(|_| overflow("the order's cost"))?;
        }
        let enterprise = self.enterprise(order.enterprise)?;
        enterprise
            .paid_fen
            .checked_add(record.enterprise_part_fen)
            .map_err(|_| overflow("the enterprise's payments"))?;
        Ok(())
    }
}
