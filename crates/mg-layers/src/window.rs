//! A module's parameters as tracked copies for one training window, so that a step-by-step
//! forward pass costs the same at every step.
//!
//! burn's autodiff (0.21) keeps one graph per connected set of tensors and merges graphs when
//! an operation joins them. A parameter is a leaf with a graph of its own, and after its
//! graph has been merged into another that was then merged again, the leaf still points at
//! the emptied graph: every later use of the leaf merges once more, and half of those merges
//! move the whole window's graph (the side kept is drawn by hash order). A forward pass that
//! reads every parameter at every time step (the conv-LSTM step path) thus spends time that
//! grows with the square of the window's length. A tensor computed from the leaf does not go
//! stale, so reading such copies instead keeps every merge to the first use; tying all the
//! copies into one graph before the window starts leaves no merge at all.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::MgBackend;
use crate::backend::tie;

/// `module` with every initialised float parameter replaced by a tracked copy of it, for the
/// forward pass of one training window; the gradients reach the original parameters, so take
/// them with the original module (`GradientsParams::from_grads(grads, &module)`). Parameters
/// not yet initialised (burn draws them on first use) are left as they are, so that the
/// initial weights do not depend on this call; the view would then draw its own copies apart
/// from the module, so take it only once a forward pass of the module itself has drawn them
/// (the first window runs on the module).
///
/// The copies are [`MgBackend::mg_tie`]s of the parameters to one anchor (a tracked zero of
/// its own): they share the parameters' values (nothing is copied) and start one graph
/// together. A copy made from its leaf alone would start a graph of its own, merged
/// into the window's at its first use, when the window's graph may already be large (half of
/// such merges move the larger graph, under a lock that every thread's autodiff takes); tied
/// here, the window's operations add to one graph and merge none.
pub fn window_view<B: AutodiffBackend + MgBackend, M: Module<B>>(module: M) -> M {
    module.map(&mut TrackedCopies { anchor: None })
}

/// The mapper of [`window_view`]: `anchor` is the node every copy is tied to.
struct TrackedCopies<B: AutodiffBackend> {
    anchor: Option<Tensor<B, 1>>,
}

