//! Attention, LayerNorm and the linear layer as single differentiable operations.
//!
//! Under burn 0.22's autodiff all three are composed from primitives: attention materialises
//! the `[b, h, n, n]` scores and saves them for the backward pass, LayerNorm runs and saves about
//! eight separate kernels, a linear layer adds its bias in a kernel of its own, and splitting
//! the qkv projection into q, k and v costs a zero-filled buffer and two accumulations per block
//! in the backward pass. On the LibTorch backend this module runs each as PyTorch does in the
//! forward pass (`scaled_dot_product_attention`: flash or memory-efficient kernels on CUDA, on
//! views of the qkv projection; `layer_norm`: one kernel; `addmm`: the bias added by the matrix
//! product) and hands the backward pass to PyTorch's own derivative, so a training step saves and
//! launches what a PyTorch eager step does (`maestro bench step --ops` counts both).
//!
//! The operations are a burn backend extension (`#[backend_extension]`): every other backend
//! (flex, CubeCL) runs burn's own differentiable composition, exactly as before. GELU is the
//! exception: under autodiff on CubeCL its backward is maestro's (see `mod cube`), since burn's
//! there differentiates the tanh approximation of the erf form its forward computes.
//!
//! [`set_enabled`] turns the fused path off, so one binary can measure what it buys
//! (`maestro bench step --unfused`). It leaves GELU's exact backward on: that one is a fix, not
//! a speed-up.

// burn-tch is deprecated in burn 0.22 but is the path to PyTorch's kernels (see device.rs).
#![cfg_attr(feature = "tch", allow(deprecated))]

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, FloatDType, Shape, Slice, Tensor};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Use the fused operations (the default) or burn's composition of primitives.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The operations a backend may run as one kernel with its own derivative.
#[backend_extension(
    Flex,
    Cube: cfg(any(feature = "cuda", feature = "wgpu")),
    LibTorch: cfg(feature = "tch"),
    Autodiff
)]
pub trait FusedOps: Backend {
    /// Softmax attention, `softmax(q k^T / sqrt(d_head)) v`, shapes `[b, h, n, d_head]`.
    fn fused_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::attention(q, k, v, None, None, AttentionModuleOptions::default())
    }

    /// Softmax attention of `heads` heads on a qkv projection `[b, n, 3 * c]` (timm's layout:
    /// q, k, v, each heads x head dim), its output back as `[b, n, c]`.
    fn fused_qkv_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        compose_qkv_attention::<Self>(qkv, heads, Self::fused_attention)
    }

    /// `x weight + bias`: x `[m, d_in]`, weight `[d_in, d_out]` (burn's layout), bias `[d_out]`.
    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// GELU with the erf (timm's `nn.GELU()`), and the derivative of that same function.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// LayerNorm over the last dimension, with an affine weight and bias of that size.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

impl FusedOps for burn::backend::Flex {}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl FusedOps for burn::backend::Cube {}

#[cfg(feature = "tch")]
impl FusedOps for burn::backend::LibTorch {
    fn fused_qkv_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        burn::backend::libtorch::TchTensor::new(libtorch::qkv_attention(&[qkv.tensor], heads))
    }

    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        burn::backend::libtorch::TchTensor::new(libtorch::linear(&[x.tensor, weight.tensor, bias.tensor]))
    }
}

mod autodiff {
    use super::FusedOps;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;

