//! Orders: quotes, placement, start, completion and cancellation.

use super::*;

impl View {
    /// Prices an order without placing it: list cost, the voucher's share and the enterprise's.
    pub fn quote(&self, input: &OrderInput) -> Result<Quote> {
        let now = self.now_s();
        let (voucher, program, pool) = self.check_order(input, now)?;
        self.price(voucher, program, pool, input.gpu_count, input.hours, now)
    }
}

impl View {
    /// The checks an order makes before any pool is considered: the voucher is the enterprise's,
    /// active, unexpired, and its programme funds the purpose.
    pub(crate) fn check_voucher_use(
        &self,
        enterprise: EnterpriseId,
        voucher: VoucherId,
        purpose: Purpose,
        now: i64,
    ) -> Result<(&Voucher, &Program)> {
        self.enterprise(enterprise)?;
        let voucher = self.voucher(voucher)?;
        if voucher.enterprise != enterprise {
            // The same answer as a voucher that does not exist: no enterprise learns which
            // vouchers others hold.
            return Err(ServiceError::not_found(voucher.id));
        }
        if voucher.state != VoucherState::Active {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {} is {}", voucher.id, voucher.state_name()),
            ));
        }
        if now >= voucher.expires_at_s {
            return Err(ServiceError::new(
                ErrorCode::VoucherExpired,
                format!("voucher: {} expired at {}", voucher.id, format_timestamp(voucher.expires_at_s)),
            ));
        }
        let program = self.program(voucher.program)?;
        if !program.terms.purposes.contains(&purpose) {
            let allowed: Vec<&str> = program.terms.purposes.iter().map(|p| p.as_str()).collect();
            return Err(ServiceError::new(
                ErrorCode::PurposeNotAllowed,
                format!(
                    "purpose: {} is not funded by {}; it funds {}",
                    purpose.as_str(),
                    program.id,
                    allowed.join(", ")
                ),
            ));
        }
        Ok((voucher, program))
    }
}

impl View {
    pub(super) fn check_order(&self, input: &OrderInput, now: i64) -> Result<(&Voucher, &Program, &Pool)> {
        self.check_order_in(input, now, false)
    }

    /// The order's checks; for capacity bought between hub nodes (`traded`), a pool above the
    /// programme's highest tier is what was bought, not a refusal.
    pub(super) fn check_order_in(
        &self,
        input: &OrderInput,
        now: i64,
        traded: bool,
    ) -> Result<(&Voucher, &Program, &Pool)> {
        let (voucher, program) = self.check_voucher_use(input.enterprise, input.voucher, input.purpose, now)?;
        let pool = self.state.pools.get(&input.pool).ok_or_else(|| ServiceError::not_found(input.pool))?;
        if pool.retired_at_s.is_some() {
            return Err(ServiceError::new(ErrorCode::PoolRetired, format!("pool: {} is retired", pool.id)));
        }
        crate::chips::require("pool", &pool.chip)?;
        if let Some(chip) = &input.chip {
            let chip = crate::chips::require("chip", chip)?;
            if chip.name != crate::chips::canonical(&pool.chip) {
                return Err(ServiceError::new(
                    ErrorCode::ChipNotInPool,
                    format!("chip: {} has {} GPUs, not {}", pool.id, pool.chip, chip.name),
                ));
            }
        }
        if input.gpu_count == 0 {
            return Err(ServiceError::field("gpus", "must be at least 1"));
        }
        if input.hours == 0 || input.hours > ORDER_HOURS_MAX {
            return Err(ServiceError::field("hours", format!("must be between 1 and {ORDER_HOURS_MAX}")));
        }
        let free = pool.gpu_count - pool.gpus_reserved;
        if input.gpu_count > free {
            return Err(ServiceError::new(
                ErrorCode::PoolCapacityExceeded,
                format!(
                    "gpus: {} asks for {} GPUs and only {free} of {} are free",
                    pool.id, input.gpu_count, pool.gpu_count
                ),
            ));
        }
        self.provider_allowed(program, pool)?;
        if !traded {
            self.within_highest_tier(program, pool)?;
        }
        Ok((voucher, program, pool))
    }
}

impl View {
    pub(crate) fn price(
        &self,
        voucher: &Voucher,
        program: &Program,
        pool: &Pool,
        gpus: u32,
        hours: u32,
        now: i64,
    ) -> Result<Quote> {
        self.price_at(voucher, program, pool, pool.price_fen_per_gpu_hour, gpus, hours, now)
    }

