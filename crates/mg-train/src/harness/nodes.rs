//! Data-parallel training over processes and machines: every node trains its part of the
//! global batch and the nodes' gradients are summed by burn's collective operations
//! (`burn-collective`, an all-reduce over WebSockets; rank 0 runs its orchestrator).
//!
//! The global batch is cut into `nodes` consecutive parts ([`node_sizes`]), node `r` takes
//! part `r` (and cuts it further into its `[train] threads` shards). Per window the nodes sum
//! two buffers: the units and stop requests (so that a mean loss weights every node by its
//! share, and a stop on one node stops all), then the weighted loss, task figures and every
//! gradient flattened into one buffer. All nodes receive the same sum, so their models stay
//! equal without ever being sent. Every collective call is bounded by `timeout`: a node that
//! dies or hangs stops the others with an error naming it instead of a silent hang.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective,
    register,
};
use burn_communication::Address;
use sha2::{Digest, Sha256};

use super::experiment::LossReduction;
use super::optim::scale_grads;

/// Where this process stands among the nodes of a data-parallel run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeOptions {
    /// Processes that train the run together.
    pub nodes: usize,
    /// This process's rank, `0..nodes`. Rank 0 runs the coordinator and writes the run.
    pub rank: usize,
    /// `HOST:PORT` of the coordinator (rank 0 listens on its port).
    pub coordinator: String,
    /// `HOST:PORT` at which the other nodes reach this one [default: the coordinator's host,
    /// port `coordinator port + 1 + rank`].
    pub address: Option<String>,
    /// How long a node waits for the others in any collective call.
    pub timeout: Duration,
}

/// Splits `HOST:PORT`, naming `what` in the error.
fn host_port(text: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("{what} {text:?}: expected HOST:PORT, e.g. 127.0.0.1:7300"))?;
    let port: u16 =
        port.parse().ok().filter(|&p| p > 0).with_context(|| {
            format!("{what} {text:?}: the port must be a number from 1 to 65535")
        })?;
    if host.is_empty() {
        bail!("{what} {text:?}: expected HOST:PORT, e.g. 127.0.0.1:7300");
    }
    Ok((host.to_string(), port))
}

impl NodeOptions {
    /// Checks the settings; errors name the flag.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.nodes == 0 {
            bail!("--nodes 0: expected at least 1 node");
        }
        if self.rank >= self.nodes {
            bail!(
                "--node-rank {}: expected 0 to {} for --nodes {}",
                self.rank,
                self.nodes - 1,
                self.nodes
            );
        }
        if self.timeout.is_zero() {
            bail!("--node-timeout: expected a positive number of seconds");
        }
        self.coordinator()?;
        self.node_address()?;
        Ok(())
    }

    fn coordinator(&self) -> anyhow::Result<(String, u16)> {
        host_port(&self.coordinator, "--coordinator")
    }

    /// This node's data-service address as the others reach it.
    fn node_address(&self) -> anyhow::Result<(String, u16)> {
        match &self.address {
            Some(a) => host_port(a, "--node-address"),
            None => {
                let (host, port) = self.coordinator()?;
                let port = u16::try_from(port as usize + 1 + self.rank)
                    .ok()
                    .with_context(|| {
                        format!(
                            "--coordinator {}: port {port} + 1 + rank {} is beyond 65535; \
                             give --node-address",
                            self.coordinator, self.rank
                        )
                    })?;
                Ok((host, port))
            }
        }
    }

    /// The ranks other than this one, for error messages.
    fn others(&self) -> String {
        let others: Vec<String> = (0..self.nodes)
            .filter(|&r| r != self.rank)
            .map(|r| r.to_string())
            .collect();
        match others.len() {
            1 => format!("rank {}", others[0]),
            _ => format!("one of ranks {}", others.join(", ")),
        }
    }
}

/// Sizes of the nodes' parts of a batch of `batch` sequences (consecutive, the longer first).
pub fn node_sizes(batch: usize, nodes: usize) -> Vec<usize> {
    super::train::shard_sizes(batch, nodes)
}

/// A request to the collective thread.
enum Job<B: Backend> {
    /// A tensor to sum over the nodes.
    Sum {
        tensor: B::FloatTensorPrimitive,
        reply: mpsc::Sender<Result<B::FloatTensorPrimitive, String>>,
    },
    /// Leave the run, closing the connections to the other nodes.
    Finish { reply: mpsc::Sender<()> },
}

