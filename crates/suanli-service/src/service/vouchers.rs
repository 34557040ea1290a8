//! Vouchers: the expiry sweep, suspension, reinstatement and revocation.

use super::*;

impl Service {
    /// Expires every active or suspended voucher whose validity has ended; its unspent balance
    /// returns to the budget. Holds of running orders stay until those orders end.
    pub fn sweep(&mut self, actor: &Actor) -> Result<SweepReport> {
        let now = self.now_s();
        let due: Vec<(VoucherId, ProgramId, Fen)> = self
            .state
            .vouchers
            .values()
            .filter(|v| matches!(v.state, VoucherState::Active | VoucherState::Suspended) && v.expires_at_s <= now)
            .map(|v| (v.id, v.program, v.available_fen))
            .collect();
        let mut report = SweepReport::default();
        // Each commit stays within one ledger batch; a sweep that stops half-way leaves every
        // voucher either expired with its balance returned or untouched, and the next sweep goes on.
        for chunk in due.chunks(SWEEP_VOUCHERS_PER_COMMIT_MAX) {
            let mut change = self.begin();
            for &(voucher, program, returned) in chunk {
                if returned > Fen::ZERO {
                    change.ledger.push(return_to_budget(
                        change.next_sequence(),
                        0,
                        voucher.get(),
                        program.get(),
                        returned.fen(),
                    ));
                }
                self.record(&mut change, Event::VoucherExpired { voucher, returned_fen: returned }, now);
            }
            self.commit(actor, now, change)?;
            for &(voucher, _, returned) in chunk {
                report.expired.push(voucher);
                report.returned_fen = report.returned_fen.checked_add(returned)?;
            }
        }
        Ok(report)
    }

    pub fn suspend_voucher(&mut self, actor: &Actor, id: VoucherId, reason: &str) -> Result<()> {
        let voucher = self.voucher(id)?;
        if voucher.state != VoucherState::Active {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {id} is {}", voucher.state_name()),
            ));
        }
        check_text("reason", reason)?;
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::VoucherSuspended { voucher: id, reason: reason.to_owned() }, now);
        self.commit(actor, now, change)
    }

    pub fn reinstate_voucher(&mut self, actor: &Actor, id: VoucherId) -> Result<()> {
        let voucher = self.voucher(id)?;
        if voucher.state != VoucherState::Suspended {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {id} is {}, not suspended", voucher.state_name()),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::VoucherReinstated { voucher: id }, now);
        self.commit(actor, now, change)
    }

    /// Revokes a voucher: every hold of its orders is released and its whole balance returns to
    /// the budget. Its orders may go on running; the enterprise pays for them in full.
    pub fn revoke_voucher(&mut self, actor: &Actor, id: VoucherId, reason: &str) -> Result<Fen> {
        let voucher = self.voucher(id)?;
        if !matches!(voucher.state, VoucherState::Active | VoucherState::Suspended) {
            return Err(ServiceError::new(
                ErrorCode::VoucherState,
                format!("voucher: {id} is {}", voucher.state_name()),
            ));
        }
        check_text("reason", reason)?;
        let program = voucher.program;
        let released: Vec<(OrderId, Fen)> = self
            .state
            .orders
            .values()
            .filter(|o| o.voucher == id && o.hold_remaining_fen > Fen::ZERO)
            .map(|o| (o.id, o.hold_remaining_fen))
            .collect();
        let returned = released.iter().try_fold(voucher.available_fen, |sum, (_, amount)| sum.checked_add(*amount))?;
        let now = self.now_s();
        let mut change = self.begin();
        // One entry per released order (leg 0 of its own entry), then the revocation returning
        // the whole balance: any number of orders, one all-or-nothing commit.
        for (order, amount) in released {
            let sequence = change.next_sequence();
            change.ledger.push(release(sequence, 0, order.get(), id.get(), amount.fen()));
            let event = Event::OrderHoldReleased { order, voucher: id, released_fen: amount };
            self.record(&mut change, event, now);
        }
        let sequence = change.next_sequence();
        if returned > Fen::ZERO {
            change.ledger.push(return_to_budget(sequence, 0, id.get(), program.get(), returned.fen()));
        }
        let event = Event::VoucherRevoked {
            voucher: id,
            reason: reason.to_owned(),
            released: Vec::new(),
            returned_fen: returned,
        };
        self.record(&mut change, event, now);
        self.commit(actor, now, change)?;
        Ok(returned)
    }
}
