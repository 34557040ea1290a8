//! The one table of the API's operations. Each row names the method, the path, the operation's
//! name, who may call it, what it does, the types of its query, body and answer, and its
//! handler. The router ([`crate::router`]), the OpenAPI document ([`crate::openapi`]) and the
//! authorization tests are all made from this table, so an operation is written in one place.
//!
//! The body and answer types are the ones the handler reads and writes: their JSON Schemas are
//! derived from the same Rust types (`schemars`), and the tests in `.ci/run` check the server
//! against the document (schemathesis) and through a client generated from it.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{MethodRouter, get, post};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::{AppState, evidence, lifecycle, lists, login, lottery, openapi, operate, orders, report, statements};
use crate::{market, requests, tokens, transparency, utilization};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Who may call an operation. On an object, "the" authority, enterprise or provider is the one
/// that owns it; others of that kind are told the object does not exist (or, where they may
/// see it, that they may not act). On a list, each of a kind sees its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// No token needed.
    Public,
    /// Any role with a token.
    Anyone,
    Admin,
    Auditor,
    /// The owning authority's admin and reviewers.
    Authority,
    /// The owning authority's admin.
    AuthorityAdmin,
    /// Every authority's staff (each its own programmes).
    Authorities,
    /// Every authority's staff, on everything (the load of every site: an evaluation compares
    /// the sites a programme served with those it did not).
    EveryAuthority,
    /// The owning enterprise.
    Enterprise,
    /// Every enterprise (each itself).
    Enterprises,
    /// The owning provider.
    Provider,
    /// Every provider (each itself).
    Providers,
}

impl Who {
    pub fn words(self) -> &'static str {
        match self {
            Who::Public => "anyone, without a token",
            Who::Anyone => "any role",
            Who::Admin => "the platform admin",
            Who::Auditor => "auditors",
            Who::Authority => "the authority's admin and reviewers",
            Who::AuthorityAdmin => "the authority's admin",
            Who::Authorities => "authorities (their own programmes)",
            Who::EveryAuthority => "authorities (every site)",
            Who::Enterprise => "the enterprise",
            Who::Enterprises => "enterprises (their own)",
            Who::Provider => "the provider",
            Who::Providers => "providers (their own)",
        }
    }
}

