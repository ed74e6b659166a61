//! Parameter accounting that matches the paper's tables.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, backend::Backend};

/// Trainable parameters of `module`: burn's [`Module::num_params`] minus batch-norm running
/// statistics, which the paper and the reference code do not count.
pub fn num_trainable_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut counter = Counter {
        path: Vec::new(),
        total: 0,
    };
    module.visit(&mut counter);
    counter.total
}

struct Counter {
    path: Vec<String>,
    total: usize,
}

impl<B: Backend> ModuleVisitor<B> for Counter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let running = self
            .path
            .last()
            .is_some_and(|name| name.starts_with("running_"));
        if !running {
            self.total += param.shape().num_elements();
        }
    }
}
