//! Backend selection: cargo features decide what is compiled, `--device` what runs.

use anyhow::bail;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use burn::tensor::backend::Device as _;
use burn::tensor::backend::DeviceId;
use clap::ValueEnum;
use mg_layers::MgBackend;

/// A compute device, as named on the command line.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn's Flex CPU backend (feature `flex`, on by default).
    Cpu,
    /// burn's ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// wgpu: Vulkan, Metal or DirectX 12 (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA (feature `cuda`).
    Cuda,
}

impl DeviceKind {
    /// The cargo feature that compiles this device in.
    pub fn feature(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "flex",
            DeviceKind::Ndarray => "ndarray",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// The name on the command line (`--device NAME`).
    pub fn name_arg(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Ndarray => "ndarray",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// The name printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu-flex",
            DeviceKind::Ndarray => "cpu-ndarray",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

impl DeviceKind {
    /// Whether this device's backend is compiled into the binary.
    pub fn compiled(self) -> bool {
        match self {
            DeviceKind::Cpu => cfg!(feature = "flex"),
            DeviceKind::Ndarray => cfg!(feature = "ndarray"),
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
            DeviceKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// An error naming the feature to enable when this device is not compiled in.
    pub fn ensure_compiled(self) -> anyhow::Result<()> {
        if !self.compiled() {
            let name = self.name_arg();
            bail!(
                "device `{name}` is not compiled into this binary; rebuild with `--features {}` \
                 (e.g. `cargo run --release -p mg-train --features {} -- ... --device {name}`)",
                self.feature(),
                self.feature(),
            );
        }
        Ok(())
    }
}

impl DeviceKind {
    /// The backend's device `index`, as `--devices` names it: CUDA's device `index`, wgpu's
    /// discrete GPU `index` (`WgpuDevice::DiscreteGpu`); the CPU backends have one device.
    pub fn device_id(self, index: u16) -> anyhow::Result<DeviceId> {
        self.ensure_compiled()?;
        match self {
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Ok(burn::backend::cuda::CudaDevice::new(index.into()).to_id()),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => {
                Ok(burn::backend::wgpu::WgpuDevice::DiscreteGpu(index.into()).to_id())
            }
            other => bail!(
                "device {index} of `{}`: it has one device; several are for `cuda` and `wgpu`",
                other.name_arg()
            ),
        }
    }
}

/// Work generic over the backend, run by [`dispatch`] on the backend's default device, which
/// the work opens where it first uses it (`harness::device::open_device`), after its own
/// checks.
pub trait Job {
    /// What the work returns.
    type Output;

    /// Runs the work on backend `B`.
    fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on the backend of `kind`, or explains which feature to enable.
pub fn dispatch<J: Job>(kind: DeviceKind, job: J) -> anyhow::Result<J::Output> {
    match kind {
        #[cfg(feature = "flex")]
        DeviceKind::Cpu => job.run::<burn::backend::Flex>(Default::default()),
        #[cfg(feature = "ndarray")]
        DeviceKind::Ndarray => job.run::<burn::backend::NdArray>(Default::default()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => job.run::<burn::backend::Wgpu>(Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => job.run::<burn::backend::Cuda>(Default::default()),
        #[allow(unreachable_patterns)]
        other => {
            other.ensure_compiled()?;
            bail!("device `{}` has no backend", other.name_arg())
        }
    }
}