/// A JSON Schema of a type, registered with the document's generator.
pub type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T` (a `$ref` when it is named).
pub fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What an operation answers with status 200.
#[derive(Clone, Copy)]
pub enum Answer {
    Json(SchemaOf),
    /// `text/plain` or `text/html`.
    Text(&'static str),
}

pub struct Operation {
    pub method: Method,
    pub path: &'static str,
    /// The operation's name (`operationId`).
    pub id: &'static str,
    pub who: &'static [Who],
    pub summary: &'static str,
    /// The query's type: its fields are the query parameters, `only` those named when given.
    pub query: Option<(SchemaOf, &'static [&'static str])>,
    /// The JSON body's type, and whether the body is required.
    pub body: Option<(SchemaOf, bool)>,
    pub answer: Answer,
    /// Whether the body is signed (`Suanli-Signature`).
    pub signed: bool,
    /// The states a list filters by (`?state=`), when it does.
    pub states: &'static [&'static str],
    pub route: fn() -> MethodRouter<AppState>,
}

impl Operation {
    pub fn is_public(&self) -> bool {
        self.who.contains(&Who::Public)
    }
}

/// The page parameters every list takes, and the filters some add.
const PAGED: &[&str] = &["offset", "limit"];
const BY_PROGRAM_AND_STATE: &[&str] = &["offset", "limit", "program", "state"];
const BY_STATE: &[&str] = &["offset", "limit", "state"];

fn op(
    method: Method,
    path: &'static str,
    id: &'static str,
    who: &'static [Who],
    summary: &'static str,
    answer: Answer,
    route: fn() -> MethodRouter<AppState>,
) -> Operation {
    Operation { method, path, id, who, summary, query: None, body: None, answer, signed: false, states: &[], route }
}

impl Operation {
    fn query(mut self, query: SchemaOf, only: &'static [&'static str]) -> Operation {
        self.query = Some((query, only));
        self
    }

    fn body(mut self, body: SchemaOf) -> Operation {
        self.body = Some((body, true));
        self
    }

    fn states(mut self, states: &'static [&'static str]) -> Operation {
        self.states = states;
        self
    }

    fn signed(mut self) -> Operation {
        self.signed = true;
        self
    }
}

/// A route for one action on an object (`/orders/{order}/start`): the action's handler takes
/// the object and the action's name.
macro_rules! action {
    ($handler:path, $action:literal) => {
        || {
            post(|state: State<AppState>, headers: HeaderMap, Path(object): Path<String>, raw: Bytes| {
                $handler(state, headers, Path((object, $action.to_owned())), raw)
            })
        }
    };
}

use Method::{Get, Post};
use Who::*;

fn json<T: JsonSchema>() -> Answer {
    Answer::Json(schema::<T>)
}

use lifecycle::{ApplicationDetail, Page, Paged};
use suanli_service::model::{
    Application, Enterprise, Order, Ownership, Pool, Program, Provider, Site, Statement, Voucher,
};
use suanli_service::requests::{OrderRequest, RoundReport};
use tokens::{IssuedToken, RevokedToken};

/// Every operation, public ones first.
pub fn operations() -> &'static [Operation] {
    static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(table);
    &OPERATIONS
}

fn table() -> Vec<Operation> {
    let page = schema::<Page>;
    vec![
        op(Get, "/healthz", "health", &[Public], "Liveness: answers ok while the process lives.", Answer::Text("text/plain"), || get(crate::healthz)),
        op(
            Get,
            "/readyz",
            "readiness",
            &[Public],
            "Readiness: 200 ready while storage takes writes; 503 storage_unavailable (with Retry-After) after a storage fault until storage is reached again.",
            Answer::Text("text/plain"),
            || get(crate::readyz),
        ),
        op(
            Get,
            "/metrics",
            "metrics",
            &[Public],
            "Prometheus text: requests, latency, queue depth, commits, batch sizes, records applied, business gauges, process metrics.",
            Answer::Text("text/plain"),
            || get(crate::metrics_text),
        ),
        op(
            Post,
            "/api/v1/login",
            "logIn",
            &[Public],
            "Log in with name and password (argon2); answers a bearer token for the user's role.",
            json::<login::LoginAnswer>(),
            || post(login::login),
        )
        .body(schema::<login::LoginJson>),
        op(Get, "/api/openapi.json", "openApiDocument", &[Public], "This document.", json::<serde_json::Value>(), || {
            get(openapi::document_json)
        }),
        op(Get, "/api/docs", "apiDocs", &[Public], "A browsable page of this document.", Answer::Text("text/html"), || {
            get(openapi::page)
        }),
        op(
            Get,
            "/api/v1/heads/latest",
            "latestHead",
            &[Public],
            "The newest signed head (log size, Merkle root, journal head, state hash, Ed25519 signature) and the platform's public key: the public record anyone may check.",
            json::<transparency::LatestHead>(),
            || get(transparency::latest),
        ),
        // ------------------------------------------------------------ programmes
        op(Get, "/api/v1/programs", "listPrograms", &[Anyone], "List programmes (paged; filter by state: draft, open, closed, finished).", json::<Paged<Program>>(), || {
            get(lifecycle::list_programs)
        })
        .query(page, &["offset", "limit", "state"])
        .states(lifecycle::PROGRAM_STATES),
        op(Post, "/api/v1/programs", "loadProgram", &[Admin], "Load a programme file as a draft.", json::<Program>(), || {
            post(lifecycle::load_program)
        })
        .body(schema::<lifecycle::ProgramFileJson>),
        op(
            Post,
            "/api/v1/programs/preview",
            "previewProgram",
            &[Admin, AuthorityAdmin],
            "Check a programme file as loading would, write nothing, and answer its terms and each registered enterprise's eligibility verdicts (the admin of the authority the file names).",
            json::<operate::PreviewJson>(),
            || post(operate::preview_program),
        )
        .body(schema::<lifecycle::ProgramFileJson>),
        op(Get, "/api/v1/programs/{program}", "showProgram", &[Anyone], "One programme by id or key.", json::<Program>(), || {
            get(lifecycle::show_program)
        }),
        op(
            Get,
            "/api/v1/programs/{program}/outcome",
            "programOutcome",
            &[Admin, Auditor, Authority],
            "What the programme's money achieved: budget, vouchers used, partly used and unused, GPU-hours subsidized and the subsidy per GPU-hour by chip, hub and operator kind, the price cut, the load of the sites served against others (difference in differences), the domestic-chip share, who was served (kind, region, size) and how concentrated (top-10 share, Gini).",
            json::<suanli_service::outcome::Outcome>(),
            || get(report::outcome),
        )
        .query(schema::<report::OutcomeQuery>, &[]),
        op(
            Get,
            "/api/v1/programs/{program}/lottery",
            "lotteryRounds",
            &[Admin, Auditor, Authority],
            "A lottery programme's rounds: the seed's SHA-256 committed before the round closed, the seed revealed, the participants, the budget and the drawn; each drawn round redone from its seed (verified, or the problem).",
            json::<lottery::Rounds>(),
            || get(lottery::rounds),
        ),
        op(
            Post,
            "/api/v1/programs/{program}/lottery/commit",
            "commitLottery",
            &[Admin, AuthorityAdmin],
            "Commit a lottery round: the hex SHA-256 of the seed's UTF-8 bytes, and when it closes (RFC 3339; applications submitted before it take part).",
            json::<suanli_service::model::LotteryRound>(),
            || post(lottery::commit),
        )
        .body(schema::<lottery::CommitJson>),
        op(
            Post,
            "/api/v1/programs/{program}/lottery/draw",
            "drawLottery",
            &[Admin, AuthorityAdmin],
            "Reveal the round's seed after it closed and draw: refused lottery_seed_mismatch unless it hashes to the commitment; those drawn are approved for what they asked while the budget lasts, the others rejected as the control group, in one commit.",
            json::<suanli_service::model::LotteryRound>(),
            || post(lottery::draw),
        )
        .body(schema::<lottery::DrawJson>),
        op(Post, "/api/v1/programs/{program}/open", "openProgram", &[Admin, AuthorityAdmin], "Open a draft programme for applications.", json::<Program>(), action!(lifecycle::program_action, "open")),
        op(Post, "/api/v1/programs/{program}/close", "closeProgram", &[Admin, AuthorityAdmin], "Close a programme to new applications.", json::<Program>(), action!(lifecycle::program_action, "close")),
        op(
            Post,
            "/api/v1/programs/{program}/finish",
            "finishProgram",
            &[Admin, AuthorityAdmin],
            "Finish a programme: its vouchers expire and what they hold returns to the budget.",
            json::<Program>(),
            action!(lifecycle::program_action, "finish"),
        ),
        op(
            Post,
            "/api/v1/programs/{program}/amend",
            "amendProgram",
            &[Admin, AuthorityAdmin],
            "Replace a draft's terms with a programme file of the same key and authority.",
            json::<Program>(),
            action!(lifecycle::program_action, "amend"),
        )
        .body(schema::<lifecycle::ProgramFileJson>),
        op(
            Get,
            "/api/v1/authorities",
            "listAuthorities",
            &[Anyone],
            "List the authorities that run programmes, with the region each answers for (paged).",
            json::<Paged<suanli_service::model::Authority>>(),
            || get(lists::list_authorities),
        )
        .query(page, PAGED),
        op(
            Get,
            "/api/v1/network",
            "listNetworkClusters",
            &[Anyone],
            "List the national network's clusters this deployment registered, each with its hub and place (paged): a site is verified only near a cluster of its hub.",
            json::<Paged<suanli_service::model::NetworkCluster>>(),
            || get(lists::list_network),
        )
        .query(page, PAGED),
        // ------------------------------------------------------------ enterprises
        op(
            Get,
            "/api/v1/enterprises",
            "listEnterprises",
            &[Admin, Auditor, Enterprises],
            "List enterprises (paged): every one for the admin and auditors, itself for an enterprise.",
            json::<Paged<Enterprise>>(),
            || get(lists::list_enterprises),
        )
        .query(page, PAGED),
        op(Post, "/api/v1/enterprises", "registerEnterprise", &[Admin], "Register an enterprise (its region defaults to the one in its credit code).", json::<Enterprise>(), || {
            post(lifecycle::register_enterprise)
        })
        .body(schema::<lifecycle::EnterpriseJson>),
        op(Get, "/api/v1/enterprises/{enterprise}", "showEnterprise", &[Admin, Auditor, Enterprise], "One enterprise.", json::<Enterprise>(), || {
            get(lifecycle::show_enterprise)
        }),
        op(
            Post,
            "/api/v1/ownership",
            "declareOwnership",
            &[Admin, Enterprise],
            "Declare who controls an enterprise or provider (only a hash of the identity number is kept); orders between parties whose declarations match are flagged as related. The admin or the party itself.",
            json::<Ownership>(),
            || post(evidence::declare_ownership),
        )
        .body(schema::<evidence::OwnershipJson>),
        // ------------------------------------------------------------ applications
        op(
            Get,
            "/api/v1/applications",
            "listApplications",
            &[Anyone],
            "List applications in submission order (paged; filter by program and state), within the caller's scope.",
            json::<Paged<Application>>(),
            || get(lifecycle::list_applications),
        )
        .query(page, BY_PROGRAM_AND_STATE)
        .states(lifecycle::APPLICATION_STATES),
        op(Post, "/api/v1/applications", "createApplication", &[Admin, Enterprise], "Draft an application for a programme.", json::<Application>(), || {
            post(lifecycle::create_application)
        })
        .body(schema::<lifecycle::ApplicationJson>),
        op(
            Get,
            "/api/v1/applications/{application}",
            "showApplication",
            &[Admin, Auditor, Authority, Enterprise],
            "One application with every eligibility verdict.",
            json::<ApplicationDetail>(),
            || get(lifecycle::show_application),
        ),
        op(Post, "/api/v1/applications/{application}/submit", "submitApplication", &[Admin, Enterprise], "Submit a drafted application for review.", json::<Application>(), action!(lifecycle::application_action, "submit")),
        op(Post, "/api/v1/applications/{application}/withdraw", "withdrawApplication", &[Admin, Enterprise], "Withdraw an application not yet decided.", json::<Application>(), action!(lifecycle::application_action, "withdraw")),
        op(
            Post,
            "/api/v1/applications/{application}/approve",
            "approveApplication",
            &[Admin, Authority],
            "Approve a submitted application: amount_fen is required, rate_bp (at most the programme's) optional; the voucher is issued in the same commit.",
            json::<Application>(),
            action!(lifecycle::application_action, "approve"),
        )
        .body(schema::<lifecycle::ApproveJson>),
        op(Post, "/api/v1/applications/{application}/reject", "rejectApplication", &[Admin, Authority], "Reject a submitted application with a reason.", json::<Application>(), action!(lifecycle::application_action, "reject"))
            .body(schema::<lifecycle::ReasonJson>),
        // ------------------------------------------------------------ vouchers
        op(
            Get,
            "/api/v1/vouchers",
            "listVouchers",
            &[Admin, Auditor, Authorities, Enterprises],
            "List vouchers within the caller's scope (paged; filter by program and state).",
            json::<Paged<Voucher>>(),
            || get(lifecycle::list_vouchers),
        )
        .query(page, BY_PROGRAM_AND_STATE)
        .states(lifecycle::VOUCHER_STATES),
        op(Get, "/api/v1/vouchers/{voucher}", "showVoucher", &[Admin, Auditor, Authority, Enterprise], "One voucher with its balances.", json::<Voucher>(), || get(crate::show_voucher)),
        op(Post, "/api/v1/vouchers/{voucher}/suspend", "suspendVoucher", &[Admin, AuthorityAdmin], "Suspend a voucher with a reason: no order may use it until reinstated.", json::<Voucher>(), action!(lifecycle::voucher_action, "suspend"))
            .body(schema::<lifecycle::ReasonJson>),
        op(Post, "/api/v1/vouchers/{voucher}/reinstate", "reinstateVoucher", &[Admin, AuthorityAdmin], "Reinstate a suspended voucher.", json::<Voucher>(), action!(lifecycle::voucher_action, "reinstate")),
        op(
            Post,
            "/api/v1/vouchers/{voucher}/revoke",
            "revokeVoucher",
            &[Admin, AuthorityAdmin],
            "Revoke a voucher with a reason: what it holds returns to the programme's budget.",
            json::<Voucher>(),
            action!(lifecycle::voucher_action, "revoke"),
        )
        .body(schema::<lifecycle::ReasonJson>),
        // ------------------------------------------------------------ providers, sites, pools
        op(Get, "/api/v1/providers", "listProviders", &[Anyone], "List providers (paged).", json::<Paged<Provider>>(), || get(lists::list_providers)).query(page, PAGED),
        op(Post, "/api/v1/providers", "registerProvider", &[Admin], "Register a provider.", json::<Provider>(), || post(lifecycle::register_provider))
            .body(schema::<lifecycle::ProviderJson>),
        op(Post, "/api/v1/providers/{provider}/key", "setProviderKey", &[Admin, Provider], "Register the Ed25519 key usage and utilization are signed with.", json::<Provider>(), || {
            post(lifecycle::set_key)
        })
        .body(schema::<lifecycle::KeyJson>),
        op(Post, "/api/v1/providers/{provider}/sites", "addSite", &[Admin, Provider], "Add a site with its hub, region and place.", json::<Site>(), || post(lifecycle::add_site))
            .body(schema::<lifecycle::SiteJson>),
        op(
            Post,
            "/api/v1/providers/{provider}/usage",
            "postUsage",
            &[Provider],
            "A signed usage batch (1 to 4,000 records, 2 MiB; header Suanli-Signature over the usage signing bytes, docs/signing.md). Each record answers ok, exists (the same record again) or error with its code.",
            json::<suanli_wire::UsageAnswer>(),
            || post(crate::post_usage),
        )
        .body(schema::<suanli_wire::UsageBatch>)
        .signed(),
        op(
            Post,
            "/api/v1/providers/{provider}/utilization",
            "postUtilization",
            &[Provider],
            "A signed utilization batch: each pool's busy GPUs at an instant, all work counted (1 to 4,000 samples; header Suanli-Signature over the utilization signing bytes). Each sample answers ok, exists or error (utilization_conflict, utilization_too_old beyond 7 days, utilization_in_future, utilization_exceeds_pool, not_found).",
            json::<suanli_wire::UtilizationAnswer>(),
            || post(utilization::post_utilization),
        )
        .body(schema::<suanli_wire::UtilizationBatch>)
        .signed(),
        op(
            Get,
            "/api/v1/utilization",
            "utilizationSeries",
            &[Admin, Auditor, EveryAuthority, Provider],
            "The load series of one pool, site or hub (name exactly one): per bucket the load in basis points and the sums it comes from. Samples are kept as sent for 7 days, hourly for 400, daily after. A provider reads its own pools.",
            json::<utilization::Series>(),
            || get(utilization::series),
        )
        .query(schema::<utilization::SeriesQuery>, &[]),
        op(Get, "/api/v1/sites", "listSites", &[Anyone], "List sites with their hub, region, place and verification (paged).", json::<Paged<Site>>(), || get(lists::list_sites))
            .query(page, PAGED),
        op(
            Post,
            "/api/v1/sites/{site}/pools",
            "addPool",
            &[Admin, Provider],
            "Add a pool: the chip must be registered (any case, or an alias) and its domestic flag comes from the registry.",
            json::<Pool>(),
            || post(lifecycle::add_pool),
        )
        .body(schema::<lifecycle::PoolJson>),
        op(
            Post,
            "/api/v1/sites/{site}/verify",
            "verifySite",
            &[Admin],
            "Verify a site's operator kind and region; until then they are claims and count for no provider rule (government_run, within_region).",
            json::<Site>(),
            || post(lifecycle::verify_site),
        ),
        op(Get, "/api/v1/pools", "listPools", &[Anyone], "List pools (paged).", json::<Paged<Pool>>(), || get(lifecycle::list_pools)).query(page, PAGED),
        op(
            Post,
            "/api/v1/pools/{pool}",
            "changePool",
            &[Admin, Provider],
            "Change a pool for orders placed from now on; it never shrinks below the GPUs its orders hold.",
            json::<Pool>(),
            || post(operate::change_pool),
        )
        .body(schema::<operate::PoolChangeJson>),
        op(Post, "/api/v1/pools/{pool}/retire", "retirePool", &[Admin, Provider], "Retire a pool: no new order is placed on it; the orders on it run to their end.", json::<Pool>(), || {
            post(operate::retire_pool)
        }),
        // ------------------------------------------------------------ orders
        op(Get, "/api/v1/orders", "listOrders", &[Anyone], "List orders within the caller's scope (paged; filter by program and state).", json::<Paged<Order>>(), || {
            get(orders::list_orders)
        })
        .query(page, BY_PROGRAM_AND_STATE)
        .states(lifecycle::ORDER_STATES),
        op(
            Post,
            "/api/v1/orders",
            "placeOrder",
            &[Admin, Enterprise],
            "Place an order; without a pool the placement engine chooses.",
            json::<Order>(),
            || post(orders::place_order),
        )
        .body(schema::<orders::OrderJson>),
        op(
            Post,
            "/api/v1/orders/quote",
            "quoteOrder",
            &[Admin, Enterprise],
            "Quote an order: the engine's choice, alternatives and exclusions (or the pinned pool).",
            json::<suanli_service::PoolChoice>(),
            || post(orders::quote_order),
        )
        .body(schema::<orders::OrderJson>),
        op(Get, "/api/v1/orders/{order}", "showOrder", &[Admin, Auditor, Authority, Enterprise, Provider], "One order with its usage totals.", json::<Order>(), || {
            get(orders::show_order)
        }),
        op(
            Get,
            "/api/v1/orders/{order}/usage",
            "listOrderUsage",
            &[Admin, Auditor, Authority, Enterprise, Provider],
            "The usage records the order received, in the order of their periods (paged), each as its batch was first answered: ok with the cost and its split, or error with the code.",
            json::<Paged<lists::UsageLine>>(),
            || get(lists::list_order_usage),
        )
        .query(page, PAGED),
        op(Post, "/api/v1/orders/{order}/start", "startOrder", &[Admin, Provider], "Start a placed order (the provider).", json::<Order>(), action!(orders::order_action, "start")),
        op(Post, "/api/v1/orders/{order}/complete", "completeOrder", &[Admin, Provider, Enterprise], "Complete an order: what its voucher still holds for it returns.", json::<Order>(), action!(orders::order_action, "complete")),
        op(Post, "/api/v1/orders/{order}/cancel", "cancelOrder", &[Admin, Enterprise], "Cancel an order not yet started.", json::<Order>(), action!(orders::order_action, "cancel")),
        op(
            Post,
            "/api/v1/orders/{order}/extend",
            "extendOrder",
            &[Admin, Enterprise],
            "More hours at the locked price, with the voucher's share held; usage never runs past the hours ordered.",
            json::<Order>(),
            action!(orders::order_action, "extend"),
        )
        .body(schema::<orders::ExtendJson>),
        // ------------------------------------------------------------ the scheduling loop
        op(
            Get,
            "/api/v1/requests",
            "listRequests",
            &[Anyone],
            "List order requests within the caller's scope, in submission order (paged; filter by program and state).",
            json::<Paged<OrderRequest>>(),
            || get(requests::list_requests),
        )
        .query(page, BY_PROGRAM_AND_STATE)
        .states(requests::REQUEST_STATES),
        op(
            Post,
            "/api/v1/requests",
            "submitRequest",
            &[Admin, Enterprise],
            "Submit an order to the scheduling loop: checked as an order is, it waits for the next round, which places every waiting request together (or refuses it with the reason once its wait is over).",
            json::<OrderRequest>(),
            || post(requests::submit_request),
        )
        .body(schema::<requests::RequestJson>),
        op(
            Get,
            "/api/v1/requests/{request}",
            "showRequest",
            &[Admin, Auditor, Authority, Enterprise],
            "One order request: waiting, or as its round decided it (the order placed and what each policy term weighed in fen, or the reason it was refused).",
            json::<OrderRequest>(),
            || get(requests::show_request),
        ),
        op(Post, "/api/v1/requests/{request}/withdraw", "withdrawRequest", &[Admin, Enterprise], "Withdraw a waiting request.", json::<OrderRequest>(), || {
            post(requests::withdraw_request)
        }),
        op(
            Post,
            "/api/v1/rounds",
            "runRound",
            &[Admin],
            "Run a round of the scheduling loop now: every waiting request placed together by the batch engine; answers what it placed and refused, the engine's gap and what the policy terms weighed.",
            json::<RoundReport>(),
            || post(requests::run_round),
        ),
        // ------------------------------------------------------------ the market between hub nodes
        op(
            Get,
            "/api/v1/offers",
            "listOffers",
            &[Anyone],
            "List capacity offers in posting order, each with its state now (paged; filter by state).",
            json::<Paged<market::OfferView>>(),
            || get(market::list_offers),
        )
        .query(page, BY_STATE)
        .states(market::OFFER_STATES),
        op(
            Post,
            "/api/v1/offers",
            "postOffer",
            &[Admin, Provider],
            "Offer GPUs of one of the provider's pools (at a verified site) to the market between hub nodes over a window, at no less than a reserve price per GPU-hour.",
            json::<market::OfferView>(),
            || post(market::post_offer),
        )
        .body(schema::<market::OfferJson>),
        op(Get, "/api/v1/offers/{offer}", "showOffer", &[Anyone], "One capacity offer, with the GPUs sold so far and its state now.", json::<market::OfferView>(), || {
            get(market::show_offer)
        }),
        op(
            Post,
            "/api/v1/offers/{offer}/withdraw",
            "withdrawOffer",
            &[Admin, Provider],
            "Withdraw an open or upcoming offer: its unsold GPUs leave the market.",
            json::<market::OfferView>(),
            || post(market::withdraw_offer),
        ),
        op(
            Get,
            "/api/v1/clearings",
            "listClearings",
            &[Anyone],
            "The latest clearings of the market, newest first: each offer's price, the trades (request, order, price, regions) and the welfare against the LP relaxation of the same round (paged).",
            json::<Paged<suanli_service::market::Clearing>>(),
            || get(market::list_clearings),
        )
        .query(page, PAGED),
        op(
            Post,
            "/api/v1/clearings",
            "runClearing",
            &[Admin],
            "Clear the market now: a round of the scheduling loop, then every waiting request with a limit price, of a programme that trades, matched to the offers open outside its highest tier; each trade an order at its offer's price, booked between the two regions.",
            json::<market::ClearingRun>(),
            || post(market::run_clearing),
        ),
        // ------------------------------------------------------------ settlement
        op(
            Get,
            "/api/v1/statements",
            "listStatements",
            &[Admin, Auditor, Authorities, Providers],
            "List statements within the caller's scope, with their totals and without their lines (paged; filter by program and state: issued, approved).",
            json::<Paged<lists::StatementSummary>>(),
            || get(lists::list_statements),
        )
        .query(page, BY_PROGRAM_AND_STATE)
        .states(lifecycle::STATEMENT_STATES),
        op(Post, "/api/v1/statements", "issueStatement", &[Admin, AuthorityAdmin], "Issue a provider's monthly statement for a programme.", json::<Statement>(), || {
            post(statements::issue_statement)
        })
        .body(schema::<statements::StatementJson>),
        op(
            Get,
            "/api/v1/statements/{statement}",
            "showStatement",
            &[Admin, Auditor, Authority, Provider],
            "One statement with its lines and the amount in words.",
            json::<Statement>(),
            || get(statements::show_statement),
        ),
        op(Post, "/api/v1/statements/{statement}/approve", "approveStatement", &[Admin, AuthorityAdmin], "Approve a statement; it never changes again.", json::<Statement>(), || {
            post(statements::approve_statement)
        }),
        op(Post, "/api/v1/sweep", "sweep", &[Admin], "Expire vouchers past their validity (serve also runs it on a timer).", json::<suanli_service::SweepReport>(), || post(lifecycle::sweep)),
        // ------------------------------------------------------------ oversight
        op(Get, "/api/v1/audit/log", "auditLog", &[Admin, Auditor], "The hash-chained audit log (paged).", json::<Paged<lifecycle::LogEntryJson>>(), || {
            get(lifecycle::audit_log)
        })
        .query(page, PAGED),
        op(
            Get,
            "/api/v1/audit/proof",
            "auditProof",
            &[Admin, Auditor, Enterprise],
            "An inclusion proof (RFC 9162 audit path) of entry `sequence` in the tree of `size` entries (default: the latest signed head). The admin and auditors for any entry; others for entries touching their own objects.",
            json::<transparency::Proof>(),
            || get(transparency::proof),
        )
        .query(schema::<transparency::ProofQuery>, &[]),
        op(Post, "/api/v1/heads", "publishHead", &[Admin], "Sign and publish a head of the log as it is now.", json::<suanli_service::heads::Head>(), || post(transparency::publish)),
        op(
            Get,
            "/api/v1/anomalies",
            "listAnomalies",
            &[Admin, Auditor, Authorities],
            "Anomalies kept as evidence (paged; filter by kind and object): refused usage, forged signatures, conflicting replays, clock skew, stacking attempts, throttled logins, related parties. An authority sees those about its programmes.",
            json::<Paged<evidence::AnomalyJson>>(),
            || get(evidence::list_anomalies),
        )
        .query(page, &["offset", "limit", "kind", "object"]),
        // ------------------------------------------------------------ people and tokens
        op(Get, "/api/v1/users", "listUsers", &[Admin], "List the people who log in (paged): name, role, created, disabled; never a password.", json::<Paged<operate::UserJson>>(), || {
            get(operate::list_users)
        })
        .query(page, PAGED),
        op(Post, "/api/v1/users", "addUser", &[Admin], "Add a person who logs in (a password of 10 to 256 characters).", json::<operate::UserJson>(), || post(operate::add_user))
            .body(schema::<operate::UserInputJson>),
        op(Post, "/api/v1/users/{name}/disable", "disableUser", &[Admin], "Disable a person: their sessions are revoked.", json::<operate::UserJson>(), action!(operate::user_action, "disable")),
        op(Post, "/api/v1/users/{name}/enable", "enableUser", &[Admin], "Enable a disabled person.", json::<operate::UserJson>(), action!(operate::user_action, "enable")),
        op(Post, "/api/v1/users/{name}/password", "setUserPassword", &[Admin], "Set a person's password: their sessions are revoked.", json::<operate::UserJson>(), action!(operate::user_action, "password"))
            .body(schema::<operate::PasswordJson>),
        op(Get, "/api/v1/tokens", "listTokens", &[Admin], "List tokens, newest first (paged): role, person, issued, expires, revoked; never a secret.", json::<Paged<operate::TokenJson>>(), || {
            get(operate::list_tokens)
        })
        .query(page, PAGED),
        op(Post, "/api/v1/tokens", "issueToken", &[Admin], "Issue a machine token for a role; the secret is answered once.", json::<IssuedToken>(), || post(tokens::issue_token))
            .body(schema::<tokens::TokenJson>),
        op(Post, "/api/v1/tokens/{token}/revoke", "revokeToken", &[Admin], "Revoke a token (token-N).", json::<RevokedToken>(), || post(tokens::revoke_token)),
    ]
}

/// The routes of every operation.
pub fn routes() -> axum::Router<AppState> {
    operations().iter().fold(axum::Router::new(), |router, operation| router.route(operation.path, (operation.route)()))
}
