//! Attention and LayerNorm as single differentiable operations.
//!
//! Under burn 0.22's autodiff both are composed from primitives: attention materialises the
//! `[b, h, n, n]` scores and saves them for the backward pass, LayerNorm runs and saves about
//! eight separate kernels. On the LibTorch backend this module runs each as one PyTorch operation
//! in the forward pass (`scaled_dot_product_attention`: flash or memory-efficient kernels on CUDA;
//! `layer_norm`: one kernel) and hands the backward pass to PyTorch's own derivative of that
//! operation, so a training step saves and launches what a PyTorch eager step does.
//!
//! The operations are a burn backend extension (`#[backend_extension]`): every other backend
//! (flex, CubeCL) runs burn's own differentiable composition, exactly as before.
//!
//! [`set_enabled`] turns the fused path off, so one binary can measure what it buys
//! (`maestro bench step --unfused`).

// burn-tch is deprecated in burn 0.22 but is the path to PyTorch's kernels (see device.rs).
#![cfg_attr(feature = "tch", allow(deprecated))]

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, FloatDType, Tensor};

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
impl FusedOps for burn::backend::LibTorch {}

mod autodiff {
    use super::FusedOps;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;

    impl<C: CheckpointStrategy> FusedOps for Autodiff<burn::backend::Flex, C> {}

    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    impl<C: CheckpointStrategy> FusedOps for Autodiff<burn::backend::Cube, C> {}
}

#[cfg(feature = "tch")]
mod libtorch {
    //! The LibTorch implementation under autodiff. The forward pass runs PyTorch's operation on
    //! detached leaves that require grad, so PyTorch records its own backward node and saves
    //! what that node needs (for flash attention: q, k, v, the output and the log-sum-exp).
    //! burn's backward step then asks PyTorch's autograd engine for the vector-Jacobian product
    //! with the incoming gradient.

    use super::FusedOps;
    use burn::backend::LibTorch;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;

    /// One recorded PyTorch operation: its output (carrying PyTorch's backward node) and the
    /// leaves it was computed from. `keep` holds burn's handles on the same storage, so burn
    /// never reuses the memory PyTorch saved in place while the graph lives.
    pub(super) struct TorchGraph {
        output: tch::Tensor,
        leaves: Vec<tch::Tensor>,
        keep: Vec<TchTensor>,
    }

    impl Clone for TorchGraph {
        fn clone(&self) -> Self {
            TorchGraph {
                output: self.output.shallow_clone(),
                leaves: self.leaves.iter().map(tch::Tensor::shallow_clone).collect(),
                keep: self.keep.clone(),
            }
        }
    }

    impl std::fmt::Debug for TorchGraph {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TorchGraph").field("output", &self.output.size()).field("leaves", &self.leaves.len()).finish()
        }
    }

    impl TorchGraph {
        /// Runs `op` on detached views of `inputs` (the same memory) that require grad; returns
        /// the graph and the output as a burn tensor. PyTorch's grad mode is per thread, so
        /// `with_grad` makes sure it is on for the operation.
        fn record(inputs: &[&TchTensor], op: impl FnOnce(&[tch::Tensor]) -> tch::Tensor) -> (Self, TchTensor) {
            let leaves: Vec<tch::Tensor> = inputs.iter().map(|t| t.tensor.detach().set_requires_grad(true)).collect();
            let output = tch::with_grad(|| op(&leaves));
            let burn_out = TchTensor::new(output.detach());
            let mut keep: Vec<TchTensor> = inputs.iter().map(|t| (*t).clone()).collect();
            keep.push(burn_out.clone());
            (TorchGraph { output, leaves, keep }, burn_out)
        }

        /// The gradients of the leaves for `grad` on the output.
        fn vjp(self, grad: TchTensor) -> Vec<TchTensor> {
            let leaves: Vec<&tch::Tensor> = self.leaves.iter().collect();
            crate::torch_ops::vjp(&[&self.output], &[&grad.tensor], &leaves).into_iter().map(TchTensor::new).collect()
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

    fn sdpa(x: &[tch::Tensor]) -> tch::Tensor {
        tch::Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], None::<tch::Tensor>, 0.0, false, None, false)
    }

    fn layer_norm(x: &[tch::Tensor], epsilon: f64) -> tch::Tensor {
        let d = *x[0].size().last().expect("layer_norm of a scalar");
        x[0].layer_norm([d], Some(&x[1]), Some(&x[2]), epsilon, true)
    }

    impl<C: CheckpointStrategy> FusedOps for Autodiff<LibTorch, C> {
        fn fused_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
            match TorchBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (graph, out) = TorchGraph::record(&[q.primitive(), k.primitive(), v.primitive()], sdpa);
                    prep.finish(graph, out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(LibTorch::fused_attention(q.into_primitive(), k.into_primitive(), v.into_primitive()))
                }
            }
        }

        fn fused_layer_norm(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> FloatTensor<Self> {
            match TorchBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (graph, out) = TorchGraph::record(&[x.primitive(), gamma.primitive(), beta.primitive()], |t| {
                        layer_norm(t, epsilon)
                    });
                    prep.finish(graph, out)
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

/// Softmax attention with the default scale: `[b, h, n, d_head]` in, the same out.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if !enabled() {
        return composed_attention(q, k, v);
    }
    fused_attention(q, k, v)
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

fn composed_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default())
}

