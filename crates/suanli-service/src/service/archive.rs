//! Archiving: an order that ended [`ARCHIVE_AFTER_S`] ago can no longer change (late usage
//! records are taken until then), so it leaves the writer's memory for storage. The writer's
//! memory then grows with the orders open in the last month, not with every order ever placed.
//!
//! One `orders.archived` entry names the orders; the same commit writes each as it was into
//! storage's archive, where readers find it by id or page through it (see
//! [`suanli_store::orders`]). Approved statements' lines go the same way (`statements.archived`;
//! the state keeps their sums for the reports, [`View::usage_parts`]), and tokens that expired a
//! week ago are purged (`tokens.purged`). [`Service::archive`] runs all three.

use super::*;
use crate::model::{Statement, StatementLine};
use suanli_domain::AuthorityId;
use suanli_store::orders::{LineRow, LinesOf, OrderFilter, OrderRow};

/// How long after its end an order still takes late usage records, and so stays in memory: a
/// month and a day, so a provider reporting monthly is still in time.
pub const ARCHIVE_AFTER_S: i64 = 31 * 86_400;

/// The most orders one commit archives (one log entry, a bounded transaction).
pub const ARCHIVE_ORDERS_PER_COMMIT_MAX: usize = 1_000;

/// The most statement lines one commit archives (past the first statement's).
pub const ARCHIVE_LINES_PER_COMMIT_MAX: usize = 20_000;

/// How long after it expired a token stays in memory (and in the token lists): a week, so an
/// admin sees why a session ended.
pub const TOKEN_PURGE_AFTER_S: i64 = 7 * 86_400;

impl Service {
    /// Archives every order that ended [`ARCHIVE_AFTER_S`] ago or earlier, a bounded number to a
    /// commit. Answers how many were archived. The writer runs it before each checkpoint, so a
    /// checkpoint never holds them.
    pub fn archive_orders(&mut self, actor: &Actor) -> Result<usize> {
        let now = self.now_s();
        let due: Vec<OrderId> = self
            .state
            .orders
            .values()
            .filter(|o| o.ended_at_s.is_some_and(|ended| ended <= now.saturating_sub(ARCHIVE_AFTER_S)))
            .map(|o| o.id)
            .collect();
        for chunk in due.chunks(ARCHIVE_ORDERS_PER_COMMIT_MAX) {
            let mut change = self.begin();
            change.archive.orders = chunk.iter().map(|id| self.archive_row(&self.state.orders[id])).collect();
            self.record(&mut change, Event::OrdersArchived { orders: chunk.to_vec() }, now);
            self.commit(actor, now, change)?;
        }
        Ok(due.len())
    }

    /// Moves what has become final out of memory: orders past their late-record window, approved
    /// statements' lines and tokens expired a week ago.
    pub fn archive(&mut self, actor: &Actor) -> Result<()> {
        self.archive_orders(actor)?;
        self.archive_statements(actor)?;
        self.purge_tokens(actor)?;
        Ok(())
    }

    /// Archives the lines of every approved statement still holding them, a bounded number of
    /// lines to a commit. Answers how many statements.
    pub fn archive_statements(&mut self, actor: &Actor) -> Result<usize> {
        let now = self.now_s();
        let due: Vec<(StatementId, usize)> = self
            .state
            .statements
            .values()
            .filter(|st| st.state == StatementState::Approved && !st.lines.is_empty())
            .map(|st| (st.id, st.lines.len()))
            .collect();
        let mut rest = due.as_slice();
        while !rest.is_empty() {
            // At least one statement a commit, then as many as fit the bound.
            let mut lines = rest[0].1;
            let mut take = 1;
            while take < rest.len() && lines + rest[take].1 <= ARCHIVE_LINES_PER_COMMIT_MAX {
                lines += rest[take].1;
                take += 1;
            }
            let (chunk, after) = rest.split_at(take);
            rest = after;
            let mut change = self.begin();
            for (id, _) in chunk {
                let statement = &self.state.statements[id];
                change.archive.lines.extend(statement.lines.iter().map(|line| LineRow {
                    statement: id.get(),
                    order: line.order.get(),
                    enterprise: line.enterprise.get(),
                    body: serde_json::to_string(line).expect("lines serialize"),
                }));
            }
            let statements = chunk.iter().map(|(id, _)| *id).collect();
            self.record(&mut change, Event::StatementsArchived { statements }, now);
            self.commit(actor, now, change)?;
        }
        Ok(due.len())
    }

    /// Purges every token that expired [`TOKEN_PURGE_AFTER_S`] ago or earlier (each login adds
    /// one, so memory would otherwise grow with logins). Answers how many were purged.
    pub fn purge_tokens(&mut self, actor: &Actor) -> Result<usize> {
        let now = self.now_s();
        let due: Vec<u64> = self
            .state
            .tokens
            .values()
            .filter(|t| t.expires_at_s.is_some_and(|e| e <= now.saturating_sub(TOKEN_PURGE_AFTER_S)))
            .map(|t| t.id)
            .collect();
        for chunk in due.chunks(ARCHIVE_ORDERS_PER_COMMIT_MAX) {
            let mut change = self.begin();
            self.record(&mut change, Event::TokensPurged { tokens: chunk.to_vec() }, now);
            self.commit(actor, now, change)?;
        }
        Ok(due.len())
    }

