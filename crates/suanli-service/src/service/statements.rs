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

    /// Issues every statement that is due: each provider's and programme's month that has ended
    /// with usage recorded in it and no statement yet (a server runs this on its schedule, so no
    /// provider waits for someone to ask). Usage is kept by the month it was recorded in, so an
    /// ended month takes no more lines and its statement is final. Answers the statements issued.
    pub fn issue_due_statements(&mut self, actor: &Actor) -> Result<Vec<StatementId>> {
        let this_month = YearMonth::of(self.now_s());
        let due: Vec<_> = self.state.unsettled.keys().filter(|(_, _, month)| *month < this_month).copied().collect();
        let mut issued = Vec::with_capacity(due.len());
        for (provider, program, month) in due {
            match self.issue_statement(actor, provider, program, month) {
                Ok(id) => issued.push(id),
                // Lines recorded in a month after its statement (a clock stepped back over the
                // month's end) wait for a person; they do not stop the other months.
                Err(refused) if refused.code == ErrorCode::StatementExists => {}
                Err(error) => return Err(error),
            }
        }
        Ok(issued)
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
