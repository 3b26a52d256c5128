//! One router per area, merged in [`crate::app::router`].

pub mod alerts;
pub mod audit;
pub mod cases;
pub mod health;
pub mod keys;
pub mod licenses;
pub mod services;
pub mod stats;
