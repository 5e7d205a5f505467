//! The machine's thermal state: the type is [`anemone_core::ThermalState`]
//! (Apple's values); the Apple code reads it (`apple::thermal_state`) and the
//! runtime acts on it (`anemone_runtime::Manager::set_thermal_state`).

pub use anemone_core::ThermalState;

/// The thermal state where the OS reports one: macOS with the `coreml`
/// feature. `None` elsewhere (Linux has no equivalent signal).
pub fn current() -> Option<ThermalState> {
    #[cfg(all(target_vendor = "apple", feature = "coreml"))]
    return Some(super::apple::thermal_state());
    #[cfg(not(all(target_vendor = "apple", feature = "coreml")))]
    None
}