/// A process's membership of a data-parallel run: sums tensors over all nodes.
///
/// burn-collective's calls block until every node has made the same call; they run on a
/// thread of their own, and the caller waits at most the timeout for the answer.
pub struct Nodes<B: Backend> {
    options: NodeOptions,
    device: B::Device,
    jobs: mpsc::Sender<Job<B>>,
    /// Sums made and the time spent waiting for them (transfers, and the slower nodes).
    sums: std::cell::Cell<(u64, Duration)>,
}

/// What a node spent in its sums over the nodes.
#[derive(Clone, Copy, Debug)]
pub struct SumTime {
    /// Sums made.
    pub sums: u64,
    /// Time from each sum's request to its answer, in all.
    pub waited: Duration,
}

/// What every node must agree on before training: the config and where training starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// A digest of the experiment's config (`[train] threads` left out: it may differ).
    pub config: u64,
    /// A digest of the starting point (time step and checkpoint).
    pub start: u64,
}

impl Agreement {
    /// The first 8 bytes of SHA-256 of each text.
    pub fn new(config: &str, start: &str) -> Self {
        let digest = |text: &str| {
            let d = Sha256::digest(text.as_bytes());
            u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
        };
        Self {
            config: digest(config),
            start: digest(start),
        }
    }
}

/// A `u64` as four 16-bit pieces, each exact in `f32`.
fn pieces(x: u64) -> [f32; 4] {
    std::array::from_fn(|k| ((x >> (16 * k)) & 0xffff) as f32)
}

impl<B: Backend> Nodes<B> {
    /// Joins the run: rank 0 starts the coordinator; every node registers and waits for the
    /// others (at most the timeout), then the nodes check that each rank is taken once and
    /// that all run the same config from the same starting point.
    pub fn join(
        options: &NodeOptions,
        device: &B::Device,
        agreement: Agreement,
    ) -> anyhow::Result<Self> {
        options.check()?;
        // burn-communication's servers print an INFO log on stderr unless a subscriber is
        // set; ours are the errors below (MG_NODE_LOG=1 shows theirs).
        if std::env::var_os("MG_NODE_LOG").is_none() {
            let _ = tracing::subscriber::set_global_default(
                tracing::subscriber::NoSubscriber::default(),
            );
        }
        quiet_transport_panics(options.rank);
        let (coordinator_host, coordinator_port) = options.coordinator()?;
        let (node_host, node_port) = options.node_address()?;
        if options.rank == 0 {
            start_coordinator(coordinator_port)?;
        }
        let address = |host: &str, port: u16, what: &str| -> anyhow::Result<Address> {
            format!("ws://{host}:{port}")
                .parse::<Address>()
                .map_err(|e| anyhow::anyhow!("{what} {host}:{port}: {e:?}"))
        };
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(options.nodes as u32)
            .with_global_address(address(
                &coordinator_host,
                coordinator_port,
                "--coordinator",
            )?)
            .with_node_address(address(&node_host, node_port, "--node-address")?)
            .with_data_service_port(node_port)
            .with_global_all_reduce_strategy(AllReduceStrategy::Centralized);
        // The data service listens on every interface at the node's port.
        TcpListener::bind(("0.0.0.0", node_port)).with_context(|| {
            format!(
                "node {}: port {node_port} (this node's data service) is taken; choose another \
                 with --node-address or --coordinator",
                options.rank
            )
        })?;

        let (jobs, inbox) = mpsc::channel::<Job<B>>();
        let (registered, on_registered) = mpsc::channel::<Result<(), String>>();
        let peer = PeerId(options.rank as u32);
        let worker_device = device.clone();
        std::thread::Builder::new()
            .name(format!("mg-node-{}", options.rank))
            .spawn(move || {
                let result =
                    register::<B>(peer, worker_device, config).map_err(|e| format!("{e:?}"));
                let ok = result.is_ok();
                if registered.send(result).is_err() || !ok {
                    return;
                }
                for job in inbox {
                    match job {
                        Job::Sum { tensor, reply } => {
                            let result = all_reduce::<B>(peer, tensor, ReduceOperation::Sum)
                                .map_err(|e| format!("{e:?}"));
                            if reply.send(result).is_err() {
                                return;
                            }
                        }
                        Job::Finish { reply } => {
                            finish_collective::<B>(peer).ok();
                            reply.send(()).ok();
                            return;
                        }
                    }
                }
            })
            .context("starting the collective thread")?;
        match on_registered.recv_timeout(options.timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!(
                "node {}: joining the run through the coordinator at {} failed: {e}",
                options.rank,
                options.coordinator
            ),
            Err(_) => bail!(
                "node {} of {}: not every node joined within {} s through the coordinator at {} \
                 (rank 0 starts it: is every rank running, with the same --nodes and \
                 --coordinator, and can each reach the others' --node-address?)",
                options.rank,
                options.nodes,
                options.timeout.as_secs_f64(),
                options.coordinator
            ),
        }
        let nodes = Self {
            options: options.clone(),
            device: device.clone(),
            jobs,
            sums: Default::default(),
        };
        nodes.agree(agreement)?;
        Ok(nodes)
    }

