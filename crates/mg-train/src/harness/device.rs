//! Opening a backend's devices: an error that names the device where the backend would panic
//! (a GPU that is not there, a driver that fails), and the devices of `--devices`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use burn::tensor::Tensor;
use burn::tensor::backend::{Device as _, DeviceId};
use mg_layers::MgBackend;

/// Opens `device` (a one-element tensor written and read back), or says why it cannot be
/// opened. The GPU runtimes panic when a device or driver is missing, often on a thread of
/// their own; those panics are caught here, the first one's message kept (the root cause; the
/// calling thread then sees only a closed channel) and the default panic report left out.
pub fn open_device<B: MgBackend>(device: &B::Device) -> anyhow::Result<()> {
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let report = std::panic::take_hook();
    let heard = Arc::clone(&messages);
    std::panic::set_hook(Box::new(move |info| {
        let text = info.payload_as_str().unwrap_or("no message").to_string();
        heard.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }));
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Tensor::<B, 1>::zeros([1], device).into_data()
    }));
    std::panic::set_hook(report);
    let messages = messages.lock().unwrap_or_else(|e| e.into_inner());
    opened.map(drop).map_err(|_| {
        let message = messages
            .first()
            .map_or("the backend stopped without a message", String::as_str);
        anyhow!("device {device:?} cannot be opened: {message}")
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The CPU's device opens; a backend's panic becomes an error with its message.
    #[test]
    fn devices_open_or_say_why_not() {
        let device: burn::tensor::Device<Flex> = Default::default();
        open_device::<Flex>(&device).unwrap();
        let id = device.to_id();
        assert_eq!(shard_devices::<Flex>(&[id, id]).unwrap().len(), 2);
    }
}
