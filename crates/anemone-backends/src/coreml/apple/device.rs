//! What this Mac offers Core ML: its compute devices (is there a Neural
//! Engine?), its OS version (part of the compiled-model cache key) and its
//! thermal state.

use crate::coreml::thermal::ThermalState;
use objc2::runtime::ProtocolObject;
use objc2_core_ml::{MLComputeDeviceProtocol, MLModel, MLNeuralEngineComputeDevice};
use objc2_foundation::NSProcessInfo;

/// The compute devices Core ML may use, as words, e.g. `["cpu", "gpu",
/// "neural engine (16 cores)"]`. `None` before macOS 14, which cannot tell.
pub fn compute_devices() -> Option<Vec<String>> {
    let version = objc2_foundation::NSOperatingSystemVersion {
        majorVersion: 14,
        minorVersion: 0,
        patchVersion: 0,
    };
    if !NSProcessInfo::processInfo().isOperatingSystemAtLeastVersion(version) {
        return None;
    }
    // SAFETY: availableComputeDevices exists from macOS 14, checked above.
    let devices = unsafe { MLModel::availableComputeDevices() };
    Some(devices.iter().map(|d| describe(&d)).collect())
}

/// A compute device in words: `cpu`, `gpu`, `neural engine (16 cores)`.
pub fn describe(device: &ProtocolObject<dyn MLComputeDeviceProtocol>) -> String {
    if let Some(ane) = device_as::<MLNeuralEngineComputeDevice>(device) {
        // SAFETY: a plain property read on a device Core ML returned.
        let cores = unsafe { ane.totalCoreCount() };
        return format!("neural engine ({cores} cores)");
    }
    let object: &objc2::runtime::AnyObject = device.as_ref();
    let class = object.class().name().to_string_lossy().to_string();
    if class.contains("GPU") {
        "gpu".into()
    } else if class.contains("CPU") {
        "cpu".into()
    } else {
        class
    }
}

fn device_as<T: objc2::DowncastTarget>(
    device: &ProtocolObject<dyn MLComputeDeviceProtocol>,
) -> Option<&T> {
    let object: &objc2::runtime::AnyObject = device.as_ref();
    object.downcast_ref::<T>()
}

/// Whether Core ML reports a Neural Engine; `None` when it cannot tell
/// (before macOS 14).
pub fn has_neural_engine() -> Option<bool> {
    compute_devices().map(|d| d.iter().any(|d| d.starts_with("neural engine")))
}

/// The OS version string, e.g. `Version 15.1 (Build 24B83)`.
pub fn os_version() -> String {
    NSProcessInfo::processInfo()
        .operatingSystemVersionString()
        .to_string()
}

/// The machine's thermal state now (`NSProcessInfo.thermalState`).
pub fn thermal_state() -> ThermalState {
    ThermalState::from_raw(NSProcessInfo::processInfo().thermalState().0)
}