    /// The run's node count.
    pub fn count(&self) -> usize {
        self.options.nodes
    }

    /// This node's rank.
    pub fn rank(&self) -> usize {
        self.options.rank
    }

    /// Leaves the run once training is over: the connections to the other nodes close
    /// cleanly (waits a few seconds at most). Returns the time spent in sums.
    pub fn finish(self) -> SumTime {
        let (reply, done) = mpsc::channel();
        if self.jobs.send(Job::Finish { reply }).is_ok() {
            done.recv_timeout(Duration::from_secs(5)).ok();
        }
        let (sums, waited) = self.sums.get();
        SumTime { sums, waited }
    }

    /// Every rank taken once, all with the same config and starting point.
    fn agree(&self, agreement: Agreement) -> anyhow::Result<()> {
        const SLOT: usize = 9;
        let n = self.options.nodes;
        let rank = self.options.rank;
        let mut mine = vec![0.0f32; n * SLOT];
        mine[rank * SLOT] = 1.0;
        mine[rank * SLOT + 1..rank * SLOT + 5].copy_from_slice(&pieces(agreement.config));
        mine[rank * SLOT + 5..rank * SLOT + 9].copy_from_slice(&pieces(agreement.start));
        let all = self.sum_values("the nodes' settings", &mine)?;
        for r in 0..n {
            let slot = &all[r * SLOT..(r + 1) * SLOT];
            match slot[0] as usize {
                1 => {}
                0 => bail!("node {rank}: no process took rank {r} of --nodes {n}"),
                k => bail!("node {rank}: {k} processes took rank {r}; give each a rank of its own"),
            }
            if slot[1..5] != pieces(agreement.config) {
                bail!(
                    "node {rank}: rank {r} trains another config (every node needs the same \
                     config file and --set/--seed settings; only [train] threads may differ)"
                );
            }
            if slot[5..9] != pieces(agreement.start) {
                bail!(
                    "node {rank}: rank {r} starts from another point (another checkpoint, or \
                     --from); every node resumes from the same checkpoint of the same run"
                );
            }
        }
        Ok(())
    }

    /// The sum over all nodes of `tensor`, at most the timeout; `what` names it in errors.
    pub fn sum(&self, what: &str, tensor: Tensor<B, 1>) -> anyhow::Result<Tensor<B, 1>> {
        let (reply, answer) = mpsc::channel();
        let job = Job::Sum {
            tensor: tensor.into_primitive().tensor(),
            reply,
        };
        let lost = || {
            anyhow::anyhow!(
                "node {}: the collective thread stopped while summing {what}",
                self.options.rank
            )
        };
        let start = std::time::Instant::now();
        self.jobs.send(job).map_err(|_| lost())?;
        let answer = answer.recv_timeout(self.options.timeout);
        let (sums, waited) = self.sums.get();
        self.sums.set((sums + 1, waited + start.elapsed()));
        match answer {
            Ok(Ok(sum)) => Ok(Tensor::from_primitive(TensorPrimitive::Float(sum))),
            Ok(Err(e)) => bail!(
                "node {}: {} stopped while the nodes summed {what} ({e})",
                self.options.rank,
                self.options.others()
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "node {}: {} did not answer within {} s while the nodes summed {what}: it \
                 stopped, hangs, or needs more time than --node-timeout",
                self.options.rank,
                self.options.others(),
                self.options.timeout.as_secs_f64()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(lost()),
        }
    }

    /// The sum over all nodes of a few `f64` values, each sent as two `f32` (its rounding and
    /// the rest), so that the sum keeps about 14 significant digits.
    pub fn sum_f64(&self, what: &str, values: &[f64]) -> anyhow::Result<Vec<f64>> {
        let mut parts = Vec::with_capacity(2 * values.len());
        for &v in values {
            let high = v as f32;
            parts.push(high);
            parts.push((v - f64::from(high)) as f32);
        }
        let sum = self.sum_values(what, &parts)?;
        Ok(sum
            .chunks(2)
            .map(|p| f64::from(p[0]) + f64::from(p[1]))
            .collect())
    }

    /// The sum over all nodes of a few host values (as `f32`).
    pub fn sum_values(&self, what: &str, values: &[f32]) -> anyhow::Result<Vec<f32>> {
        let tensor = Tensor::<B, 1>::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &self.device,
        );
        let sum = self.sum(what, tensor)?;
        sum.into_data()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the sum of {what}: {e:?}"))
    }
}