    impl<C: CheckpointStrategy> FusedOps for Autodiff<burn::backend::Flex, C> {}

    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    impl<C: CheckpointStrategy> FusedOps for Autodiff<burn::backend::Cube, C> {
        fn fused_gelu(x: burn::backend::tensor::FloatTensor<Self>) -> burn::backend::tensor::FloatTensor<Self> {
            super::cube::exact_gelu::<C>(x)
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod cube {
    //! GELU under autodiff on CubeCL (burn's `cuda` and `wgpu`). burn 0.22's default
    //! `gelu_backward`, which CubeCL keeps, is the derivative of GELU's tanh approximation, while
    //! its forward is the exact erf form: the gradient is not that of the function computed (off
    //! by up to 9e-4 near x = 2). PyTorch's `nn.GELU()` differentiates the erf form. This backward
    //! does too, from the input alone, as burn's does.

    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::{ActivationOps, FloatTensorOps};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Cube, TensorMetadata};
    use burn::tensor::FloatDType;

    #[derive(Debug)]
    struct ExactGeluBackward;

    impl Backward<Cube, 1> for ExactGeluBackward {
        type State = FloatTensor<Cube>;

        /// In f32 whatever the dtype, rounded once at the end, as PyTorch's `gelu_backward`
        /// computes a bf16 one.
        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let grad = grads.consume::<Cube>(&ops.node);
            if let Some(node) = &ops.parents[0] {
                let dtype = FloatDType::from(grad.dtype());
                let x = Cube::float_cast(ops.state, FloatDType::F32);
                let d = Cube::float_mul(Cube::float_cast(grad, FloatDType::F32), gelu_derivative(x));
                grads.register::<Cube>(node.id, Cube::float_cast(d, dtype));
            }
        }
    }

    /// d/dx x Phi(x) = Phi(x) + x phi(x): 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi).
    fn gelu_derivative(x: FloatTensor<Cube>) -> FloatTensor<Cube> {
        let cdf = Cube::float_erf(Cube::float_div_scalar(x.clone(), core::f64::consts::SQRT_2.into()));
        let cdf = Cube::float_mul_scalar(Cube::float_add_scalar(cdf, 1.0.into()), 0.5.into());
        let square = Cube::float_mul(x.clone(), x.clone());
        let pdf = Cube::float_exp(Cube::float_mul_scalar(square, (-0.5).into()));
        let pdf = Cube::float_mul_scalar(pdf, (1.0 / (2.0 * core::f64::consts::PI).sqrt()).into());
        Cube::float_add(cdf, Cube::float_mul(x, pdf))
    }

    pub(super) fn exact_gelu<C: CheckpointStrategy>(x: FloatTensor<Autodiff<Cube, C>>) -> FloatTensor<Autodiff<Cube, C>> {
        match ExactGeluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                prep.finish(input, Cube::gelu(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(Cube::gelu(x.into_primitive())),
        }
    }
}

/// GELU (erf form) whose derivative on every backend is that of the erf form, as PyTorch's.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()))
}

#[cfg(feature = "tch")]
mod libtorch {
    //! The LibTorch implementation under autodiff. Attention runs PyTorch's operations on
    //! detached leaves that require grad, so PyTorch records its own backward nodes and saves
    //! what they need (for flash attention: q, k, v, the output and the log-sum-exp); burn's
    //! backward step then asks PyTorch's autograd engine for the vector-Jacobian product with
    //! the incoming gradient. The linear layer and LayerNorm call their PyTorch backward
    //! formulas directly (two products and a sum; `native_layer_norm_backward` from the saved
    //! mean and reciprocal std), with no engine.

    use super::FusedOps;
    use burn::backend::LibTorch;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use std::sync::Arc;

    use crate::torch_ops::GradEdge;

    /// PyTorch's graph of one recorded operation (attention): where the output's gradient enters
    /// it, and the leaves it was computed from. `keep` holds burn's handles on the inputs and on
    /// the output, which flash attention saves, so burn never overwrites memory PyTorch saved
    /// while the graph lives (burn-tch reuses a tensor only it holds).
    pub(super) struct TorchGraph {
        edge: Arc<GradEdge>,
        leaves: Vec<tch::Tensor>,
        keep: Vec<TchTensor>,
    }

    impl Clone for TorchGraph {
        fn clone(&self) -> Self {
            TorchGraph {
                edge: self.edge.clone(),
                leaves: self.leaves.iter().map(tch::Tensor::shallow_clone).collect(),
                keep: self.keep.clone(),
            }
        }
    }

    impl std::fmt::Debug for TorchGraph {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TorchGraph").field("leaves", &self.leaves.len()).field("kept", &self.keep.len()).finish()
        }
    }

    impl TorchGraph {
        /// Runs `op` on detached views of `inputs` (the same memory) that require grad; returns
        /// the graph and the output as a burn tensor. PyTorch's grad mode is per thread, so
        /// `with_grad` makes sure it is on for the operation. The one operation recorded this
        /// way, attention, saves its output for its backward, so burn's handle on it is kept too.
        fn record(inputs: &[&TchTensor], op: impl FnOnce(&[tch::Tensor]) -> tch::Tensor) -> (Self, TchTensor) {
            let leaves: Vec<tch::Tensor> = inputs.iter().map(|t| t.tensor.detach().set_requires_grad(true)).collect();
            let out = tch::with_grad(|| op(&leaves));
            let edge = Arc::new(GradEdge::of(&out));
            let burn_out = TchTensor::new(out.detach());
            let mut keep: Vec<TchTensor> = inputs.iter().map(|t| (*t).clone()).collect();
            keep.push(burn_out.clone());
            (TorchGraph { edge, leaves, keep }, burn_out)
        }

