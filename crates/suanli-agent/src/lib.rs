//! Connectors a provider runs beside its own systems. They talk to Suanli only through the wire
//! crate's client (HTTP, the provider's machine token, batches signed with the provider's key), so
//! they stand beside the service, never on it.
//!
//! - [`slurm`]: `suanli agent slurm`, run beside a Slurm controller with accounting (slurmdbd).

pub mod slurm;