/// burn-communication panics on its runtime's threads when another node's connection breaks
/// (the error that follows names the node); such a panic prints one line, not a backtrace.
fn quiet_transport_panics(rank: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("tokio-rt-worker") {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("node {rank}: a connection to another node broke ({message})");
        } else {
            previous(info);
        }
    }));
}

/// Starts the coordinator (burn-collective's orchestrator) on `port`, on a thread of its own
/// that lives as long as the process.
fn start_coordinator(port: u16) -> anyhow::Result<()> {
    TcpListener::bind(("0.0.0.0", port)).with_context(|| {
        format!("rank 0: the coordinator's port {port} is taken; choose another --coordinator")
    })?;
    std::thread::Builder::new()
        .name("mg-coordinator".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the coordinator");
            runtime.block_on(burn_collective::start_global_orchestrator_until(
                port,
                std::future::pending::<()>(),
            ));
        })
        .context("starting the coordinator thread")?;
    Ok(())
}

/// The float parameters of a module in visit order, with their ranks and shapes.
struct Params(Vec<(ParamId, Vec<usize>)>);

impl<B: Backend> ModuleVisitor<B> for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, param.shape().dims::<D>().to_vec()));
    }
}

fn take_flat<B: Backend, const D: usize>(
    grads: &mut GradientsParams,
    id: ParamId,
) -> Option<Tensor<B, 1>> {
    grads.remove::<B, D>(id).map(|g| g.flatten::<1>(0, D - 1))
}

fn put_flat<B: Backend, const D: usize>(
    grads: &mut GradientsParams,
    id: ParamId,
    flat: Tensor<B, 1>,
    dims: &[usize],
) {
    let shape: [usize; D] = dims.try_into().expect("the parameter's rank");
    grads.register(id, flat.reshape(shape));
}

/// Gradients of a model's parameters laid out as one flat tensor, in the module's visit
/// order (the same on every node; `ParamId`s are not).
pub struct FlatGrads<B: Backend> {
    /// Parameter, shape, and whether this node had a gradient for it.
    layout: Vec<(ParamId, Vec<usize>, bool)>,
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> FlatGrads<B> {
    /// Moves `grads` of `model`'s parameters into one flat tensor (zeros where a parameter has
    /// no gradient), after `head` (extra values summed alongside).
    pub fn pack<AB, M>(
        model: &M,
        grads: &mut GradientsParams,
        head: Vec<f32>,
        device: &B::Device,
    ) -> (Self, Tensor<B, 1>)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let mut params = Params(Vec::new());
        model.visit(&mut params);
        let n = head.len();
        let mut parts = vec![Tensor::<B, 1>::from_data(
            TensorData::new(head, [n]),
            device,
        )];
        let mut layout = Vec::with_capacity(params.0.len());
        for (id, dims) in params.0 {
            let flat = match dims.len() {
                1 => take_flat::<B, 1>(grads, id),
                2 => take_flat::<B, 2>(grads, id),
                3 => take_flat::<B, 3>(grads, id),
                4 => take_flat::<B, 4>(grads, id),
                other => panic!("parameters of rank {other} are not supported"),
            };
            let present = flat.is_some();
            let len = dims.iter().product::<usize>();
            parts.push(flat.unwrap_or_else(|| Tensor::zeros([len], device)));
            layout.push((id, dims, present));
        }
        let layout = Self {
            layout,
            _b: std::marker::PhantomData,
        };
        (layout, Tensor::cat(parts, 0))
    }