        /// The gradients of the leaves for `grad` on the output. Each becomes a burn tensor of
        /// its own, which burn may accumulate into in place, so two that share memory (as an
        /// addition's backward could return) are made distinct first.
        fn vjp(self, grad: TchTensor) -> Vec<TchTensor> {
            let leaves: Vec<&tch::Tensor> = self.leaves.iter().collect();
            let mut out: Vec<tch::Tensor> = Vec::with_capacity(leaves.len());
            for g in self.edge.vjp(&grad.tensor, &leaves) {
                let shared = out.iter().any(|o| o.data_ptr() == g.data_ptr());
                out.push(if shared { g.copy() } else { g });
            }
            out.into_iter().map(TchTensor::new).collect()
        }
    }

    /// burn's backward step for an operation PyTorch recorded.
    #[derive(Debug)]
    struct TorchBackward;

    impl<const N: usize> Backward<LibTorch, N> for TorchBackward {
        type State = TorchGraph;

        fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let grad = grads.consume::<LibTorch>(&ops.node);
            for (parent, g) in ops.parents.iter().zip(ops.state.vjp(grad)) {
                if let Some(node) = parent {
                    grads.register::<LibTorch>(node.id, g);
                }
            }
        }
    }

    /// The backward step of `addmm` with a broadcast bias, as PyTorch's `AddmmBackward0` computes
    /// it (two products and a column sum), run directly: a linear layer's derivative needs no
    /// autograd engine, whose every call is a round trip to its device thread. The state is the
    /// input and weight the products need; burn's handles on them also keep burn-tch from
    /// overwriting them in place.
    #[derive(Debug)]
    struct LinearBackward;

    impl Backward<LibTorch, 3> for LinearBackward {
        type State = (TchTensor, TchTensor);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let g = grads.consume::<LibTorch>(&ops.node).tensor;
            let (x, w) = (&ops.state.0.tensor, &ops.state.1.tensor);
            let [dx, dw, db] = &ops.parents;
            if let Some(node) = dx {
                grads.register::<LibTorch>(node.id, TchTensor::new(g.mm(&w.tr())));
            }
            if let Some(node) = dw {
                grads.register::<LibTorch>(node.id, TchTensor::new(x.tr().mm(&g)));
            }
            if let Some(node) = db {
                grads.register::<LibTorch>(node.id, TchTensor::new(g.sum_dim_intlist([0i64].as_slice(), false, None::<tch::Kind>)));
            }
        }
    }

    fn sdpa(x: &[tch::Tensor]) -> tch::Tensor {
        tch::Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], None::<tch::Tensor>, 0.0, false, None, false)
    }

    /// timm's Attention between its two projections: `[b, n, 3c]` split into heads (views),
    /// attention, heads merged back into `[b, n, c]`.
    pub(super) fn qkv_attention(x: &[tch::Tensor], heads: usize) -> tch::Tensor {
        let [b, n, c3] = x[0].size()[..] else { panic!("qkv attention of a {:?} tensor", x[0].size()) };
        let h = heads as i64;
        let qkv = x[0].reshape([b, n, 3, h, c3 / 3 / h]).permute([2, 0, 3, 1, 4]);
        // unbind, not three selects: its backward stacks the three gradients in one copy.
        let o = sdpa(&qkv.unbind(0));
        o.transpose(1, 2).reshape([b, n, c3 / 3])
    }

    /// `bias + x weight` with the bias added by the matrix product (`F.linear` on 2-d input).
    pub(super) fn linear(x: &[tch::Tensor]) -> tch::Tensor {
        x[2].addmm(&x[0], &x[1])
    }

    /// The backward step of `native_layer_norm`, PyTorch's `NativeLayerNormBackward0` run
    /// directly rather than through the autograd engine (a round trip to its device thread per
    /// call, 25 of them in a ViT-B step). The state is what that node saves: the input, gamma,
    /// beta, and the mean and reciprocal std of each row; burn's handles on the input, gamma
    /// and beta also keep burn-tch from overwriting them in place.
    #[derive(Debug)]
    struct LayerNormBackward;

    impl Backward<LibTorch, 3> for LayerNormBackward {
        type State = [TchTensor; 5];

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let g = grads.consume::<LibTorch>(&ops.node).tensor;
            let [x, gamma, beta, mean, rstd] = &ops.state;
            let wanted = ops.parents.each_ref().map(Option::is_some);
            let d = crate::torch_ops::layer_norm_backward(&g, &x.tensor, &mean.tensor, &rstd.tensor, &gamma.tensor, &beta.tensor, wanted);
            for (parent, d) in ops.parents.iter().zip(d) {
                if let (Some(node), Some(d)) = (parent, d) {
                    grads.register::<LibTorch>(node.id, TchTensor::new(d));
                }
            }
        }
    }

    impl<C: CheckpointStrategy> FusedOps for Autodiff<LibTorch, C> {
        fn fused_qkv_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
            match TorchBackward.prepare::<C>([qkv.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    // The output may be a view of the one flash attention saved.
                    let (graph, out) = TorchGraph::record(&[qkv.primitive()], |t| qkv_attention(t, heads));
                    prep.finish(graph, out)
                }
                OpsKind::UnTracked(prep) => prep.finish(LibTorch::fused_qkv_attention(qkv.into_primitive(), heads)),
            }
        }

        fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
            match LinearBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let state = (x.primitive().clone(), weight.primitive().clone());
                    prep.finish(state, LibTorch::fused_linear(x.into_primitive(), weight.into_primitive(), bias.into_primitive()))
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(LibTorch::fused_linear(x.into_primitive(), weight.into_primitive(), bias.into_primitive()))
                }
            }
        }

        fn fused_layer_norm(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> FloatTensor<Self> {
            match LayerNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (xt, g, b) = (x.primitive(), gamma.primitive(), beta.primitive());
                    let d = *xt.tensor.size().last().expect("layer_norm of a scalar");
                    let (out, mean, rstd) = xt.tensor.native_layer_norm([d], Some(&g.tensor), Some(&b.tensor), epsilon);
                    let state = [xt.clone(), g.clone(), b.clone(), TchTensor::new(mean), TchTensor::new(rstd)];
                    prep.finish(state, TchTensor::new(out))
                }
                OpsKind::UnTracked(prep) => prep.finish(LibTorch::fused_layer_norm(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                )),
            }
        }
    }
}

