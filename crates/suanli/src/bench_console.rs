//! `suanli bench console`: the console's busiest pages, rendered by a real `suanli serve` over
//! HTTP, on a history grown to `--records` usage records: each page alone, one request after
//! another, then again while usage streams in from 4 clients. A page's time is the whole request,
//! from the browser's side of the socket: authentication, the read, the template, the transfer.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::bench_history::{Latencies, Server, agent, ingest, world};

#[derive(clap::Args)]
pub struct ConsoleOptions {
    /// Usage records in the history before the pages are timed.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Running orders the records are spread over.
    #[arg(long, default_value_t = 500)]
    orders: usize,
    /// Requests per page when it is timed alone.
    #[arg(long, default_value_t = 300)]
    reads: usize,
    /// Records sent while the pages are timed under ingestion.
    #[arg(long, default_value_t = 400_000)]
    load_records: usize,
    /// Where to keep the database [default: a temporary directory, removed afterwards].
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// The pages timed: what each is, its path, and whose session draws it.
fn pages(order: &str) -> [(&'static str, String, &'static str); 4] {
    [
        ("authority dashboard", "/programs/prg-1".to_owned(), "history-authority"),
        ("application queue", "/applications".to_owned(), "history-authority"),
        ("audit log, newest page", "/audit".to_owned(), "history-auditor"),
        ("an order with its usage", format!("/orders/{order}?usage=3"), "history-auditor"),
    ]
}

fn timed_page(agent: &ureq::Agent, url: &str, session: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut response = agent.get(url).header("cookie", &format!("suanli_session={session}")).call()?;
    let body = response.body_mut().read_to_string()?;
    anyhow::ensure!(response.status().as_u16() == 200, "GET {url}: {}", response.status());
    anyhow::ensure!(body.contains("</html>"), "GET {url}: not a whole page");
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

pub fn console(options: &ConsoleOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(options.orders >= 2, "--orders: at least 2");
    let need = options.records + options.load_records;
    anyhow::ensure!(
        need.div_ceil(options.orders) <= 60_000,
        "--orders: {} orders cannot carry {need} one-minute records; use more",
        options.orders
    );
    let scratch = tempfile::tempdir()?;
    let dir = options.dir.clone().unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    println!("machine: {}, {} cores", crate::bench::cpu_model(), std::thread::available_parallelism()?.get());
    let world = world(&dir, options.orders)?;
    let (server, _) = Server::start(&world)?;
    let grow = ingest(&world, &server.url, 0, options.records, 4_000, 4)?;
    println!("history: {} usage records in {grow:.1} s", options.records);
    let pages = pages(&world.orders[0].1.to_string());

    let client = agent();
    let mut alone = Vec::new();
    for (_, path, session) in &pages {
        let url = format!("{}{path}", server.url);
        let latencies: Vec<f64> =
            (0..options.reads).map(|_| timed_page(&client, &url, session)).collect::<Result<_, _>>()?;
        alone.push(Latencies::new(latencies));
    }

    // The same pages in turn, as fast as one reader goes, while 4 clients send usage.
    let stop = AtomicBool::new(false);
    let (ingest_s, loaded) = std::thread::scope(|scope| -> anyhow::Result<(f64, Vec<Latencies>)> {
        let reader = scope.spawn(|| -> anyhow::Result<Vec<Latencies>> {
            let agent = agent();
            let mut seen: Vec<Vec<f64>> = vec![Vec::new(); pages.len()];
            while !stop.load(Ordering::Relaxed) {
                for (i, (_, path, session)) in pages.iter().enumerate() {
                    seen[i].push(timed_page(&agent, &format!("{}{path}", server.url), session)?);
                }
            }
            Ok(seen.into_iter().map(Latencies::new).collect())
        });
        let seconds = ingest(&world, &server.url, options.records, need, 4_000, 4);
        stop.store(true, Ordering::Relaxed);
        let loaded = reader.join().map_err(|_| anyhow::anyhow!("the reader panicked"))??;
        Ok((seconds?, loaded))
    })?;
    server.kill();

    println!(
        "\n| page | alone p50 / p99 / max (ms) | during ingestion p50 / p99 / max (ms) | requests during ingestion |"
    );
    println!("|---|---|---|---|");
    let mut worst: f64 = 0.0;
    for (i, (name, path, _)) in pages.iter().enumerate() {
        let (a, l) = (&alone[i], &loaded[i]);
        worst = worst.max(l.at(0.99)).max(a.at(0.99));
        println!(
            "| {name} (`{path}`) | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {} |",
            a.at(0.5),
            a.at(0.99),
            a.max(),
            l.at(0.5),
            l.at(0.99),
            l.max(),
            l.len()
        );
    }
    println!(
        "\ningestion meanwhile: {} records in {ingest_s:.1} s ({:.0} records/s)",
        options.load_records,
        options.load_records as f64 / ingest_s
    );
    println!("target: every page's p99 < 50 ms: {}", if worst < 50.0 { "met" } else { "NOT met" });
    Ok(ExitCode::SUCCESS)
}