fn fused_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch()))
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

/// Runs attention on views of one permuted qkv tensor (as the model does) and a LayerNorm, both
/// ways on `device` with autodiff, and compares outputs and the gradients of a random weighting
/// of them. With `bf16`, attention runs in bf16 and LayerNorm in f32, as in the model's blocks.
pub fn compare(device: &Device, [b, h, n, dh]: [usize; 4], bf16: bool) -> Agreement {
    let device = device.clone().autodiff();
    let c = h * dh;
    let qkv = Tensor::<5>::random([b, n, 3, h, dh], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let x = Tensor::<3>::random([b, n, c], Distribution::Normal(0.5, 2.0), &device).require_grad();
    let weights = Tensor::<3>::random([b, n, c], Distribution::Normal(0.0, 1.0), &device);
    let mut norm = LayerNormConfig::new(c).with_epsilon(1e-6).init(&device);
    norm.gamma = Param::from_tensor(Tensor::random([c], Distribution::Normal(1.0, 0.3), &device));
    norm.beta = Some(Param::from_tensor(Tensor::random([c], Distribution::Normal(0.0, 0.3), &device)));

    let run = |fused: bool| {
        let qkv_p = if bf16 { qkv.clone().cast(FloatDType::BF16) } else { qkv.clone() }.permute([2, 0, 3, 1, 4]);
        let [q, k, v]: [Tensor<4>; 3] = core::array::from_fn(|i| qkv_p.clone().slice([i..i + 1]).squeeze_dim(0));
        let (o, y) = if fused {
            let beta = norm.beta.as_ref().expect("an affine LayerNorm").val();
            (fused_attention(q, k, v), fused_layer_norm(x.clone(), norm.gamma.val(), beta, 1e-6))
        } else {
            (composed_attention(q, k, v), norm.forward(x.clone()))
        };
        let o = o.swap_dims(1, 2).reshape([b, n, c]).cast(FloatDType::F32);
        let loss = (o.clone() * weights.clone()).sum() + (y.clone() * weights.clone()).sum();
        let grads = loss.backward();
        let grad = |t: Option<Tensor<1>>| t.expect("a gradient");
        [
            o.inner().flatten::<1>(0, 2),
            y.inner().flatten::<1>(0, 2),
            grad(qkv.grad(&grads).map(|g| g.flatten(0, 4))),
            grad(x.grad(&grads).map(|g| g.flatten(0, 2))),
            grad(norm.gamma.grad(&grads)),
            grad(norm.beta.as_ref().and_then(|p| p.grad(&grads))),
        ]
    };
    let (fused, composed) = (run(true), run(false));
    let names = ["attention", "layer_norm", "d qkv", "d x", "d gamma", "d beta"];
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