/// timm's attention between the qkv and output projections: `[b, n, 3c]` -> `[b, n, c]`.
pub fn qkv_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    if !enabled() {
        return composed_qkv_attention(qkv, heads);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_qkv_attention(qkv.into_dispatch(), heads))
}

/// `x weight + bias` for a 2-d input, as one operation (the bias added by the matrix product)
/// where the backend has it.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    match bias {
        Some(bias) if enabled() => {
            Tensor::from_dispatch(<Dispatch as FusedOps>::fused_linear(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch()))
        }
        bias => burn::tensor::module::linear(x, weight, bias),
    }
}

/// burn's `LayerNorm` forward with the given epsilon (the module keeps its own private), as one
/// operation when the input has the parameters' dtype (the model's LayerNorms see the f32
/// residual stream, as under PyTorch's autocast).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    let gamma = norm.gamma.val();
    match &norm.beta {
        Some(beta) if enabled() && x.dtype() == gamma.dtype() => fused_layer_norm(x, gamma, beta.val(), epsilon),
        _ => norm.forward(x),
    }
}

fn composed_qkv_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    let attention = |q, k, v| <Dispatch as ModuleOps<Dispatch>>::attention(q, k, v, None, None, AttentionModuleOptions::default());
    Tensor::from_dispatch(compose_qkv_attention::<Dispatch>(qkv.into_dispatch(), heads, attention))
}

