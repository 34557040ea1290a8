//! The service's errors: a stable machine-readable code and a message that names the field or
//! the rule that refused.
//!
//! A refused command changes nothing: every check runs before any state is touched. The codes
//! are part of the interface (the CLI prints them, the HTTP API will send them) and never change
//! meaning; add new ones rather than reuse old ones.

use std::fmt;

macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// A stable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    InvalidField => "invalid_field",
    NotFound => "not_found",
    AlreadyExists => "already_exists",
    ProgramFileInvalid => "program_file_invalid",
    ProgramExists => "program_exists",
    ProgramState => "program_state",
    ProgramHasOpenVouchers => "program_has_open_vouchers",
    ApplicationWindowClosed => "application_window_closed",
    ApplicationState => "application_state",
    NotEligible => "not_eligible",
    AmountAboveRequest => "amount_above_request",
    BudgetExceeded => "budget_exceeded",
    BudgetReservedForEarlierApplications => "budget_reserved_for_earlier_applications",
    EnterpriseCapExceeded => "enterprise_cap_exceeded",
    ProgramAnnualCapExceeded => "program_annual_cap_exceeded",
    StackingNotAllowed => "stacking_not_allowed",
    StackingCapExceeded => "stacking_cap_exceeded",
    VoucherState => "voucher_state",
    VoucherExpired => "voucher_expired",
    VoucherOfAnotherEnterprise => "voucher_of_another_enterprise",
    ProviderNotAllowed => "provider_not_allowed",
    PurposeNotAllowed => "purpose_not_allowed",
    ChipNotInPool => "chip_not_in_pool",
    ChipUnknown => "chip_unknown",
    PoolCapacityExceeded => "pool_capacity_exceeded",
    PoolRetired => "pool_retired",
    NoPoolAvailable => "no_pool_available",
    OrderState => "order_state",
    RequestState => "request_state",
    RequestsWaitingMax => "requests_waiting_max",
    OfferState => "offer_state",
    SiteNotVerified => "site_not_verified",
    OffersMax => "offers_max",
    OfferWindow => "offer_window",
    OrderOfAnotherProvider => "order_of_another_provider",
    UsageRecordConflict => "usage_record_conflict",
    UsageIdAlreadyFailed => "usage_id_already_failed",
    UsageInFuture => "usage_in_future",
    UsageOutsideOrderRun => "usage_outside_order_run",
    UsageExceedsPhysics => "usage_exceeds_physics",
    UsageExceedsOrderGpus => "usage_exceeds_order_gpus",
    UsageExceedsOrderHours => "usage_exceeds_order_hours",
    UsageAfterOrderEnd => "usage_after_order_end",
    LotteryState => "lottery_state",
    LotterySeedMismatch => "lottery_seed_mismatch",
    UtilizationConflict => "utilization_conflict",
    UtilizationTooOld => "utilization_too_old",
    UtilizationInFuture => "utilization_in_future",
    UtilizationExceedsPool => "utilization_exceeds_pool",
    MonthNotEnded => "month_not_ended",
    StatementExists => "statement_exists",
    StatementEmpty => "statement_empty",
    StatementState => "statement_state",
    SignatureInvalid => "signature_invalid",
    Forbidden => "forbidden",
    AmountOverflow => "amount_overflow",
    DatabaseLocked => "database_locked",
    StorageUnavailable => "storage_unavailable",
    StorageFull => "storage_full",
    Storage => "storage_error",
    Internal => "internal_error",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command was refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError { code, message: message.into() }
    }

    /// Bad input in one named field.
    pub fn field(field: &str, problem: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorCode::InvalidField, format!("{field}: {problem}"))
    }

    pub fn not_found(what: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorCode::NotFound, format!("{what} does not exist"))
    }

    /// Whether the fault is the service's, not the caller's.
    pub fn is_internal(&self) -> bool {
        matches!(self.code, ErrorCode::Storage | ErrorCode::Internal)
    }
}

impl From<suanli_domain::MoneyError> for ServiceError {
    fn from(error: suanli_domain::MoneyError) -> ServiceError {
        ServiceError::new(ErrorCode::AmountOverflow, error.to_string())
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
