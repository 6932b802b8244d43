//! AdamW (decoupled weight decay, bias-corrected moments, amsgrad off), as burn's `AdamW` and
//! PyTorch's `torch.optim.AdamW` define it:
//!
//! ```text
//! m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
//! p = p (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! ```
//!
//! burn's optimizer updates one parameter tensor at a time in about fifteen tensor operations,
//! each a kernel and a trip through burn's dispatch. On the LibTorch backend this one calls
//! PyTorch's fused AdamW (`torch.optim.AdamW(fused=True)`'s kernel) once per tensor instead,
//! in place where burn would update in place. Every other backend,
//! and LibTorch with the fused operations turned off (`maestro bench step --unfused`), runs
//! burn's own `AdamW`. The state is burn's `AdamWState`, so checkpoints of either load in both.

use burn::optim::{AdamWConfig, AdamWState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

#[derive(Clone)]
#[cfg_attr(not(feature = "tch"), allow(dead_code))] // the settings feed the LibTorch path only
pub struct AdamW {
    burn: burn::optim::AdamW,
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(betas: [f64; 2], epsilon: f64, weight_decay: f64) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(betas[0] as f32)
            .with_beta_2(betas[1] as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay(weight_decay as f32)
            .build();
        AdamW { burn, beta_1: betas[0], beta_2: betas[1], epsilon, weight_decay }
    }

    /// The optimizer for a whole module, one group's settings.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "tch")]
        if crate::model::fused::enabled() && crate::device::is_libtorch(&tensor.device()) {
            return torch::step(self, lr, tensor, grad, state);
        }
        self.burn.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::AdamW::to_device(state, device)
    }
}

/// How far [`AdamW`] is from burn's `AdamW` on one device after five steps of a linear layer
/// (a decay and a no-decay group, a first step at lr 0 as the warm-up starts, then changing
/// rates): the largest difference of the weight and of the bias, each relative to the largest
/// magnitude of burn's result, and how far burn's steps moved the weight (relative likewise).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agreement {
    pub weight: f32,
    pub bias: f32,
    pub moved: f32,
}

pub fn compare(device: &Device) -> Agreement {
    use burn::module::ParamGroup;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    let device = device.clone().autodiff();
    device.seed(0);
    let model = LinearConfig::new(64, 48).init(&device);
    let x = Tensor::<2>::random([16, 64], Distribution::Normal(0.0, 1.0), &device);
    let run = |mut optim: ModuleOptimizer| {
        let mut m: Linear = model.clone();
        for lr in [0.0, 1e-2, 5e-3, 2e-2, 1e-2] {
            let loss = (m.forward(x.clone()) - 0.5).powi_scalar(2).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(lr, m, grads);
        }
        let bias = m.bias.as_ref().expect("a bias").val();
        (m.weight.val().inner(), bias.inner())
    };
    let bias = || ParamGroup::from_paths(vec!["bias".to_string()]);
    let burn = AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.95).with_epsilon(1e-8);
    let ours = run(AdamW::new([0.9, 0.95], 1e-8, 0.05).init().with_group(bias(), AdamW::new([0.9, 0.95], 1e-8, 0.0), None));
    let theirs = run(burn.clone().with_weight_decay(0.05).init().with_group(bias(), burn.with_weight_decay(0.0).build(), None));
    let rel = |got: Tensor<2>, want: Tensor<2>| {
        let scale = want.clone().abs().max().into_scalar::<f32>().max(1e-12);
        (got - want).abs().max().into_scalar::<f32>() / scale
    };
    let before = model.weight.val().inner();
    Agreement {
        weight: rel(ours.0, theirs.0.clone()),
        bias: rel(ours.1.unsqueeze(), theirs.1.unsqueeze()),
        moved: rel(theirs.0, before),
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated in burn 0.22 but is the path to PyTorch's kernels
mod torch {
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, Dispatch, LibTorch, backend_extension};
    use burn::optim::{AdamWState, AdaptiveMomentumState};
    use burn::tensor::Tensor;

    /// One AdamW update of a tensor and its moments, as PyTorch operations.
    #[backend_extension(LibTorch)]
    pub trait TorchAdamW: Backend {
        #[allow(clippy::too_many_arguments)]
        fn adamw_update(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            lr: f64,
            beta_1: f64,
            beta_2: f64,
            epsilon: f64,
            weight_decay: f64,
            time: i32,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    /// `t` itself when burn would update it in place (no other handle on its storage, no
    /// broadcast strides) and it is laid out densely, else a contiguous copy: the same rule
    /// burn-tch's own operations follow, plus what PyTorch's fused kernel needs.
    fn owned(t: TchTensor) -> TchTensor {
        if t.can_mut() && t.tensor.is_contiguous() { t } else { TchTensor::new(t.tensor.contiguous().copy()) }
    }

    thread_local! {
        /// The step count as PyTorch's fused AdamW reads it (a float scalar on the parameters'
        /// device), made once per step and device rather than once per parameter.
        static STEP: std::cell::RefCell<Option<(i32, tch::Device, tch::Tensor)>> = const { std::cell::RefCell::new(None) };
    }

    fn step_tensor(time: i32, device: tch::Device) -> tch::Tensor {
        STEP.with_borrow_mut(|cached| match cached {
            Some((t, d, s)) if *t == time && *d == device => s.shallow_clone(),
            _ => {
                let s = tch::Tensor::full([] as [i64; 0], time as f64, (tch::Kind::Float, device));
                *cached = Some((time, device, s.shallow_clone()));
                s
            }
        })
    }

    impl TorchAdamW for LibTorch {
        fn adamw_update(
            param: TchTensor,
            grad: TchTensor,
            moment_1: TchTensor,
            moment_2: TchTensor,
            lr: f64,
            beta_1: f64,
            beta_2: f64,
            epsilon: f64,
            weight_decay: f64,
            time: i32,
        ) -> (TchTensor, TchTensor, TchTensor) {
            let (p, m, v) = (owned(param), owned(moment_1), owned(moment_2));
            let g_dense;
            let g = if grad.tensor.is_contiguous() && grad.tensor.kind() == p.tensor.kind() {
                &grad.tensor
            } else {
                g_dense = grad.tensor.to_kind(p.tensor.kind()).contiguous();
                &g_dense
            };
            let step = step_tensor(time, p.tensor.device());
            let settings = crate::torch_ops::AdamWStep { lr, beta_1, beta_2, epsilon, weight_decay };
            crate::torch_ops::fused_adamw(&p.tensor, g, &m.tensor, &v.tensor, &step, settings);
            (p, m, v)
        }
    }

    pub(super) fn step<const D: usize>(
        o: &super::AdamW,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        let (time, m, v) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2),
            // The parameter's dtype and layout: PyTorch's fused kernel needs all four alike.
            None => (1, tensor.zeros_like(), tensor.zeros_like()),
        };
        let (p, m, v) = <Dispatch as TorchAdamW>::adamw_update(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            lr,
            o.beta_1,
            o.beta_2,
            o.epsilon,
            o.weight_decay,
            time as i32,
        );
        let momentum = AdaptiveMomentumState::new(time, Tensor::from_dispatch(m), Tensor::from_dispatch(v));
        (Tensor::from_dispatch(p), Some(AdamWState::new(momentum)))
    }
}