/// timm's attention between the projections composed from `B`'s primitives around `attention`
/// (`[b, h, n, d_head]` each): `[b, n, 3c]` split into q, k, v of `heads` heads, the output's
/// heads merged back into `[b, n, c]`.
fn compose_qkv_attention<B: Backend>(
    qkv: FloatTensor<B>,
    heads: usize,
    attention: impl Fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<B> {
    let [b, n, c3] = qkv.shape().dims::<3>();
    let dh = c3 / 3 / heads;
    let qkv = B::float_permute(B::float_reshape(qkv, Shape::new([b, n, 3, heads, dh])), &[2, 0, 3, 1, 4]);
    let part = |i: isize| {
        let slices = [Slice::new(i, Some(i + 1), 1), Slice::full(), Slice::full(), Slice::full(), Slice::full()];
        B::float_reshape(B::float_slice(qkv.clone(), &slices), Shape::new([b, heads, n, dh]))
    };
    let o = attention(part(0), part(1), part(2));
    B::float_reshape(B::float_swap_dims(o, 1, 2), Shape::new([b, n, c3 / 3]))
}

fn fused_layer_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// How far the fused operations are from burn's composition on one device: the largest
/// difference of each result, relative to the largest magnitude of burn's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agreement {
    pub precision: &'static str,
    /// `[batch, heads, tokens, head dim]` of the attention (LayerNorm over heads x head dim).
    pub shape: [usize; 4],
    pub errors: Vec<(&'static str, f32)>,
}

impl Agreement {
    pub fn worst(&self) -> f32 {
        self.errors.iter().map(|e| e.1).fold(0.0, f32::max)
    }
}

/// Runs attention on a qkv projection (as the model does), a LayerNorm and a linear layer, both
/// ways on `device` with autodiff, and compares outputs and the gradients of a random weighting
/// of them. With `bf16`, attention and the linear layer run in bf16 and LayerNorm in f32, as in
/// the model's blocks.
pub fn compare(device: &Device, [b, h, n, dh]: [usize; 4], bf16: bool) -> Agreement {
    let device = device.clone().autodiff();
    let c = h * dh;
    let qkv = Tensor::<3>::random([b, n, 3 * c], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let x = Tensor::<3>::random([b, n, c], Distribution::Normal(0.5, 2.0), &device).require_grad();
    let weights = Tensor::<3>::random([b, n, c], Distribution::Normal(0.0, 1.0), &device);
    let mut norm = LayerNormConfig::new(c).with_epsilon(1e-6).init(&device);
    norm.gamma = Param::from_tensor(Tensor::random([c], Distribution::Normal(1.0, 0.3), &device));
    norm.beta = Some(Param::from_tensor(Tensor::random([c], Distribution::Normal(0.0, 0.3), &device)));
    let w = Tensor::<2>::random([c, c], Distribution::Normal(0.0, 0.1), &device).require_grad();
    let bias = Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), &device).require_grad();

    let run = |fused: bool| {
        let low = |t: Tensor<2>| if bf16 { t.cast(FloatDType::BF16) } else { t };
        let q = if bf16 { qkv.clone().cast(FloatDType::BF16) } else { qkv.clone() };
        let xl = low(x.clone().reshape([b * n, c]));
        let (wl, bl) = (low(w.clone()), bias.clone().cast(if bf16 { FloatDType::BF16 } else { FloatDType::F32 }));
        let (o, y, l) = if fused {
            let beta = norm.beta.as_ref().expect("an affine LayerNorm").val();
            let o = Tensor::from_dispatch(<Dispatch as FusedOps>::fused_qkv_attention(q.into_dispatch(), h));
            let l = Tensor::from_dispatch(<Dispatch as FusedOps>::fused_linear(xl.into_dispatch(), wl.into_dispatch(), bl.into_dispatch()));
            (o, fused_layer_norm(x.clone(), norm.gamma.val(), beta, 1e-6), l)
        } else {
            (composed_qkv_attention(q, h), norm.forward(x.clone()), burn::tensor::module::linear(xl, wl, Some(bl)))
        };
        let o = o.cast(FloatDType::F32);
        let l = l.cast(FloatDType::F32).reshape([b, n, c]);
        let loss = (o.clone() * weights.clone()).sum() + (y.clone() * weights.clone()).sum() + (l.clone() * weights.clone()).sum();
        let grads = loss.backward();
        let grad = |t: Option<Tensor<1>>| t.expect("a gradient");
        [
            o.inner().flatten::<1>(0, 2),
            y.inner().flatten::<1>(0, 2),
            l.inner().flatten::<1>(0, 2),
            grad(qkv.grad(&grads).map(|g| g.flatten(0, 2))),
            grad(x.grad(&grads).map(|g| g.flatten(0, 2))),
            grad(norm.gamma.grad(&grads)),
            grad(norm.beta.as_ref().and_then(|p| p.grad(&grads))),
            grad(w.grad(&grads).map(|g| g.flatten(0, 1))),
            grad(bias.grad(&grads)),
        ]
    };
    let (fused, composed) = (run(true), run(false));
    let names = ["attention", "layer_norm", "linear", "d qkv", "d x", "d gamma", "d beta", "d weight", "d bias"];
    let errors = names
        .into_iter()
        .zip(fused.into_iter().zip(composed))
        .map(|(name, (f, c))| {
            let scale = c.clone().abs().max().into_scalar::<f32>().max(1e-12);
            (name, (f.cast(FloatDType::F32) - c.cast(FloatDType::F32)).abs().max().into_scalar::<f32>() / scale)
        })
        .collect();
    Agreement { precision: if bf16 { "bf16" } else { "f32" }, shape: [b, h, n, dh], errors }
}