    /// The inverse of [`FlatGrads::pack`]: registers the gradients of `flat` (those the node
    /// had) in `grads` and returns the `head` values.
    pub fn unpack(&self, flat: Tensor<B, 1>, head: usize, grads: &mut GradientsParams) -> Vec<f32> {
        let values = flat
            .clone()
            .narrow(0, 0, head)
            .into_data()
            .to_vec::<f32>()
            .expect("f32 values");
        let mut at = head;
        for (id, dims, present) in &self.layout {
            let len = dims.iter().product::<usize>();
            if *present {
                let part = flat.clone().narrow(0, at, len);
                match dims.len() {
                    1 => put_flat::<B, 1>(grads, *id, part, dims),
                    2 => put_flat::<B, 2>(grads, *id, part, dims),
                    3 => put_flat::<B, 3>(grads, *id, part, dims),
                    4 => put_flat::<B, 4>(grads, *id, part, dims),
                    _ => unreachable!("checked in pack"),
                }
            }
            at += len;
        }
        values
    }
}

/// A window's results summed over the nodes: loss, units, task figures, and whether any node
/// asked to stop.
pub struct SummedWindow {
    /// The window's loss over the global batch.
    pub loss: f64,
    /// Units of the global batch.
    pub units: f64,
    /// The task's figures, weighted by the nodes' units.
    pub metrics: Vec<(&'static str, f64)>,
    /// Some node asked to stop (time limit or signal).
    pub stop: bool,
}

impl<B: Backend> Nodes<B> {
    /// Sums one window's results over the nodes, as [`super::train`]'s shards are combined in
    /// one process: a mean loss weights each node's loss, gradients and figures by its share
    /// of the units. `grads` become the global batch's.
    #[allow(clippy::too_many_arguments)]
    pub fn sum_window<AB, M>(
        &self,
        model: &M,
        grads: &mut GradientsParams,
        loss: f64,
        units: f64,
        metrics: Vec<(&'static str, f64)>,
        reduction: LossReduction,
        stop: bool,
    ) -> anyhow::Result<SummedWindow>
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let head = self.sum_values("the window's units", &[units as f32, f32::from(stop)])?;
        let (total, stop) = (f64::from(head[0]), head[1] > 0.0);
        let weight = if total > 0.0 {
            units / total
        } else {
            1.0 / self.options.nodes as f64
        };
        if reduction == LossReduction::Mean {
            scale_grads::<AB, M>(model, grads, weight);
        }
        let loss = match reduction {
            LossReduction::Sum => loss,
            LossReduction::Mean => loss * weight,
        };
        let mut values = vec![loss as f32];
        values.extend(metrics.iter().map(|&(_, v)| (v * weight) as f32));
        let n = values.len();
        let (layout, flat) = FlatGrads::<B>::pack::<AB, M>(model, grads, values, &self.device);
        let sum = self.sum("the window's gradients", flat)?;
        let values = layout.unpack(sum, n, grads);
        Ok(SummedWindow {
            loss: f64::from(values[0]),
            units: total,
            metrics: metrics
                .iter()
                .zip(&values[1..])
                .map(|(&(name, _), &v)| (name, f64::from(v)))
                .collect(),
            stop,
        })
    }

    /// Every node's part of a state, joined along the batch on every node: `parts` are this
    /// node's tensors (batch first), `sizes` every node's batch.
    pub fn gather(
        &self,
        parts: Vec<Tensor<B, 4>>,
        sizes: &[usize],
    ) -> anyhow::Result<Vec<Tensor<B, 4>>> {
        let rank = self.options.rank;
        let before: usize = sizes[..rank].iter().sum();
        let total: usize = sizes.iter().sum();
        let mut shapes = Vec::with_capacity(parts.len());
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            let [b, x, y, z] = part.dims();
            let mut pieces = Vec::with_capacity(3);
            if before > 0 {
                pieces.push(Tensor::zeros([before, x, y, z], &self.device));
            }
            pieces.push(part);
            if total > before + b {
                pieces.push(Tensor::zeros([total - before - b, x, y, z], &self.device));
            }
            let full = Tensor::cat(pieces, 0);
            shapes.push([total, x, y, z]);
            flat.push(full.flatten::<1>(0, 3));
        }
        if flat.is_empty() {
            return Ok(Vec::new());
        }
        let sum = self.sum("the carried state", Tensor::cat(flat, 0))?;
        let mut at = 0;
        Ok(shapes
            .into_iter()
            .map(|shape| {
                let len = shape.iter().product::<usize>();
                let t = sum.clone().narrow(0, at, len).reshape(shape);
                at += len;
                t
            })
            .collect())
    }
}
