//! Thermal pressure: what the machine's thermal state does to serving.
//!
//! On macOS the state comes from `NSProcessInfo.thermalState` (read by the
//! Apple code and handed to [`crate::Manager::set_thermal_state`] by
//! `anemone serve` every few seconds); elsewhere nothing sets it and it stays
//! nominal. At `Serious` the global concurrency limit halves, at `Critical` it
//! drops to a quarter, and health reports every model as degraded with the
//! reason, so load balancers can steer traffic away before the OS throttles.

pub use anemone_core::ThermalState;
