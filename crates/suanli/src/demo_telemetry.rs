//! The demo's utilization telemetry: every pool reports its busy GPUs each hour, signed, over
//! HTTP, as a provider's monitoring would. A pool is busy with the site's own base load (the
//! network's synthetic load, with a daily rhythm) and, once the programmes' orders run there,
//! with those orders' GPUs. So the outcome report can compare the load of the sites the
//! programmes served with the others, before and after.

use ed25519_dalek::SigningKey;
use suanli_domain::{OrderId, PoolId, ProviderId};
use suanli_service::access::utilization_signing_bytes;
use suanli_service::model::UtilizationInput;

use crate::demo::Api;

/// One pool of the demo's network, as telemetry sees it.
pub struct DemoPool {
    /// Index into the demo's providers.
    pub provider: usize,
    pub id: PoolId,
    pub gpus: u32,
    /// The site's base load, in basis points.
    pub base_bp: u32,
}

/// An order as telemetry sees it: its pool, GPUs and hours from `started`.
pub struct Running {
    pub pool: PoolId,
    pub gpus: u32,
    pub hours: u32,
}

/// Busy GPUs of `pool` at `at_s`: the base load with a daily rhythm (±20% of itself, lowest at
/// 04:00 Shanghai time), plus the orders running then.
fn busy(pool: &DemoPool, at_s: i64, started: i64, orders: &[Running]) -> u32 {
    let hour = (at_s + 8 * 3_600).rem_euclid(86_400) / 3_600;
    let rhythm = [-20, -20, -18, -20, -20, -15, -10, -5, 0, 5, 10, 15, 20, 20, 18, 15, 15, 10, 10, 5, 0, -5, -10, -15];
    let base = i64::from(pool.gpus) * i64::from(pool.base_bp) * (100 + rhythm[hour as usize]) / 1_000_000;
    let ordered: i64 = orders
        .iter()
        .filter(|o| o.pool == pool.id && at_s >= started && at_s < started + i64::from(o.hours) * 3_600)
        .map(|o| i64::from(o.gpus))
        .sum();
    (base + ordered).clamp(0, i64::from(pool.gpus)) as u32
}

/// Sends each pool's hourly samples over `[from_s, to_s)` for every provider; answers how many
/// were stored.
pub fn send(
    api: &Api,
    providers: &[(ProviderId, String, SigningKey)],
    pools: &[DemoPool],
    (from_s, to_s): (i64, i64),
    started: i64,
    orders: &[Running],
) -> anyhow::Result<usize> {
    let mut stored = 0;
    for (index, (provider, token, key)) in providers.iter().enumerate() {
        let samples: Vec<UtilizationInput> = pools
            .iter()
            .filter(|p| p.provider == index)
            .flat_map(|pool| {
                (from_s..to_s).step_by(3_600).map(move |at_s| UtilizationInput {
                    pool: pool.id,
                    at_s,
                    busy_gpus: busy(pool, at_s, started, orders),
                })
            })
            .collect();
        for batch in samples.chunks(4_000) {
            let signature = suanli_wire::sign(key, &utilization_signing_bytes(*provider, batch));
            let body = suanli_wire::UtilizationBatch {
                samples: batch.iter().map(suanli_wire::UtilizationSample::of).collect(),
            };
            let answer = api.call(
                "POST",
                &format!("/api/v1/providers/{provider}/utilization"),
                token,
                Some(serde_json::to_value(&body)?),
                &[(suanli_wire::SIGNATURE_HEADER, &signature)],
            )?;
            stored += answer["results"].as_array().into_iter().flatten().filter(|r| r["status"] == "ok").count();
        }
    }
    Ok(stored)
}

/// The orders placed, with their pools (read back from the API).
pub fn running(api: &Api, admin: &str, orders: &[(OrderId, u32, u32)]) -> anyhow::Result<Vec<Running>> {
    orders
        .iter()
        .map(|(order, gpus, hours)| {
            let shown = api.get(&format!("/api/v1/orders/{order}"), admin)?;
            let pool = PoolId::parse(shown["pool"].as_str().unwrap_or(""))?;
            Ok(Running { pool, gpus: *gpus, hours: *hours })
        })
        .collect()
}
