//! The arguments of the service commands (`program`, `enterprise`, `application`, `voucher`,
//! `provider`, `order`, `usage`, `statement`), each with its help; `service_cli` runs them.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum ProgramCommand {
    /// Load programme files (TOML) as drafts; loading the same file again changes nothing.
    Load {
        /// Programme files (programs/*.toml shows the format).
        files: Vec<PathBuf>,
    },
    /// List programmes with their budgets.
    List,
    /// Show one programme's terms and money.
    Show {
        /// The programme: its id (prg-N) or its key (shanghai-compute).
        program: String,
    },
    /// Draft → open: fund the budget from the authority's appropriation.
    Open {
        /// The programme: its id (prg-N) or its key.
        program: String,
    },
    /// Open → closed: no new applications.
    Close {
        /// The programme: its id (prg-N) or its key.
        program: String,
    },
    /// Closed → finished: return the unissued budget to the appropriation.
    Finish {
        /// The programme: its id (prg-N) or its key.
        program: String,
    },
}

#[derive(Subcommand)]
pub enum EnterpriseCommand {
    /// Register an enterprise by its unified social credit code.
    Register(RegisterEnterprise),
    /// List registered enterprises.
    List,
    /// Show one enterprise: its facts, applications and vouchers.
    Show {
        /// The enterprise (ent-N).
        enterprise: String,
    },
}

#[derive(Args)]
pub struct RegisterEnterprise {
    /// The unified social credit code (18 characters, check characters verified).
    #[arg(long)]
    pub(crate) uscc: String,
    /// The registered name.
    #[arg(long)]
    pub(crate) name: String,
    /// GB/T 2260 code; defaults to the region in the USCC.
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// sme, startup or research_institute.
    #[arg(long)]
    pub(crate) kind: String,
    /// Employees.
    #[arg(long)]
    pub(crate) headcount: u32,
    /// Annual revenue in yuan, for example 8000000.00.
    #[arg(long)]
    pub(crate) revenue: String,
    /// A government-sponsored research project it takes part in (repeatable).
    #[arg(long = "research-project")]
    pub(crate) research_projects: Vec<String>,
    /// The USCC of a related party, such as a provider under common control (repeatable).
    #[arg(long = "related-party")]
    pub(crate) related_parties: Vec<String>,
}

