//! Opening a backend's devices: an error that names the device where the backend would panic
//! (a GPU that is not there, a driver that fails), and the devices of `--devices`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use burn::tensor::Tensor;
use burn::tensor::backend::{Device as _, DeviceId};
use mg_layers::MgBackend;

/// Opens `device` (a one-element tensor written and read back), or says why it cannot be
/// opened: the GPU runtimes panic when a device or driver is missing, often on a thread of
/// their own; the first panic's message becomes the error.
pub fn open_device<B: MgBackend>(device: &B::Device) -> anyhow::Result<()> {
    catching(|| drop(Tensor::<B, 1>::zeros([1], device).into_data()))
        .map_err(|message| anyhow!("device {device:?} cannot be opened: {message}"))
}

/// The devices of `ids`, each opened ([`open_device`]).
pub fn shard_devices<B: MgBackend>(ids: &[DeviceId]) -> anyhow::Result<Vec<B::Device>> {
    ids.iter()
        .map(|&id| {
            let device = B::Device::from_id(id);
            open_device::<B>(&device)?;
            Ok(device)
        })
        .collect()
}

/// Runs `f`, turning a panic into the first panic message heard meanwhile, on any thread: a
/// runtime that panics on a thread of its own leaves the caller only a closed channel, so the
/// first message is the cause. The default panic report is left out while `f` runs (panics of
/// unrelated threads in that time are taken over too); one call at a time swaps the
/// process's panic hook.
fn catching(f: impl FnOnce()) -> Result<(), String> {
    static SWAP: Mutex<()> = Mutex::new(());
    let _one = SWAP.lock().unwrap_or_else(|e| e.into_inner());
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let report = std::panic::take_hook();
    let heard = Arc::clone(&messages);
    std::panic::set_hook(Box::new(move |info| {
        let text = info.payload_as_str().unwrap_or("no message").to_string();
        heard.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(report);
    let messages = messages.lock().unwrap_or_else(|e| e.into_inner());
    outcome.map_err(|_| {
        messages
            .first()
            .cloned()
            .unwrap_or_else(|| "the backend stopped without a message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The CPU's device opens, and `--devices` naming it twice gives two devices.
    #[test]
    fn devices_open() {
        let device: burn::tensor::Device<Flex> = Default::default();
        open_device::<Flex>(&device).unwrap();
        let id = device.to_id();
        assert_eq!(shard_devices::<Flex>(&[id, id]).unwrap().len(), 2);
    }

    /// A panic on a worker thread, then one on the caller's (as a GPU runtime's server thread
    /// dies and its client finds the channel closed), becomes the first one's message; without
    /// a panic there is no error, and the panic hook is the previous one again afterwards.
    #[test]
    fn the_first_panic_is_the_error() {
        let error = catching(|| {
            let worker = std::thread::spawn(|| panic!("no adapter for device 7"));
            assert!(worker.join().is_err());
            panic!("channel closed");
        })
        .unwrap_err();
        assert_eq!(error, "no adapter for device 7");
        assert_eq!(catching(|| {}), Ok(()));
        let error = catching(|| panic!("{}", String::from("formatted"))).unwrap_err();
        assert_eq!(error, "formatted");
    }
}
