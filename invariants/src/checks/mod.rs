//! One invariant per file, named after its id.

mod b02_queued_without_full_slots;
mod b05_stale_queued_rows;
mod e01_terminal_state_closure;
mod e02_no_phantom_reversal;
mod g03_clock_sanity;
mod h01_collector_not_blind;
mod l03_delete_cascades;
mod s01_slot_row_bijection;
mod s02_no_overbooking;
mod s03_slot_ttl_floor;
mod s07_sentinel_lifetime;

pub use b02_queued_without_full_slots::B02;
pub use b05_stale_queued_rows::B05;
pub use e01_terminal_state_closure::E01;
pub use e02_no_phantom_reversal::E02;
pub use g03_clock_sanity::G03;
pub use h01_collector_not_blind::H01;
pub use l03_delete_cascades::L03;
pub use s01_slot_row_bijection::S01;
pub use s02_no_overbooking::S02;
pub use s03_slot_ttl_floor::S03;
pub use s07_sentinel_lifetime::S07;