#[derive(Subcommand)]
pub enum ApplicationCommand {
    /// Draft an application for an amount in yuan.
    Create {
        /// The applying enterprise (ent-N).
        #[arg(long)]
        enterprise: String,
        /// The programme: its id (prg-N) or its key.
        #[arg(long)]
        program: String,
        /// The voucher amount asked for, in yuan (100000.00).
        #[arg(long)]
        amount: String,
        /// What the compute is for, as the enterprise puts it.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Submit a draft: its place in the programme's queue is fixed now.
    Submit {
        /// The application (app-N).
        application: String,
    },
    /// Approve with an amount in yuan: issues the voucher.
    Approve {
        /// The application (app-N).
        application: String,
        /// The voucher's face value in yuan, at most the amount asked for.
        #[arg(long)]
        amount: String,
        /// A subsidy rate in basis points for this voucher, at most the programme's [default: the
        /// programme's].
        #[arg(long)]
        rate_bp: Option<i64>,
    },
    /// Reject a submitted application, with the reason the enterprise will read.
    Reject {
        /// The application (app-N).
        application: String,
        /// Why, in words the enterprise will read.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw an application before it is decided.
    Withdraw {
        /// The application (app-N).
        application: String,
    },
    /// List applications, in submission order within each programme.
    List {
        /// Only this programme's (id or key).
        #[arg(long)]
        program: Option<String>,
    },
    /// Show an application and every eligibility verdict with its reason.
    Show {
        /// The application (app-N).
        application: String,
    },
}

#[derive(Subcommand)]
pub enum VoucherCommand {
    /// List vouchers with their balances.
    List,
    /// Show one voucher: face value, held, spent, available and its orders.
    Show {
        /// The voucher (vch-N).
        voucher: String,
    },
    /// Suspend a voucher: no new orders on it until it is reinstated.
    Suspend {
        /// The voucher (vch-N).
        voucher: String,
        /// Why, as the audit log and the enterprise will read it.
        #[arg(long)]
        reason: String,
    },
    /// Reinstate a suspended voucher.
    Reinstate {
        /// The voucher (vch-N).
        voucher: String,
    },
    /// Revoke: holds are released and the balance returns to the budget.
    Revoke {
        /// The voucher (vch-N).
        voucher: String,
        /// Why, as the audit log and the enterprise will read it.
        #[arg(long)]
        reason: String,
    },
    /// Expire every voucher whose validity has ended, returning balances to budgets.
    Sweep,
}

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// Register a compute provider by its unified social credit code.
    Register {
        /// The unified social credit code (18 characters, check characters verified).
        #[arg(long)]
        uscc: String,
        /// The registered name.
        #[arg(long)]
        name: String,
        /// government, state_owned or commercial.
        #[arg(long)]
        operator: String,
    },
    /// Providers with their sites and pools.
    List,
    /// Add a data-centre site.
    AddSite {
        /// The provider (prv-N).
        #[arg(long)]
        provider: String,
        /// The site's name.
        #[arg(long)]
        name: String,
        /// The hub it belongs to (as in `suanli network import`), for example Guizhou.
        #[arg(long)]
        hub: String,
        /// Its GB/T 2260 region code, for example 520100.
        #[arg(long)]
        region: String,
        /// Degrees north, −90 to 90.
        #[arg(long, allow_hyphen_values = true)]
        latitude: f64,
        /// Degrees east, −180 to 180.
        #[arg(long, allow_hyphen_values = true)]
        longitude: f64,
        /// government, state_owned or commercial; defaults to the provider's.
        #[arg(long)]
        operator: Option<String>,
        /// Power price in yuan per kWh, for example 0.38.
        #[arg(long)]
        power_price: Option<String>,
        /// Power usage effectiveness, for example 1.2.
        #[arg(long)]
        pue: Option<f64>,
    },
    /// Make a new Ed25519 key pair for signing usage: the secret key goes to a new file, the
    /// public key is printed for `set-key` (this command needs no database).
    Keygen {
        /// The new secret key's file; it must not exist (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Register the Ed25519 public key (64 hex characters) the provider signs usage batches with.
    SetKey {
        /// The provider (prv-N).
        #[arg(long)]
        provider: String,
        /// The public key, 64 hex characters (`provider keygen` prints it).
        #[arg(long)]
        public_key: String,
    },
    /// Add a pool of identical GPUs to a site.
    AddPool {
        /// The site (sit-N).
        #[arg(long)]
        site: String,
        /// A registered chip (data/chip-registry.csv; any case, aliases), for example H100.
        #[arg(long)]
        chip: String,
        /// GPUs in the pool.
        #[arg(long)]
        gpus: u32,
        /// List price in yuan per GPU-hour, for example 18.00.
        #[arg(long)]
        price: String,
        /// Declare the chip domestic; the chip registry decides, and a declaration that
        /// disagrees is refused.
        #[arg(long)]
        domestic: bool,
    },
    /// Verify a site's operator kind and region (the platform admin, after checking the
    /// provider's papers): until then they count for no provider rule.
    VerifySite {
        /// The site (sit-N).
        #[arg(long)]
        site: String,
    },
}

#[derive(Args, Clone)]
pub struct OrderArgs {
    /// The ordering enterprise (ent-N).
    #[arg(long)]
    pub(crate) enterprise: String,
    /// The voucher that pays its share (vch-N).
    #[arg(long)]
    pub(crate) voucher: String,
    /// Pin a pool; without it the placement engine chooses one (and the quote lists alternatives).
    #[arg(long)]
    pub(crate) pool: Option<String>,
    /// The chip expected; refused if the pool has another.
    #[arg(long)]
    pub(crate) chip: Option<String>,
    /// GPUs at once.
    #[arg(long)]
    pub(crate) gpus: u32,
    /// Hours bought (GPU-hours = GPUs × hours); with --work, the most the work may take.
    #[arg(long)]
    pub(crate) hours: u32,
    /// training, inference, fine_tuning or data.
    #[arg(long)]
    pub(crate) purpose: String,
    /// Buy work instead of hours: reference GPU-hours (one A800 for an hour) of a work class of
    /// data/speed.csv, as CLASS=HOURS (`llm-train=400`); each chip takes the hours its speed gives.
    #[arg(long)]
    pub(crate) work: Option<String>,
    /// The hub the order's data is in: data moved to another hub costs egress, and --rtt-ms-max
    /// is measured from it.
    #[arg(long)]
    pub(crate) origin_hub: Option<String>,
    /// The data's size in GB.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) data_gb: f64,
    /// The round trip to the data's hub, at most, in milliseconds.
    #[arg(long)]
    pub(crate) rtt_ms_max: Option<f64>,
}

#[derive(Subcommand)]
pub enum OrderCommand {
    /// Price an order without placing it.
    Quote(OrderArgs),
    /// Place an order: the price is locked and the voucher's share held.
    Place(OrderArgs),
    /// Submit an order to the scheduling loop instead of placing it now: it waits for the next
    /// round, which places every waiting request together (no --pool: the loop chooses).
    Submit {
        #[command(flatten)]
        order: OrderArgs,
        /// Seconds it may wait for a round to place it before it is refused [default: the
        /// deployment's, 3600].
        #[arg(long)]
        wait_s: Option<i64>,
        /// The most paid per GPU-hour, in fen, for capacity bought between hub nodes when the
        /// programme trades and its highest tier cannot serve the order (a bid in the market's
        /// clearings).
        #[arg(long)]
        limit_fen_per_gpu_hour: Option<i64>,
    },
    /// Run a round of the scheduling loop now (a server runs one every schedule_window_seconds).
    Round,
    /// List the order requests: waiting, placed (with the order) or refused (with the reason).
    Requests,
    /// Show one order request, with what its round decided and weighed.
    Request {
        /// The request (req-N).
        request: String,
    },
    /// Withdraw a waiting order request.
    Withdraw {
        /// The request (req-N).
        request: String,
    },
    /// Placed → running (the provider starts the job).
    Start {
        /// The order (ord-N).
        order: String,
    },
    /// Running → completed: what is left of the hold goes back to the voucher.
    Complete {
        /// The order (ord-N).
        order: String,
    },
    /// Placed → cancelled, before it starts: the whole hold is released.
    Cancel {
        /// The order (ord-N).
        order: String,
    },
    /// Buy more hours of a placed or running order at its locked price; usage never runs past
    /// the hours ordered.
    Extend {
        /// The order (ord-N).
        order: String,
        /// Hours to add.
        #[arg(long)]
        hours: u32,
    },
    /// List orders, those archived in storage included.
    List,
    /// Show one order: its quote, hold, usage and split.
    Show {
        /// The order (ord-N).
        order: String,
    },
}

#[derive(Subcommand)]
pub enum UsageCommand {
    /// Import usage records from a CSV (id,order,gpu_seconds,period_start,period_end) or JSON
    /// lines file; the file is checked whole before anything is recorded.
    Import {
        /// The provider the records are for (prv-N).
        #[arg(long)]
        provider: String,
        /// A .csv or .jsonl file.
        file: PathBuf,
        /// Records per commit.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
    },
    /// Publish a usage file to NATS JetStream, signed with the provider's key, for a server
    /// running `serve --nats` to consume (this command needs no database).
    Publish(crate::usage_publish::PublishOptions),
    /// Send a usage file to a running server over HTTP, signed with the provider's key, with
    /// retries and backoff (this command needs no database; it is what a connector does).
    Send(crate::usage_send::SendOptions),
}

#[derive(Subcommand)]
pub enum StatementCommand {
    /// Issue the monthly statement of a provider and programme for an ended month (YYYY-MM).
    Issue {
        /// The provider (prv-N).
        #[arg(long)]
        provider: String,
        /// The programme: its id (prg-N) or its key.
        #[arg(long)]
        program: String,
        /// The month, YYYY-MM, in Asia/Shanghai; it must have ended.
        #[arg(long)]
        month: String,
    },
    /// Approve a statement: its voucher total moves to settlement; it never changes again.
    Approve {
        /// The statement (stm-N).
        statement: String,
    },
    /// List statements with their totals.
    List,
    /// Show a statement with its lines (one per order).
    Show {
        /// The statement (stm-N).
        statement: String,
    },
}