    /// The quote at `price_fen_per_gpu_hour` (a pool's list price, or a clearing's price).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn price_at(
        &self,
        voucher: &Voucher,
        program: &Program,
        pool: &Pool,
        price_fen_per_gpu_hour: Fen,
        gpus: u32,
        hours: u32,
        now: i64,
    ) -> Result<Quote> {
        let list_cost = price_fen_per_gpu_hour.checked_mul(i64::from(gpus))?.checked_mul(i64::from(hours))?;
        let rate = rate_for(program, voucher, pool);
        let (share, limited_by) = self.limit_share(voucher, program, rate.share_floor(list_cost), now)?;
        Ok(Quote {
            pool: pool.id,
            gpu_count: gpus,
            hours,
            price_fen_per_gpu_hour,
            rate_bp: rate,
            list_cost_fen: list_cost,
            voucher_share_fen: share,
            enterprise_share_fen: list_cost.checked_sub(share)?,
            limited_by,
        })
    }
}

impl View {
    /// The voucher share `by_rate` as the voucher's balance and the programme's annual cap allow,
    /// and what limited it.
    fn limit_share(
        &self,
        voucher: &Voucher,
        program: &Program,
        by_rate: Fen,
        now: i64,
    ) -> Result<(Fen, Option<String>)> {
        let mut share = by_rate;
        let mut limited_by = None;
        if voucher.available_fen < share {
            share = voucher.available_fen;
            limited_by = Some(format!("the voucher's available balance {}", voucher.available_fen));
        }
        if let Some(cap) = program.terms.annual_cap_fen {
            let left =
                Fen::new(cap.checked_sub(self.state.annual_used(voucher.enterprise, program.id, now))?.fen().max(0));
            if left < share {
                share = left;
                limited_by = Some(format!("the annual cap: {left} left of {cap} in {}", shanghai_year(now)));
            }
        }
        Ok((share, limited_by))
    }
}

impl Service {
    /// Buys `hours` more of a placed or running order at its locked price and rate: the voucher's
    /// share of the extension is held as the order's was (nothing when the voucher can no longer
    /// pay), and usage may then run to the new total. Answers the added hold.
    pub fn extend_order(&mut self, actor: &Actor, id: OrderId, hours: u32) -> Result<Fen> {
        let order = self.order(id)?;
        if !matches!(order.state, OrderState::Placed | OrderState::Running) {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}; only a placed or running order can be extended", order.state),
            ));
        }
        if hours == 0 || order.hours_ordered().saturating_add(hours) > ORDER_HOURS_MAX {
            return Err(ServiceError::field(
                "hours",
                format!(
                    "must be at least 1, and the order's {} h plus the extension at most {ORDER_HOURS_MAX}",
                    order.hours_ordered()
                ),
            ));
        }
        let now = self.now_s();
        let list_cost = order
            .quote
            .price_fen_per_gpu_hour
            .checked_mul(i64::from(order.quote.gpu_count))?
            .checked_mul(i64::from(hours))?;
        let hold = match self.check_voucher_use(order.enterprise, order.voucher, order.purpose, now) {
            Ok((voucher, program)) => {
                self.limit_share(voucher, program, order.quote.rate_bp.share_floor(list_cost), now)?.0
            }
            Err(_) => Fen::ZERO,
        };
        let voucher = order.voucher;
        let mut change = self.begin();
        if hold > Fen::ZERO {
            let sequence = change.next_sequence();
            change.ledger.push(transfer(
                sequence,
                0,
                TransferKind::Hold,
                account_id(AccountKind::Voucher, voucher.get(), 0),
                account_id(AccountKind::Hold, id.get(), 0),
                hold.fen(),
            ));
        }
        self.record(&mut change, Event::OrderExtended { order: id, hours, hold_fen: hold }, now);
        self.commit(actor, now, change)?;
        Ok(hold)
    }
}

impl Service {
    /// Places an order: the price is locked and the voucher's share is held for it.
    pub fn place_order(&mut self, actor: &Actor, input: OrderInput) -> Result<OrderId> {
        self.place_order_for(actor, input, None, None)
    }

    /// Places an order that a round placed for `request`, or that bought `work`, and says so.
    pub fn place_order_for(
        &mut self,
        actor: &Actor,
        input: OrderInput,
        request: Option<suanli_domain::RequestId>,
        work: Option<crate::service::Work>,
    ) -> Result<OrderId> {
        self.place_order_at(actor, input, request, work, None)
    }

