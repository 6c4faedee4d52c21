//! One invariant per file, named after its id.

mod b02_queued_without_full_slots;
mod b05_stale_queued_rows;
mod e01_terminal_state_closure;
mod e02_no_phantom_reversal;
mod e03_completed_rows_populated;
mod e04_queued_rows_have_metadata;
mod e05_dispatched_rows_have_session;
mod e06_no_overdue_next_run;
mod g03_clock_sanity;
mod g04_no_credentials_in_metadata;
mod h01_collector_not_blind;
mod l03_delete_cascades;
mod s01_slot_row_bijection;
mod s02_no_overbooking;
mod s03_slot_ttl_floor;
mod s04_metadata_membership;
mod s07_sentinel_lifetime;

pub use b02_queued_without_full_slots::B02;
pub use b05_stale_queued_rows::B05;
pub use e01_terminal_state_closure::E01;
pub use e02_no_phantom_reversal::E02;
pub use e03_completed_rows_populated::E03;
pub use e04_queued_rows_have_metadata::E04;
pub use e05_dispatched_rows_have_session::E05;
pub use e06_no_overdue_next_run::E06;
pub use g03_clock_sanity::G03;
pub use g04_no_credentials_in_metadata::G04;
pub use h01_collector_not_blind::H01;
pub use l03_delete_cascades::L03;
pub use s01_slot_row_bijection::S01;
pub use s02_no_overbooking::S02;
pub use s03_slot_ttl_floor::S03;
pub use s04_metadata_membership::S04;
pub use s07_sentinel_lifetime::S07;
