//! The usage received for one order, each record with its result, paged from storage on the log
//! reader (never from memory, never on the writer): an order of a year's hourly records is 8,760
//! rows, and the page drawn is 100 of them.

use serde::Deserialize;
use suanli_domain::OrderId;
use suanli_service::state::UsageEntry;

use super::i18n::{Tr, when, yuan};
use super::pages::ROWS_PER_PAGE;
use crate::{ApiError, AppState};

pub struct UsageRow {
    pub id: String,
    pub period: String,
    pub gpu_hours: String,
    pub recorded: bool,
    /// The cost, voucher part and own part; or the refusal's code and reason.
    pub result: String,
}

pub struct UsagePager {
    pub previous: Option<String>,
    pub next: Option<String>,
    pub shown: String,
    pub any: bool,
}

#[derive(Default, Deserialize)]
pub struct UsageQuery {
    /// The page of usage records, from 0.
    usage: Option<u64>,
}

/// The page of `order`'s usage the query asks for.
pub async fn page(
    state: &AppState,
    tr: Tr,
    order: OrderId,
    query: &UsageQuery,
) -> Result<(Vec<UsageRow>, UsagePager), ApiError> {
    let page = query.usage.unwrap_or(0);
    let offset = page.saturating_mul(ROWS_PER_PAGE as u64);
    let key = order.get();
    let (rows, total) = state
        .writer
        .read_log(move |reader| reader.order_usage(key, offset, ROWS_PER_PAGE))
        .await
        .map_err(ApiError::from)?
        .map_err(ApiError::from)?;
    let shown = if rows.is_empty() {
        format!("0 / {total}")
    } else {
        format!("{}–{} / {total}", offset + 1, offset + rows.len() as u64)
    };
    let link = |n: u64| format!("/orders/{order}?usage={n}");
    let pager = UsagePager {
        previous: (page > 0 && total > 0).then(|| link((page - 1).min((total - 1) / ROWS_PER_PAGE as u64))),
        next: (offset + (rows.len() as u64) < total).then(|| link(page + 1)),
        shown,
        any: total > 0,
    };
    let rows = rows.into_iter().map(|(id, entry)| row(tr, id, &entry)).collect();
    Ok((rows, pager))
}

fn row(tr: Tr, id: String, entry: &str) -> UsageRow {
    let Ok(entry) = serde_json::from_str::<UsageEntry>(entry) else {
        return UsageRow {
            id,
            period: String::new(),
            gpu_hours: String::new(),
            recorded: false,
            result: tr.t("usage.unreadable").to_owned(),
        };
    };
    let facts = entry.facts();
    let (recorded, result) = match &entry {
        UsageEntry::Recorded(_, cost, voucher, own) => (
            true,
            format!(
                "{} {} · {} {} · {} {}",
                tr.t("order.cost"),
                yuan(*cost),
                tr.t("order.voucher_paid"),
                yuan(*voucher),
                tr.t("order.enterprise_paid"),
                yuan(*own)
            ),
        ),
        UsageEntry::Refused(_, code, message) => {
            let reason = tr.get(&format!("usage.refused_{code}")).map_or_else(|| message.clone(), str::to_owned);
            (false, format!("{} ({code}): {reason}", tr.t("usage.refused")))
        }
    };
    UsageRow {
        id,
        period: format!("{} – {}", when(facts.2), when(facts.3)),
        gpu_hours: format!("{:.2}", facts.1 as f64 / 3600.0),
        recorded,
        result,
    }
}
