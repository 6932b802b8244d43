//! Gradient clipping by the global L2 norm, as MAE's `--clip_grad` does it
//! (`NativeScalerWithGradNormCount` calls `torch.nn.utils.clip_grad_norm_(params, clip_grad)`
//! once per optimizer step, on the accumulated gradient):
//!
//! ```text
//! norm = sqrt(sum over every parameter's gradient of sum(g^2))
//! g = g * min(1, max_norm / (norm + 1e-6))
//! ```
//!
//! The factor stays a device tensor, so clipping adds no host sync to the step.
//! (burn's own `GradientClipping::Norm` clips each tensor by its own norm, which is not this.)

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// PyTorch's `clip_grad_norm_` adds this to the norm before dividing.
const NORM_EPS: f64 = 1e-6;

struct SumOfSquares<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SumOfSquares<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            let f = self.factor.clone().reshape([1; D]);
            self.grads.register(p.id, g * f);
        }
    }
}

/// The global L2 norm of the gradients `model`'s parameters have in `grads` (a 1-element
/// tensor, on the device), or None when none has one.
pub fn grad_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut v = SumOfSquares { grads, total: None };
    model.visit(&mut v);
    v.total.map(|t| t.sqrt())
}

/// Scales every gradient by `min(1, max_norm / (norm + 1e-6))`, `norm` the global L2 norm.
pub fn clip_grad_norm<M: Module>(model: &M, mut grads: GradientsParams, max_norm: f64) -> GradientsParams {
    let Some(norm) = grad_norm(model, &grads) else { return grads };
    let factor = (norm + NORM_EPS).recip().mul_scalar(max_norm).clamp_max(1.0);
    model.visit(&mut Scale { grads: &mut grads, factor });
    grads
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    fn grads_of(m: &Two, w_a: &[f32], w_b: &[f32]) -> GradientsParams {
        let dev = Device::default();
        let mut g = GradientsParams::new();
        g.register(m.a.weight.id, Tensor::<2>::from_data(TensorData::new(w_a.to_vec(), [2, 2]), &dev));
        g.register(m.b.weight.id, Tensor::<2>::from_data(TensorData::new(w_b.to_vec(), [1, 2]), &dev));
        // m.a.bias and m.b.bias have no gradient: they count for nothing, as in PyTorch.
        g
    }

    fn values<const D: usize>(g: &GradientsParams, p: &Param<Tensor<D>>) -> Vec<f32> {
        g.get::<D>(p.id).unwrap().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn clips_by_the_global_norm_as_pytorch_does() {
        let dev = Device::default();
        let m = Two { a: LinearConfig::new(2, 2).init(&dev), b: LinearConfig::new(2, 1).init(&dev) };
        // Global norm sqrt(1 + 4 + 4 + 16 + 4 + 0) = sqrt(29) = 5.385...; each tensor's own
        // norm is smaller (5 and 2), so a per-tensor clip at 3 would give other values.
        let g = grads_of(&m, &[1.0, -2.0, 2.0, 4.0], &[2.0, 0.0]);
        let norm = grad_norm(&m, &g).unwrap().into_scalar::<f32>();
        assert!((norm - 29f32.sqrt()).abs() < 1e-6);
        let clipped = clip_grad_norm(&m, g, 3.0);
        // torch: g * (3 / (sqrt(29) + 1e-6)).
        let f = (3.0 / (29f64.sqrt() + 1e-6)) as f32;
        for (got, want) in values(&clipped, &m.a.weight).iter().zip([1.0 * f, -2.0 * f, 2.0 * f, 4.0 * f]) {
            assert!((got - want).abs() < 1e-6, "{got} against {want}");
        }
        for (got, want) in values(&clipped, &m.b.weight).iter().zip([2.0 * f, 0.0]) {
            assert!((got - want).abs() < 1e-6, "{got} against {want}");
        }
        assert!(clipped.get::<1>(m.a.bias.as_ref().unwrap().id).is_none());
    }

    #[test]
    fn leaves_gradients_under_the_limit_alone() {
        let dev = Device::default();
        let m = Two { a: LinearConfig::new(2, 2).init(&dev), b: LinearConfig::new(2, 1).init(&dev) };
        let g = grads_of(&m, &[1.0, -2.0, 2.0, 4.0], &[2.0, 0.0]);
        // The factor is min(1, 6 / 5.385) = 1: torch multiplies by exactly 1.
        let kept = clip_grad_norm(&m, g, 6.0);
        assert_eq!(values(&kept, &m.a.weight), [1.0, -2.0, 2.0, 4.0]);
        assert_eq!(values(&kept, &m.b.weight), [2.0, 0.0]);
    }
}
