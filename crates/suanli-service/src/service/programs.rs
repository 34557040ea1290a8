//! Programmes: load, open, close, finish.

use super::*;

impl Service {
    /// Loads a programme file as a draft. Loading the same file again is a no-op that returns the
    /// same id; a different file with the same key is refused.
    pub fn load_program(&mut self, actor: &Actor, source: &str) -> Result<ProgramId> {
        let terms = parse_program(source)?;
        if let Some(id) = self.state.program_by_key.get(&terms.key) {
            if self.state.programs[id].terms == terms {
                return Ok(*id);
            }
            return Err(ServiceError::new(
                ErrorCode::ProgramExists,
                format!("key: programme {:?} is already loaded as {id} with different terms", terms.key),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let authority = match self.state.authority_by_region.get(&terms.authority_region) {
            Some(id) => *id,
            None => {
                let id = self.state.next_authority();
                self.ensure_account(&mut change, AccountKind::Appropriation, id.get(), 0);
                let authority = Authority { id, region: terms.authority_region, name: terms.authority_name.clone() };
                self.record(&mut change, Event::AuthorityCreated { authority }, now);
                id
            }
        };
        let id = self.state.next_program();
        self.ensure_account(&mut change, AccountKind::Budget, id.get(), 0);
        self.ensure_account(&mut change, AccountKind::Settlement, id.get(), 0);
        let program = NewProgram { id, authority, terms };
        self.record(&mut change, Event::ProgramLoaded { program: Box::new(program) }, now);
        self.commit(actor, now, change)?;
        Ok(id)
    }
}

impl Service {
    /// Replaces a draft programme's terms with those of `source`, checked as loading checks
    /// them. The key and the authority's region stay what they were (the authority and the
    /// accounts hang on them); a programme once opened is never amended.
    pub fn amend_program(&mut self, actor: &Actor, id: ProgramId, source: &str) -> Result<()> {
        let terms = parse_program(source)?;
        let program = self.program(id)?;
        if program.state != ProgramState::Draft {
            return Err(ServiceError::new(
                ErrorCode::ProgramState,
                format!("program: {id} is {:?}; only a draft is amended", program.state),
            ));
        }
        if terms.key != program.terms.key {
            return Err(ServiceError::new(
                ErrorCode::ProgramFileInvalid,
                format!("key: a draft keeps its key {:?}", program.terms.key),
            ));
        }
        if terms.authority_region != program.terms.authority_region {
            return Err(ServiceError::new(
                ErrorCode::ProgramFileInvalid,
                format!("authority.region: a draft keeps its authority's region {}", program.terms.authority_region),
            ));
        }
        if terms == program.terms {
            return Ok(());
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ProgramAmended { program: id, terms: Box::new(terms) }, now);
        self.commit(actor, now, change)
    }
}

impl View {
    pub fn program(&self, id: ProgramId) -> Result<&Program> {
        self.state.programs.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl View {
    /// Finds a programme by id (`prg-1`) or key (`shanghai-compute`).
    pub fn find_program(&self, text: &str) -> Result<ProgramId> {
        if let Ok(id) = ProgramId::parse(text) {
            return self.program(id).map(|p| p.id);
        }
        self.state
            .program_by_key
            .get(text)
            .copied()
            .ok_or_else(|| ServiceError::not_found(format!("programme {text:?}")))
    }
}

impl Service {
    /// Draft → open: the budget moves from the authority's appropriation to the programme.
    pub fn open_program(&mut self, actor: &Actor, id: ProgramId) -> Result<()> {
        let program = self.program(id)?;
        require_program_state(program, ProgramState::Draft, "open")?;
        let (authority, budget) = (program.authority, program.terms.budget_fen);
        let now = self.now_s();
        let mut change = self.begin();
        change.ledger.push(transfer(
            change.next_sequence(),
            0,
            TransferKind::Fund,
            account_id(AccountKind::Appropriation, authority.get(), 0),
            account_id(AccountKind::Budget, id.get(), 0),
            budget.fen(),
        ));
        self.record(&mut change, Event::ProgramOpened { program: id, funded_fen: budget }, now);
        self.commit(actor, now, change)
    }

    /// Open → closed: no new applications; reviews, orders and usage go on.
    pub fn close_program(&mut self, actor: &Actor, id: ProgramId) -> Result<()> {
        require_program_state(self.program(id)?, ProgramState::Open, "close")?;
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ProgramClosed { program: id }, now);
        self.commit(actor, now, change)
    }

    /// Closed → finished: once no voucher is active or suspended and no order holds money, the
    /// unissued budget returns to the authority's appropriation.
    pub fn finish_program(&mut self, actor: &Actor, id: ProgramId) -> Result<Fen> {
        let program = self.program(id)?;
        require_program_state(program, ProgramState::Closed, "finish")?;
        let open: Vec<String> = self
            .state
            .vouchers
            .values()
            .filter(|v| v.program == id && matches!(v.state, VoucherState::Active | VoucherState::Suspended))
            .map(|v| v.id.to_string())
            .chain(
                self.state
                    .orders
                    .values()
                    .filter(|o| o.program == id && o.hold_remaining_fen > Fen::ZERO)
                    .map(|o| o.id.to_string()),
            )
            .collect();
        if !open.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::ProgramHasOpenVouchers,
                format!("program: {id} still has open vouchers or held orders: {}", open.join(", ")),
            ));
        }
        let (authority, returned) = (program.authority, program.budget_remaining_fen);
        let now = self.now_s();
        let mut change = self.begin();
        if returned > Fen::ZERO {
            change.ledger.push(transfer(
                change.next_sequence(),
                0,
                TransferKind::ReturnToAppropriation,
                account_id(AccountKind::Budget, id.get(), 0),
                account_id(AccountKind::Appropriation, authority.get(), 0),
                returned.fen(),
            ));
        }
        self.record(&mut change, Event::ProgramFinished { program: id, returned_fen: returned }, now);
        self.commit(actor, now, change)?;
        Ok(returned)
    }
}
