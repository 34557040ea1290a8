//! Monthly settlement statements per provider and programme.

use super::*;

impl Service {
    /// Issues the statement of `provider` and `program` for a month that has ended: one line per
    /// order, the totals and the voucher total in words.
    pub fn issue_statement(
        &mut self,
        actor: &Actor,
        provider: ProviderId,
        program: ProgramId,
        month: YearMonth,
    ) -> Result<StatementId> {
        if !self.state.providers.contains_key(&provider) {
            return Err(ServiceError::not_found(provider));
        }
        self.program(program)?;
        let now = self.now_s();
        if month >= YearMonth::of(now) {
            return Err(ServiceError::new(
                ErrorCode::MonthNotEnded,
                format!("month: {month} has not ended (it is {} in Asia/Shanghai)", YearMonth::of(now)),
            ));
        }
        let month_text = month.to_string();
        if let Some(existing) = self
            .state
            .statements
            .values()
            .find(|s| s.provider == provider && s.program == program && s.month == month_text)
        {
            return Err(ServiceError::new(
                ErrorCode::StatementExists,
                format!("month: {} already has statement {} for {provider} and {program}", month_text, existing.id),
            ));
        }
        let Some(lines) = self.state.unsettled.get(&(provider, program, month)) else {
            return Err(ServiceError::new(
                ErrorCode::StatementEmpty,
                format!("month: {provider} recorded no usage for {program} in {month_text}"),
            ));
        };
        let lines: Vec<_> = lines.values().cloned().collect();
        let sum = |f: fn(&crate::model::StatementLine) -> Fen| {
            lines.iter().map(f).try_fold(Fen::ZERO, |a, b| a.checked_add(b))
        };
        let (cost, voucher_total, enterprise_total) =
            (sum(|l| l.cost_fen)?, sum(|l| l.voucher_part_fen)?, sum(|l| l.enterprise_part_fen)?);
        let id = self.state.next_statement();
        let statement = NewStatement {
            id,
            provider,
            program,
            month: month_text,
            lines,
            cost_fen: cost,
            voucher_total_fen: voucher_total,
            enterprise_total_fen: enterprise_total,
            voucher_total_uppercase: voucher_total.to_chinese_uppercase(),
            issued_at_s: now,
        };
        let mut change = self.begin();
        self.record(&mut change, Event::StatementIssued { statement: Box::new(statement) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// The authority approves a statement: its voucher total moves from the provider's receivable
    /// to the programme's settlement account, and the statement can never change again.
    pub fn approve_statement(&mut self, actor: &Actor, id: StatementId) -> Result<()> {
        let statement = self.state.statements.get(&id).ok_or_else(|| ServiceError::not_found(id))?;
        if statement.state != StatementState::Issued {
            return Err(ServiceError::new(ErrorCode::StatementState, format!("statement: {id} is already approved")));
        }
        let (provider, program, total) = (statement.provider, statement.program, statement.voucher_total_fen);
        let now = self.now_s();
        let mut change = self.begin();
        if total > Fen::ZERO {
            change.ledger.push(transfer(
                change.next_sequence(),
                0,
                TransferKind::Settle,
                account_id(AccountKind::ProviderReceivable, provider.get(), program.get()),
                account_id(AccountKind::Settlement, program.get(), 0),
                total.fen(),
            ));
        }
        self.record(&mut change, Event::StatementApproved { statement: id }, now);
        self.commit(actor, now, change)
    }
}