    /// Places an order, at `traded` (a clearing's price for capacity bought between hub nodes)
    /// instead of the pool's list price when given.
    pub(super) fn place_order_at(
        &mut self,
        actor: &Actor,
        input: OrderInput,
        request: Option<suanli_domain::RequestId>,
        work: Option<crate::service::Work>,
        traded: Option<Fen>,
    ) -> Result<OrderId> {
        let now = self.now_s();
        let (voucher, program, pool) = self.check_order_in(&input, now, traded.is_some())?;
        let price = traded.unwrap_or(pool.price_fen_per_gpu_hour);
        let quote = self.price_at(voucher, program, pool, price, input.gpu_count, input.hours, now)?;
        let (_, provider) = self.provider_of_pool(pool);
        let enterprise = &self.state.enterprises[&input.enterprise];
        // Related parties, named by the enterprise or found by matching what both sides declared
        // of their control: the order goes ahead, flagged, and each finding is kept as evidence.
        let flags: Vec<String> =
            self.related(enterprise, provider).into_iter().map(|why| format!("related_party: {why}")).collect();
        let (program_id, provider_id) = (program.id, provider.id);
        let mut change = self.begin();
        let id = self.state.next_order();
        let hold = quote.voucher_share_fen;
        let sequence = change.next_sequence();
        self.ensure_account(&mut change, AccountKind::Hold, id.get(), 0);
        self.ensure_account(&mut change, AccountKind::ProviderReceivable, provider_id.get(), program_id.get());
        if hold > Fen::ZERO {
            change.ledger.push(transfer(
                sequence,
                0,
                TransferKind::Hold,
                account_id(AccountKind::Voucher, input.voucher.get(), 0),
                account_id(AccountKind::Hold, id.get(), 0),
                hold.fen(),
            ));
        }
        let order = NewOrder {
            id,
            enterprise: input.enterprise,
            voucher: input.voucher,
            program: program_id,
            pool: input.pool,
            provider: provider_id,
            purpose: input.purpose,
            quote,
            placed_at_s: now,
            hold_fen: hold,
            flags: flags.clone(),
            request,
            work,
        };
        self.record(&mut change, Event::OrderPlaced { order: Box::new(order) }, now);
        for flag in flags {
            let anomaly =
                Anomaly { time_s: now, kind: "related_party".to_owned(), object: id.to_string(), detail: flag };
            self.record(&mut change, Event::AnomalyFlagged { anomaly }, now);
        }
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl View {
    /// An order in memory. An archived one is refused with `order_state`: it can no longer
    /// change (read it with [`View::find_order`]).
    pub fn order(&self, id: OrderId) -> Result<&Order> {
        self.state.orders.get(&id).ok_or_else(|| {
            if self.is_archived(id) {
                ServiceError::new(
                    ErrorCode::OrderState,
                    format!("order: {id} ended more than 31 days ago and is archived; it can no longer change"),
                )
            } else {
                ServiceError::not_found(id)
            }
        })
    }
}

impl Service {
    /// Placed → running: the provider starts the job.
    pub fn start_order(&mut self, actor: &Actor, id: OrderId) -> Result<()> {
        let order = self.order(id)?;
        if order.state != OrderState::Placed {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}, not placed", order.state),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::OrderStarted { order: id }, now);
        self.commit(actor, now, change)
    }

    /// Running → completed: what is left of the hold goes back to the voucher (and on to the
    /// budget if the voucher is no longer active).
    pub fn complete_order(&mut self, actor: &Actor, id: OrderId) -> Result<Fen> {
        let order = self.order(id)?;
        if order.state != OrderState::Running {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}, not running", order.state),
            ));
        }
        self.end_order(actor, id, OrderState::Completed)
    }

    /// Placed → cancelled, before it starts: the whole hold is released.
    pub fn cancel_order(&mut self, actor: &Actor, id: OrderId) -> Result<Fen> {
        let order = self.order(id)?;
        if order.state != OrderState::Placed {
            return Err(ServiceError::new(
                ErrorCode::OrderState,
                format!("order: {id} is {:?}; only a placed order that has not started can be cancelled", order.state),
            ));
        }
        self.end_order(actor, id, OrderState::Cancelled)
    }

    pub(super) fn end_order(&mut self, actor: &Actor, id: OrderId, state: OrderState) -> Result<Fen> {
        let order = &self.state.orders[&id];
        let voucher = &self.state.vouchers[&order.voucher];
        let released = order.hold_remaining_fen;
        let voucher_closed = matches!(voucher.state, VoucherState::Expired | VoucherState::Revoked);
        let returned = if voucher_closed { released } else { Fen::ZERO };
        let (voucher_id, program) = (voucher.id, voucher.program);
        let now = self.now_s();
        let mut change = self.begin();
        let sequence = change.next_sequence();
        let mut legs = Vec::new();
        if released > Fen::ZERO {
            legs.push(release(sequence, 0, id.get(), voucher_id.get(), released.fen()));
        }
        if returned > Fen::ZERO {
            legs.push(return_to_budget(sequence, 1, voucher_id.get(), program.get(), returned.fen()));
        }
        link(&mut legs);
        change.ledger.extend(legs);
        self.record(
            &mut change,
            Event::OrderEnded { order: id, state, released_fen: released, returned_fen: returned },
            now,
        );
        self.commit(actor, now, change)?;
        Ok(released)
    }
}
