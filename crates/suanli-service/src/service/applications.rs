//! Enterprises, eligibility, applications and the vouchers their approval issues.

use super::*;

impl Service {
    pub fn register_enterprise(&mut self, actor: &Actor, input: EnterpriseInput) -> Result<EnterpriseId> {
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.register_into(&mut change, input, now)?;
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// An enterprise registering itself with its login, in one commit: both, or neither.
    pub fn register_with_login(
        &mut self,
        actor: &Actor,
        input: EnterpriseInput,
        name: &str,
        password_phc: &str,
    ) -> Result<EnterpriseId> {
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.register_into(&mut change, input, now)?;
        if let Err(error) = self.add_user_into(&mut change, name, Role::Enterprise(id), password_phc, now) {
            self.forget(&change);
            return Err(error);
        }
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// Checks a registration and records it into `change` (nothing is recorded when refused).
    fn register_into(&mut self, change: &mut Change, input: EnterpriseInput, now: i64) -> Result<EnterpriseId> {
        check_text("name", &input.name)?;
        for (index, project) in input.research_projects.iter().enumerate() {
            check_text(&format!("research_projects[{index}]"), project)?;
        }
        if input.related_parties.contains(&input.uscc) {
            return Err(ServiceError::field("related_parties", "an enterprise is not its own related party"));
        }
        if let Some(existing) = self.state.enterprise_by_uscc.get(&input.uscc) {
            return Err(ServiceError::new(
                ErrorCode::AlreadyExists,
                format!("uscc: {} is already registered as {existing}", input.uscc),
            ));
        }
        // The region an enterprise claims must agree with where its USCC was issued (one within
        // the other): eligibility reads the region, so it is never believed against the code.
        let issued = input.uscc.region();
        if !(input.region.within(issued) || issued.within(input.region)) {
            return Err(ServiceError::field(
                "region",
                format!(
                    "{} is not where the enterprise's USCC {} was issued ({issued}); the region must agree with it",
                    input.region, input.uscc
                ),
            ));
        }
        let id = self.state.next_enterprise();
        self.ensure_account(change, AccountKind::Enterprise, id.get(), 0);
        let enterprise = NewEnterprise {
            id,
            uscc: input.uscc,
            name: input.name,
            region: input.region,
            kind: input.kind,
            headcount: input.headcount,
            revenue_fen: input.revenue_fen,
            research_projects: input.research_projects,
            related_parties: input.related_parties,
            registered_at_s: now,
        };
        self.record(change, Event::EnterpriseRegistered { enterprise: Box::new(enterprise) }, now);
        Ok(id)
    }
}

impl View {
    pub fn enterprise(&self, id: EnterpriseId) -> Result<&Enterprise> {
        self.state.enterprises.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl View {
    /// Every eligibility verdict of `enterprise` for `program`, the applicant-kind rule first.
    pub fn eligibility(&self, enterprise: EnterpriseId, program: ProgramId) -> Result<Vec<(String, Verdict)>> {
        self.eligibility_worded(enterprise, program, Wording::English)
    }

    /// [`View::eligibility`] with the reasons in `wording` (the console's Chinese pages).
    pub fn eligibility_worded(
        &self,
        enterprise: EnterpriseId,
        program: ProgramId,
        wording: Wording,
    ) -> Result<Vec<(String, Verdict)>> {
        verdicts(self.enterprise(enterprise)?, &self.program(program)?.terms, wording)
    }

    /// What `source`, a programme file, would be, checked as loading it checks it, and each
    /// registered enterprise's verdicts under its rules: the programme editor's preview. Nothing
    /// is written.
    pub fn preview_program(&self, source: &str, wording: Wording) -> Result<ProgramPreview> {
        let terms = crate::program_file::parse_program(source)?;
        let enterprises = self
            .state
            .enterprises
            .values()
            .map(|e| Ok((e.id, verdicts(e, &terms, wording)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ProgramPreview { terms, enterprises })
    }
}

/// A programme file checked but not loaded, and every registered enterprise's verdicts under it.
#[derive(Clone, Debug)]
pub struct ProgramPreview {
    pub terms: crate::model::ProgramTerms,
    pub enterprises: Vec<(EnterpriseId, Vec<(String, Verdict)>)>,
}

/// Every eligibility verdict of `enterprise` under `terms`, the applicant-kind rule first.
fn verdicts(
    enterprise: &Enterprise,
    terms: &crate::model::ProgramTerms,
    wording: Wording,
) -> Result<Vec<(String, Verdict)>> {
    {
        let program = terms;
        let profile = Profile {
            kind: enterprise.kind,
            region: enterprise.region,
            headcount: enterprise.headcount,
            revenue: enterprise.revenue_fen,
            research_projects: u32::try_from(enterprise.research_projects.len()).unwrap_or(u32::MAX),
        };
        let kinds = &program.applicant_kinds;
        let kind_names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let listed = kinds.contains(&enterprise.kind);
        let reason = match wording {
            Wording::English => format!(
                "kind {} is {}one of {}",
                enterprise.kind,
                if listed { "" } else { "not " },
                kind_names.join(", ")
            ),
            Wording::Chinese => format!(
                "主体类型 {} {} {}",
                enterprise.kind.chinese(),
                if listed { "属于" } else { "不属于" },
                kinds.iter().map(|k| k.chinese()).collect::<Vec<_>>().join("、")
            ),
        };
        let kind_verdict = Verdict { passed: listed, reason };
        let mut verdicts = vec![("applicant_kind".to_owned(), kind_verdict)];
        for named in &program.eligibility {
            let rule = Rule::parse(&named.rule).map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?;
            verdicts.push((named.name.clone(), rule.evaluate_worded(&profile, wording)));
        }
        Ok(verdicts)
    }
}

impl Service {
    pub fn create_application(
        &mut self,
        actor: &Actor,
        enterprise: EnterpriseId,
        program: ProgramId,
        requested: Fen,
        note: &str,
    ) -> Result<ApplicationId> {
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.draft_into(&mut change, enterprise, program, requested, note, now)?;
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// Drafts and submits an application in one commit: submitted, or nothing at all.
    pub fn apply(
        &mut self,
        actor: &Actor,
        enterprise: EnterpriseId,
        program: ProgramId,
        requested: Fen,
        note: &str,
    ) -> Result<ApplicationId> {
        let now = self.now_s();
        let mut change = self.begin();
        let id = self.draft_into(&mut change, enterprise, program, requested, note, now)?;
        if let Err(error) = self.submit_into(&mut change, id, now) {
            self.forget(&change);
            return Err(error);
        }
        self.commit(actor, now, change)?;
        Ok(id)
    }

    /// Checks a draft and records it into `change` (nothing is recorded when refused).
    fn draft_into(
        &mut self,
        change: &mut Change,
        enterprise: EnterpriseId,
        program: ProgramId,
        requested: Fen,
        note: &str,
        now: i64,
    ) -> Result<ApplicationId> {
        self.enterprise(enterprise)?;
        let terms = &self.program(program)?.terms;
        if requested <= Fen::ZERO {
            return Err(ServiceError::field("amount", "must be positive"));
        }
        if requested > terms.enterprise_cap_fen {
            return Err(ServiceError::new(
                ErrorCode::EnterpriseCapExceeded,
                format!("amount: {requested} is above the programme's per-enterprise cap {}", terms.enterprise_cap_fen),
            ));
        }
        check_text_allow_empty("note", note)?;
        let id = self.state.next_application();
        let application = NewApplication {
            id,
            enterprise,
            program,
            requested_fen: requested,
            note: note.to_owned(),
            created_at_s: now,
        };
        self.record(change, Event::ApplicationCreated { application: Box::new(application) }, now);
        Ok(id)
    }
}

impl View {
    pub fn application(&self, id: ApplicationId) -> Result<&Application> {
        self.state.applications.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}

impl Service {
    /// Draft → submitted, inside the programme's application window while it is open.
    pub fn submit_application(&mut self, actor: &Actor, id: ApplicationId) -> Result<()> {
        let now = self.now_s();
        let mut change = self.begin();
        self.submit_into(&mut change, id, now)?;
        self.commit(actor, now, change)
    }

    /// Checks a submission and records it into `change` (nothing is recorded when refused).
    fn submit_into(&mut self, change: &mut Change, id: ApplicationId, now: i64) -> Result<()> {
        let application = self.application(id)?;
        require_application_state(application, ApplicationState::Draft, "submit")?;
        let program = self.program(application.program)?;
        if program.state != ProgramState::Open {
            return Err(ServiceError::new(
                ErrorCode::ProgramState,
                format!("program: {} is {:?}, not open, so it takes no applications", program.id, program.state),
            ));
        }
        let terms = &program.terms;
        if now < terms.applications_open_s || now >= terms.applications_close_s {
            return Err(ServiceError::new(
                ErrorCode::ApplicationWindowClosed,
                format!(
                    "submitted_at: {} is outside the application window {} to {}",
                    format_timestamp(now),
                    format_timestamp(terms.applications_open_s),
                    format_timestamp(terms.applications_close_s)
                ),
            ));
        }
        // An application the caps or the stacking rule already refuse would never be approved:
        // refused now, with the reason, instead of waiting in the queue.
        let (application, program) = (application.clone(), program.clone());
        self.check_caps(&application, &program, Fen::new(1))?;
        self.record(change, Event::ApplicationSubmitted { application: id }, now);
        Ok(())
    }

    pub fn withdraw_application(&mut self, actor: &Actor, id: ApplicationId) -> Result<()> {
        let application = self.application(id)?;
        if !matches!(application.state, ApplicationState::Draft | ApplicationState::Submitted) {
            return Err(ServiceError::new(
                ErrorCode::ApplicationState,
                format!("application: {id} is {:?} and can no longer be withdrawn", application.state),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ApplicationWithdrawn { application: id }, now);
        self.commit(actor, now, change)
    }

    pub fn reject_application(&mut self, actor: &Actor, id: ApplicationId, reason: &str) -> Result<()> {
        require_application_state(self.application(id)?, ApplicationState::Submitted, "reject")?;
        check_text("reason", reason)?;
        let now = self.now_s();
        let mut change = self.begin();
        self.record(&mut change, Event::ApplicationRejected { application: id, reason: reason.to_owned() }, now);
        self.commit(actor, now, change)
    }

    /// Submitted → approved with `amount`: a voucher is issued and its face value taken from the
    /// budget now. Refused, with the reason, for an ineligible applicant, beyond the request, the
    /// per-enterprise cap, the stacking rule or the remaining budget, and when money still free
    /// is owed to applications submitted earlier.
    pub fn approve_application(&mut self, actor: &Actor, id: ApplicationId, amount: Fen) -> Result<VoucherId> {
        self.approve_application_at(actor, id, amount, None)
    }

    /// Approves with `amount` and, when given, a subsidy rate for this voucher at most the
    /// programme's (which is then a maximum, as Shanghai's "up to 80%").
    pub fn approve_application_at(
        &mut self,
        actor: &Actor,
        id: ApplicationId,
        amount: Fen,
        rate: Option<RateBp>,
    ) -> Result<VoucherId> {
        let application = self.application(id)?.clone();
        require_application_state(&application, ApplicationState::Submitted, "approve")?;
        let program = self.program(application.program)?.clone();
        if program.terms.allocation == crate::model::Allocation::Lottery {
            return Err(ServiceError::new(
                ErrorCode::ApplicationState,
                format!(
                    "application: {id} is in {}, which allocates by lottery: it is approved when drawn \
                     (commit a seed, then draw the round)",
                    program.id
                ),
            ));
        }
        self.check_approval(&application, &program, amount, rate)?;
        // First come, first served: money still free is owed first to applications submitted
        // earlier and not yet decided, except those that cannot be approved as things stand
        // (ineligible, or refused by a cap or the stacking rule): they hold nothing back.
        let submitted_at = application.submitted_at_s.unwrap_or(i64::MAX);
        let earlier: Vec<&Application> = self
            .submitted_applications(program.id)
            .filter(|a| a.id != id && (a.submitted_at_s, a.id) < (Some(submitted_at), id))
            .filter(|a| self.blocked_reason(a, &program).is_none())
            .collect();
        let owed_earlier = earlier.iter().map(|a| a.requested_fen).try_fold(Fen::ZERO, |sum, r| sum.checked_add(r))?;
        let free = program.budget_remaining_fen.checked_sub(owed_earlier)?;
        if amount > free {
            let names: Vec<String> = earlier.iter().map(|a| a.id.to_string()).collect();
            return Err(ServiceError::new(
                ErrorCode::BudgetReservedForEarlierApplications,
                format!(
                    "amount: {amount} is more than the {} not owed to earlier applications ({}, asking {owed_earlier}); \
                     decide those first",
                    Fen::new(free.fen().max(0)),
                    names.join(", ")
                ),
            ));
        }
        let now = self.now_s();
        let mut change = self.begin();
        let voucher_id = self.issue_into(&mut change, &application, &program, amount, rate, now);
        self.commit(actor, now, change)?;
        Ok(voucher_id)
    }

    /// Every check an approval of `amount` makes but the order of arrival: the programme open or
    /// closed, the amount within the request, the applicant eligible, the rate at most the
    /// programme's, the caps and the stacking rule, the budget.
    pub(super) fn check_approval(
        &self,
        application: &Application,
        program: &Program,
        amount: Fen,
        rate: Option<RateBp>,
    ) -> Result<()> {
        if !matches!(program.state, ProgramState::Open | ProgramState::Closed) {
            return Err(ServiceError::new(
                ErrorCode::ProgramState,
                format!("program: {} is {:?}; approvals need it open or closed", program.id, program.state),
            ));
        }
        if amount <= Fen::ZERO {
            return Err(ServiceError::field("amount", "must be positive"));
        }
        if amount > application.requested_fen {
            return Err(ServiceError::new(
                ErrorCode::AmountAboveRequest,
                format!("amount: {amount} is more than the {} requested", application.requested_fen),
            ));
        }
        let failed: Vec<String> = self
            .eligibility(application.enterprise, program.id)?
            .into_iter()
            .filter(|(_, verdict)| !verdict.passed)
            .map(|(name, verdict)| format!("{name}: {}", verdict.reason))
            .collect();
        if !failed.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::NotEligible,
                format!("enterprise: {} is not eligible: {}", application.enterprise, failed.join("; ")),
            ));
        }
        if let Some(rate) = rate
            && (rate > program.terms.subsidy_rate_bp || rate == RateBp::ZERO)
        {
            return Err(ServiceError::field(
                "rate_bp",
                format!("{rate} is not above 0 and at most the programme's rate {}", program.terms.subsidy_rate_bp),
            ));
        }
        self.check_caps(application, program, amount)?;
        if amount > program.budget_remaining_fen {
            return Err(ServiceError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "amount: {amount} is more than the {} left in {}'s budget",
                    program.budget_remaining_fen, program.id
                ),
            ));
        }
        Ok(())
    }

    /// Records the approval of a checked application: the voucher's account, the issue transfer
    /// from the budget, and the event.
    pub(super) fn issue_into(
        &mut self,
        change: &mut Change,
        application: &Application,
        program: &Program,
        amount: Fen,
        rate: Option<RateBp>,
        now: i64,
    ) -> VoucherId {
        let voucher_id = self.state.next_voucher();
        self.ensure_account(change, AccountKind::Voucher, voucher_id.get(), 0);
        change.ledger.push(transfer(
            change.next_sequence(),
            0,
            TransferKind::Issue,
            account_id(AccountKind::Budget, program.id.get(), 0),
            account_id(AccountKind::Voucher, voucher_id.get(), 0),
            amount.fen(),
        ));
        let voucher = NewVoucher {
            id: voucher_id,
            enterprise: application.enterprise,
            program: program.id,
            application: application.id,
            face_value_fen: amount,
            issued_at_s: now,
            expires_at_s: now + i64::from(program.terms.voucher_validity_days) * 86_400,
            // The programme's own rate is kept as none, so a voucher never pins what it defaults to.
            rate_bp: rate.filter(|r| *r != program.terms.subsidy_rate_bp),
        };
        self.record(
            change,
            Event::ApplicationApproved { application: application.id, voucher: Box::new(voucher) },
            now,
        );
        voucher_id
    }
}

impl View {
    /// Why a submitted application cannot be approved as things stand (ineligible, or refused
    /// by a cap or the stacking rule even for one fen), or `None` when it could be.
    pub fn blocked_reason(&self, application: &Application, program: &Program) -> Option<String> {
        match self.eligibility(application.enterprise, program.id) {
            Ok(verdicts) => {
                let failed: Vec<String> = verdicts
                    .into_iter()
                    .filter(|(_, verdict)| !verdict.passed)
                    .map(|(name, verdict)| format!("{name}: {}", verdict.reason))
                    .collect();
                if !failed.is_empty() {
                    return Some(format!("not eligible: {}", failed.join("; ")));
                }
            }
            Err(error) => return Some(error.to_string()),
        }
        self.check_caps(application, program, Fen::new(1)).err().map(|e| e.to_string())
    }

    /// The face value of `enterprise`'s vouchers of `program` that count toward its
    /// per-enterprise cap (every one not revoked).
    pub fn issued_to(&self, enterprise: EnterpriseId, program: ProgramId) -> Result<Fen> {
        Ok(self
            .vouchers_of(enterprise)
            .filter(|v| v.program == program && v.state != VoucherState::Revoked)
            .map(|v| v.face_value_fen)
            .try_fold(Fen::ZERO, |sum, f| sum.checked_add(f))?)
    }

    /// The programme's applications submitted and not decided, through the state's index.
    pub fn submitted_applications(&self, program: ProgramId) -> impl Iterator<Item = &Application> + '_ {
        self.state
            .submitted
            .get(&program)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.state.applications.get(id))
    }

    /// The enterprise's vouchers, through the state's index.
    pub fn vouchers_of(&self, enterprise: EnterpriseId) -> impl Iterator<Item = &Voucher> + '_ {
        self.state
            .vouchers_by_enterprise
            .get(&enterprise)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.state.vouchers.get(id))
    }

    pub(super) fn check_caps(&self, application: &Application, program: &Program, amount: Fen) -> Result<()> {
        let enterprise = application.enterprise;
        let issued_here = self.issued_to(enterprise, program.id)?;
        if let Some(cap) = program.terms.program_annual_cap_fen {
            let year = shanghai_year(self.now_s());
            let issued_this_year = self
                .state
                .vouchers
                .values()
                .filter(|v| v.program == program.id && shanghai_year(v.issued_at_s) == year)
                .try_fold(Fen::ZERO, |sum, v| sum.checked_add(v.face_value_fen.checked_sub(v.returned_fen)?))?;
            if issued_this_year.checked_add(amount)? > cap {
                return Err(ServiceError::new(
                    ErrorCode::ProgramAnnualCapExceeded,
                    format!(
                        "amount: {amount} on top of {issued_this_year} issued by {} in {year} exceeds its annual total {cap}",
                        program.id
                    ),
                ));
            }
        }
        if issued_here.checked_add(amount)? > program.terms.enterprise_cap_fen {
            return Err(ServiceError::new(
                ErrorCode::EnterpriseCapExceeded,
                format!(
                    "amount: {amount} on top of {issued_here} already issued to {enterprise} exceeds the per-enterprise cap {}",
                    program.terms.enterprise_cap_fen
                ),
            ));
        }
        let others: Vec<&Voucher> = self
            .vouchers_of(enterprise)
            .filter(|v| v.program != program.id && matches!(v.state, VoucherState::Active | VoucherState::Suspended))
            .collect();
        for other in &others {
            let other_program = self.program(other.program)?;
            for (rules, name) in [(program, program.id), (other_program, other_program.id)] {
                if !rules.terms.stacking.allowed {
                    return Err(ServiceError::new(
                        ErrorCode::StackingNotAllowed,
                        format!(
                            "enterprise: {enterprise} holds {} of {} and {name} does not allow holding vouchers of several programmes",
                            other.id, other.program
                        ),
                    ));
                }
            }
        }
        let held_everywhere = others
            .iter()
            .map(|v| v.face_value_fen)
            .chain(
                self.vouchers_of(enterprise)
                    .filter(|v| {
                        v.program == program.id && matches!(v.state, VoucherState::Active | VoucherState::Suspended)
                    })
                    .map(|v| v.face_value_fen),
            )
            .try_fold(amount, |sum, f| sum.checked_add(f))?;
        let caps = std::iter::once(program)
            .chain(others.iter().filter_map(|v| self.state.programs.get(&v.program)))
            .filter_map(|p| p.terms.stacking.cap_fen.map(|cap| (p.id, cap)));
        for (capped_by, cap) in caps {
            if held_everywhere > cap {
                return Err(ServiceError::new(
                    ErrorCode::StackingCapExceeded,
                    format!(
                        "amount: vouchers held by {enterprise} across programmes would total {held_everywhere}, above {capped_by}'s cap of {cap}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl View {
    pub fn voucher(&self, id: VoucherId) -> Result<&Voucher> {
        self.state.vouchers.get(&id).ok_or_else(|| ServiceError::not_found(id))
    }
}