    /// Who order `id` belongs to: its enterprise, provider and programme, from memory or, archived,
    /// from storage (so a refusal to act on it tells only those who may see it that it exists).
    pub fn order_parties(&mut self, id: OrderId) -> Result<(EnterpriseId, ProviderId, ProgramId)> {
        if let Some(o) = self.state.orders.get(&id) {
            return Ok((o.enterprise, o.provider, o.program));
        }
        if !self.is_archived(id) {
            return Err(ServiceError::not_found(id));
        }
        let body = self.durable.archived_order(id.get()).map_err(storage_error)?;
        let o = stored(&body.ok_or_else(|| ServiceError::not_found(id))?)?;
        Ok((o.enterprise, o.provider, o.program))
    }

    fn archive_row(&self, order: &Order) -> OrderRow {
        OrderRow {
            id: order.id.get(),
            program: order.program.get(),
            authority: self.state.programs[&order.program].authority.get(),
            enterprise: order.enterprise.get(),
            provider: order.provider.get(),
            state: order.state.as_str().to_owned(),
            placed_at_s: order.placed_at_s,
            cost_fen: order.cost_fen.fen(),
            body: serde_json::to_string(order).expect("orders serialize"),
        }
    }
}

/// Which orders a list asks for, and within whose scope.
#[derive(Clone, Debug, Default)]
pub struct OrderQuery {
    pub program: Option<ProgramId>,
    /// `placed`, `running`, `completed` or `cancelled`.
    pub state: Option<String>,
    /// Set for a caller who sees only one authority's programmes, one enterprise's or one
    /// provider's orders; none for the platform's overseers.
    pub authority: Option<AuthorityId>,
    pub enterprise: Option<EnterpriseId>,
    pub provider: Option<ProviderId>,
}

impl OrderQuery {
    fn admits(&self, s: &State, o: &Order) -> bool {
        self.program.is_none_or(|p| o.program == p)
            && self.state.as_deref().is_none_or(|wanted| o.state.as_str() == wanted)
            && self.authority.is_none_or(|a| s.programs.get(&o.program).is_some_and(|p| p.authority == a))
            && self.enterprise.is_none_or(|e| o.enterprise == e)
            && self.provider.is_none_or(|p| o.provider == p)
    }

    fn filter(&self) -> OrderFilter {
        OrderFilter {
            program: self.program.map(|p| p.get()),
            authority: self.authority.map(|a| a.get()),
            enterprise: self.enterprise.map(|e| e.get()),
            provider: self.provider.map(|p| p.get()),
            state: self.state.clone(),
        }
    }
}

/// A page of orders: those on it, in id order, and how many match in all.
#[derive(Clone, Debug)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub total: u64,
}

fn order_id(id: u64) -> OrderId {
    OrderId::new(id).expect("stored ids are positive")
}

fn stored(body: &str) -> Result<Order> {
    serde_json::from_str(body)
        .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("an archived order cannot be read: {e}")))
}

fn storage(error: suanli_store::StoreError) -> ServiceError {
    ServiceError::new(ErrorCode::StorageUnavailable, error.to_string())
}

impl View {
    /// Whether `id` names an order that was archived (it was placed and is no longer in memory).
    pub fn is_archived(&self, id: OrderId) -> bool {
        !self.state.orders.contains_key(&id) && id.get() <= self.state.orders.len() as u64 + self.state.orders_archived
    }

    /// Order `id`, from memory or, archived, from storage. The view is taken before the read, so
    /// an order archived since is found in storage, which the archiving commit wrote first.
    pub fn find_order(&self, id: OrderId, reader: &mut suanli_store::LogReader) -> Result<Order> {
        if let Some(order) = self.state.orders.get(&id) {
            return Ok(order.clone());
        }
        match reader.archived_order(id.get()).map_err(storage)? {
            Some(body) => stored(&body),
            None => Err(ServiceError::not_found(id)),
        }
    }

