//! PyTorch operations that tch does not bind, from `csrc/torch_ops.cpp` (compiled by build.rs
//! with the `tch` feature): the vector-Jacobian product of a recorded graph with given output
//! gradients, PyTorch's fused AdamW update, and the page-locked, non-blocking host-to-GPU copy.

use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn maestro_vjp(
        outputs: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        n_out: i32,
        inputs: *const *mut C_tensor,
        n_in: i32,
        result: *mut *mut C_tensor,
    ) -> *mut libc::c_char;

    fn maestro_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        n: i32,
        step: *mut C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut libc::c_char;

    fn maestro_upload_pinned(data: *const f32, shape: *const i64, dim: i32, device_index: i32, result: *mut *mut C_tensor) -> *mut libc::c_char;
}

fn handles(ts: &[&Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// A PyTorch error from the shim, as tch reports its own: a panic with PyTorch's message (the
/// shapes and devices were checked by burn before, so this is a bug, not bad input).
fn check(error: *mut libc::c_char, what: &str) {
    if error.is_null() {
        return;
    }
    let text = unsafe { std::ffi::CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { libc::free(error.cast()) };
    panic!("{what}: {text}");
}

/// The gradients of `inputs` for `grads` on `outputs`, through the graph PyTorch recorded between
/// them; the graph is freed. An input the outputs do not depend on gets zeros.
pub fn vjp(outputs: &[&Tensor], grads: &[&Tensor], inputs: &[&Tensor]) -> Vec<Tensor> {
    assert_eq!(outputs.len(), grads.len(), "one gradient per output");
    let (o, g, i) = (handles(outputs), handles(grads), handles(inputs));
    let mut result = vec![std::ptr::null_mut::<C_tensor>(); inputs.len()];
    let error = unsafe { maestro_vjp(o.as_ptr(), g.as_ptr(), o.len() as i32, i.as_ptr(), i.len() as i32, result.as_mut_ptr()) };
    check(error, "PyTorch's backward pass");
    result.into_iter().map(|t| unsafe { Tensor::from_ptr(t) }).collect()
}

/// AdamW settings of one update.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

/// `torch._fused_adamw_` on one parameter: updates `param`, `exp_avg` and `exp_avg_sq` in place.
/// `step` is the step count after this update, a float scalar on the parameter's device. All
/// four tensors must share dtype, device and strides (PyTorch's fused kernels need dense,
/// equally laid out tensors).
pub fn fused_adamw(param: &Tensor, grad: &Tensor, exp_avg: &Tensor, exp_avg_sq: &Tensor, step: &Tensor, s: AdamWStep) {
    let [p, g, m, v] = [param, grad, exp_avg, exp_avg_sq].map(|t| t.as_ptr() as *mut C_tensor);
    let error = unsafe {
        maestro_fused_adamw(&p, &g, &m, &v, 1, step.as_ptr() as *mut C_tensor, s.lr, s.beta_1, s.beta_2, s.weight_decay, s.epsilon)
    };
    check(error, "PyTorch's fused AdamW");
}

/// `data` (row-major, `shape`) on CUDA device `device_index`: copied into page-locked memory and
/// queued to the device without the host waiting for it (DataLoader's `pin_memory` with
/// `non_blocking=True`). burn-tch's own `from_data` copies from pageable memory and waits.
pub fn upload_pinned(data: &[f32], shape: &[usize], device_index: usize) -> Tensor {
    assert_eq!(data.len(), shape.iter().product::<usize>(), "the data must fill the shape");
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let mut result = std::ptr::null_mut::<C_tensor>();
    let error = unsafe { maestro_upload_pinned(data.as_ptr(), dims.as_ptr(), dims.len() as i32, device_index as i32, &mut result) };
    check(error, "the copy to the GPU");
    unsafe { Tensor::from_ptr(result) }
}