impl<B: AutodiffBackend + MgBackend> ModuleMapper<B> for TrackedCopies<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !param.is_initialized() {
            return param;
        }
        param.map(|tensor| {
            if !tensor.is_require_grad() || tensor.shape().num_elements() == 0 {
                return tensor;
            }
            let device = tensor.device();
            let anchor = self
                .anchor
                .get_or_insert_with(|| {
                    // A node (not a leaf: leaves join no graph) on a leaf of its own, so that
                    // its zero gradient reaches no parameter.
                    Tensor::zeros([1], &device).require_grad().mul_scalar(1.0)
                })
                .clone();
            tie(tensor, anchor)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MgConvLstmConfig, MgLstmStackConfig, StackState, TestBackend, levels};
    use burn::backend::Autodiff;
    use burn::module::ModuleVisitor;
    use burn::tensor::{Distribution, Tolerance};

    type AB = Autodiff<TestBackend>;

    /// Two layers on 2×2 and 4×4 grids reading one 2×2 input level of 2 channels.
    fn two_layers() -> MgLstmStackConfig {
        MgLstmStackConfig::new(vec![
            MgConvLstmConfig::new(2, 3, levels(0, 1), levels(0, 2)).with_base_size(2),
            MgConvLstmConfig::new(3, 3, levels(0, 2), levels(0, 2)).with_base_size(2),
        ])
    }

    /// Flattened gradients of every float parameter of `module`, in visiting order.
    fn gradients<M: Module<AB>>(
        module: &M,
        grads: &<AB as AutodiffBackend>::Gradients,
    ) -> Vec<f32> {
        struct Collect<'a>(&'a <AB as AutodiffBackend>::Gradients, Vec<f32>);
        impl ModuleVisitor<AB> for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                let g = param
                    .val()
                    .grad(self.0)
                    .expect("every parameter gets a gradient");
                self.1.extend(g.into_data().to_vec::<f32>().unwrap());
            }
        }
        let mut collect = Collect(grads, Vec::new());
        module.visit(&mut collect);
        collect.1
    }

    /// Three steps of a two-layer stack on the step path: the same outputs and the same
    /// parameter gradients (taken with the original module) whether the forward pass reads
    /// the parameters or their window view, and the view's parameters are not leaves.
    #[test]
    fn window_view_gives_the_same_values_and_gradients() {
        let device = Default::default();
        let stack = two_layers().init::<AB>(&device);
        let (steps, batch) = (3, 2);
        let x = Tensor::<AB, 4>::random([steps * batch, 2, 2, 2], Distribution::Default, &device);
        let run = |model: &crate::MgLstmStack<AB>| {
            let mut state: Option<StackState<AB>> = None;
            let mut loss = Tensor::<AB, 1>::zeros([1], &device);
            for t in 0..steps {
                let out = model.forward_step(&[x.clone().narrow(0, t * batch, batch)], state);
                for level in out.outputs.last().expect("a layer") {
                    loss = loss + level.clone().powi_scalar(2).sum();
                }
                state = Some(out.state);
            }
            loss
        };
        // Initialise the lazy parameters before the view is taken.
        let plain = run(&stack);
        let view = window_view(stack.clone());
        let viewed = run(&view);
        plain
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&viewed.clone().into_data(), Tolerance::default());
        let (g_plain, g_view) = (plain.backward(), viewed.backward());
        let (a, b) = (gradients(&stack, &g_plain), gradients(&stack, &g_view));
        assert!(!a.is_empty() && a.len() == b.len());
        for (k, (p, v)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - v).abs() <= 1e-5 * (1.0 + p.abs()),
                "gradient {k}: {p} against {v}"
            );
        }
        // The view's parameters are computed tensors: they have no gradient of their own.
        let g = view.layers[0].cells[0].weight.val().grad(&g_view);
        assert!(g.is_none(), "the view's weight is a leaf");
    }

    /// A loss that reads one parameter of the view gives that parameter its gradient and
    /// none to the others, as the module itself does: the anchor's zero gradient reaches no
    /// parameter.
    #[test]
    fn a_view_read_in_part_gives_gradients_to_what_it_reads() {
        let device = Default::default();
        let stack = two_layers().init::<AB>(&device);
        let x = Tensor::<AB, 4>::random([2, 2, 2, 2], Distribution::Default, &device);
        drop(stack.forward_step(&[x], None));
        let read = |model: &crate::MgLstmStack<AB>| {
            let weight = model.layers[1].cells[0].weight.val();
            (weight.clone() * weight).sum().backward()
        };
        let (g_plain, g_view) = (read(&stack), read(&window_view(stack.clone())));
        struct Count<'a>(
            &'a <AB as AutodiffBackend>::Gradients,
            Vec<Option<Vec<f32>>>,
        );
        impl ModuleVisitor<AB> for Count<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                let g = param.val().grad(self.0);
                self.1
                    .push(g.map(|g| g.into_data().to_vec::<f32>().unwrap()));
            }
        }
        let (mut plain, mut view) = (Count(&g_plain, Vec::new()), Count(&g_view, Vec::new()));
        stack.visit(&mut plain);
        stack.visit(&mut view);
        assert_eq!(plain.1.iter().filter(|g| g.is_some()).count(), 1);
        assert_eq!(plain.1, view.1);
    }

    /// A parameter that burn has not drawn yet stays undrawn.
    #[test]
    fn window_view_leaves_lazy_parameters_alone() {
        let device = Default::default();
        let stack = two_layers().init::<AB>(&device);
        struct Lazy(usize, usize);
        impl ModuleVisitor<AB> for Lazy {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                self.0 += 1;
                self.1 += usize::from(!param.is_initialized());
            }
        }
        let mut before = Lazy(0, 0);
        stack.visit(&mut before);
        let mut after = Lazy(0, 0);
        window_view(stack).visit(&mut after);
        assert!(before.0 > 0);
        assert_eq!((after.0, after.1), (before.0, before.1));
    }
}