    /// One page of the orders `query` admits, in id order, from memory and storage's archive.
    pub fn orders_page(
        &self,
        query: &OrderQuery,
        offset: u64,
        limit: usize,
        reader: &mut suanli_store::LogReader,
    ) -> Result<OrderPage> {
        let s = &self.state;
        let live: Vec<&Order> = s.orders.values().filter(|o| query.admits(s, o)).collect();
        // The ids of the first `offset + limit` archived ones are enough: the page cannot reach
        // further. Only the page's bodies are read.
        let wanted = offset.saturating_add(limit as u64);
        let (ids, archived_total) = reader.archived_order_ids(&query.filter(), wanted).map_err(storage)?;
        // An order archived after this view was taken is in both: memory's copy counts once.
        let archived: Vec<u64> = ids.iter().copied().filter(|id| !s.orders.contains_key(&order_id(*id))).collect();
        let total = live.len() as u64 + archived_total - (ids.len() - archived.len()) as u64;
        let mut merged: Vec<Result<&Order, u64>> = Vec::with_capacity(live.len() + archived.len());
        let (mut a, mut b) = (live.into_iter().peekable(), archived.into_iter().peekable());
        while let Some(next) = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.id.get() <= *y => a.next().map(Ok),
            (_, Some(_)) => b.next().map(Err),
            (Some(_), None) => a.next().map(Ok),
            (None, None) => None,
        } {
            merged.push(next);
        }
        let window: Vec<Result<&Order, u64>> = merged.into_iter().skip(offset as usize).take(limit).collect();
        let wanted_ids: Vec<u64> = window.iter().filter_map(|item| item.err()).collect();
        let mut bodies = reader.archived_orders(&wanted_ids).map_err(storage)?.into_iter();
        let mut orders = Vec::with_capacity(window.len());
        for item in window {
            match item {
                Ok(order) => orders.push(order.clone()),
                Err(_) => orders.push(stored(&bodies.next().ok_or_else(|| {
                    ServiceError::new(ErrorCode::StorageUnavailable, "an archived order was not found; retry")
                })?)?),
            }
        }
        Ok(OrderPage { orders, total })
    }
}

/// Usage on statement lines, from memory or summed once archived: what the reports read.
#[derive(Clone, Copy, Debug)]
pub struct UsagePart {
    pub program: ProgramId,
    pub month: YearMonth,
    pub pool: PoolId,
    /// The enterprise, for a line still in memory.
    pub enterprise: Option<EnterpriseId>,
    /// The enterprise's kind, province and size band (an index into
    /// [`crate::model::SIZE_BANDS`]), if known.
    pub group: Option<(suanli_domain::ApplicantKind, suanli_domain::RegionCode, u8)>,
    pub standing: Standing,
    pub sums: crate::model::LineSums,
}

/// Where a line stands: still open (not on a statement), on an issued statement, or settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Open,
    Issued,
    Settled,
}

impl View {
    /// Every line's usage of the programmes `admitted`: the lines in memory (open, on issued
    /// statements, on approved statements not archived yet) and the sums of archived ones.
    pub fn usage_parts(&self, admitted: impl Fn(ProgramId) -> bool) -> Vec<UsagePart> {
        let s = &self.state;
        let group_of = |enterprise: EnterpriseId| {
            s.enterprises.get(&enterprise).map(|e| (e.kind, e.region.province(), crate::model::size_band(e.headcount)))
        };
        let part = |program, month, line: &StatementLine, standing| UsagePart {
            program,
            month,
            pool: line.pool,
            enterprise: Some(line.enterprise),
            group: group_of(line.enterprise),
            standing,
            sums: crate::model::LineSums::of(line),
        };
        let mut parts = Vec::new();
        for st in s.statements.values().filter(|st| admitted(st.program)) {
            let Some(month) = YearMonth::parse(&st.month) else { continue };
            let standing = if st.state == StatementState::Approved { Standing::Settled } else { Standing::Issued };
            parts.extend(st.lines.iter().map(|line| part(st.program, month, line, standing)));
        }
        for ((_, program, month), open) in s.unsettled.iter().filter(|((_, p, _), _)| admitted(*p)) {
            parts.extend(open.values().map(|line| part(*program, *month, line, Standing::Open)));
        }
        for (key, sums) in s.settled.iter().filter(|(k, _)| admitted(k.program)) {
            parts.push(UsagePart {
                program: key.program,
                month: YearMonth { year: key.month.0, month: key.month.1 },
                pool: key.pool,
                enterprise: None,
                group: Some((key.kind, key.province, key.size_band)),
                standing: Standing::Settled,
                sums: *sums,
            });
        }
        parts
    }

    /// Statement `id` with its lines, read back from storage once archived.
    pub fn statement_with_lines(&self, id: StatementId, reader: &mut suanli_store::LogReader) -> Result<Statement> {
        let mut statement = self.state.statements.get(&id).ok_or_else(|| ServiceError::not_found(id))?.clone();
        if statement.state == StatementState::Approved && statement.lines.is_empty() {
            for (_, body) in reader.archived_lines(LinesOf::Statement(id.get())).map_err(storage)? {
                statement.lines.push(line(&body)?);
            }
        }
        Ok(statement)
    }

    /// The archived lines of `enterprise`'s usage, with their statements.
    pub fn archived_lines_of(
        &self,
        enterprise: EnterpriseId,
        reader: &mut suanli_store::LogReader,
    ) -> Result<Vec<(StatementId, StatementLine)>> {
        let rows = reader.archived_lines(LinesOf::Enterprise(enterprise.get())).map_err(storage)?;
        rows.into_iter()
            .map(|(statement, body)| Ok((StatementId::new(statement).expect("stored ids are positive"), line(&body)?)))
            .collect()
    }
}

fn line(body: &str) -> Result<StatementLine> {
    serde_json::from_str(body)
        .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("an archived statement line cannot be read: {e}")))
}
