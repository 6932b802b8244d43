//! PyTorch operations that tch does not bind, from `csrc/torch_ops.cpp` (compiled by build.rs
//! with the `tch` feature): the vector-Jacobian product of a recorded graph with a given output
//! gradient, LayerNorm's backward, PyTorch's fused AdamW update, the page-locked, non-blocking
//! host-to-GPU copy, a census of the kernels PyTorch runs, and PyTorch's profiler.

use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn maestro_grad_edge(output: *mut C_tensor, edge: *mut *mut libc::c_void) -> *mut libc::c_char;

    fn maestro_edge_free(edge: *mut libc::c_void);

    fn maestro_vjp(
        edge: *mut libc::c_void,
        grad: *mut C_tensor,
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

    fn maestro_layer_norm_backward(
        grad: *mut C_tensor,
        input: *mut C_tensor,
        mean: *mut C_tensor,
        rstd: *mut C_tensor,
        weight: *mut C_tensor,
        bias: *mut C_tensor,
        mask: *const i32,
        result: *mut *mut C_tensor,
    ) -> *mut libc::c_char;

    fn maestro_census_start(by_shape: i32) -> *mut libc::c_char;

    fn maestro_census_stop(result: *mut *mut libc::c_char) -> *mut libc::c_char;

    fn maestro_profile_start(gpu: i32) -> *mut libc::c_char;

    fn maestro_profile_stop(result: *mut *mut libc::c_char) -> *mut libc::c_char;

    fn maestro_upload_pinned(data: *const f32, shape: *const i64, dim: i32, device_index: i32, result: *mut *mut C_tensor) -> *mut libc::c_char;
}

fn handles(ts: &[&Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// The text of a string the shim malloc'd (an error message or a result), freed; None for null.
fn take(text: *mut libc::c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    let s = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy().into_owned();
    unsafe { libc::free(text.cast()) };
    Some(s)
}

/// A PyTorch error from the shim, as tch reports its own: a panic with PyTorch's message (the
/// shapes and devices were checked by burn before, so this is a bug, not bad input).
fn check(error: *mut libc::c_char, what: &str) {
    if let Some(text) = take(error) {
        panic!("{what}: {text}");
    }
}

/// Where the gradient of a recorded output enters PyTorch's graph (its `grad_fn` and output
/// number). It keeps the graph and what the graph saved alive, but not the output itself.
#[derive(Debug)]
pub struct GradEdge(*mut libc::c_void);

// The edge is a `std::shared_ptr` to an autograd node, which PyTorch shares between threads.
unsafe impl Send for GradEdge {}
unsafe impl Sync for GradEdge {}

impl GradEdge {
    /// The edge of `output`, which autograd recorded (it has a `grad_fn`).
    pub fn of(output: &Tensor) -> GradEdge {
        let mut edge = std::ptr::null_mut();
        check(unsafe { maestro_grad_edge(output.as_ptr() as *mut C_tensor, &mut edge) }, "PyTorch's graph");
        GradEdge(edge)
    }

    /// The gradients of `inputs` (leaves that require grad) for `grad` on the output, through
    /// the graph PyTorch recorded between them; the graph is freed. An input the output does not
    /// depend on gets zeros.
    pub fn vjp(&self, grad: &Tensor, inputs: &[&Tensor]) -> Vec<Tensor> {
        let i = handles(inputs);
        let mut result = vec![std::ptr::null_mut::<C_tensor>(); inputs.len()];
        let error =
            unsafe { maestro_vjp(self.0, grad.as_ptr() as *mut C_tensor, i.as_ptr(), i.len() as i32, result.as_mut_ptr()) };
        check(error, "PyTorch's backward pass");
        result.into_iter().map(|t| unsafe { Tensor::from_ptr(t) }).collect()
    }
}

impl Drop for GradEdge {
    fn drop(&mut self) {
        unsafe { maestro_edge_free(self.0) }
    }
}

/// PyTorch's LayerNorm backward (`NativeLayerNormBackward0`'s formula) over the last
/// dimension: d input, d weight and d bias of `native_layer_norm` for the gradient `grad` of its
/// output, from its input and the mean and reciprocal std it returned; each where `wanted`.
pub fn layer_norm_backward(
    grad: &Tensor,
    input: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    wanted: [bool; 3],
) -> [Option<Tensor>; 3] {
    let [g, x, m, r, w, b] = [grad, input, mean, rstd, weight, bias].map(|t| t.as_ptr() as *mut C_tensor);
    let mask = wanted.map(i32::from);
    let mut result = [std::ptr::null_mut::<C_tensor>(); 3];
    check(unsafe { maestro_layer_norm_backward(g, x, m, r, w, b, mask.as_ptr(), result.as_mut_ptr()) }, "PyTorch's LayerNorm backward");
    result.map(|t| (!t.is_null()).then(|| unsafe { Tensor::from_ptr(t) }))
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

/// A recorder's `stop` in the shim: it writes its lines, malloc'd, and returns an error or null.
type Stop = unsafe extern "C" fn(*mut *mut libc::c_char) -> *mut libc::c_char;

/// Runs `f` under a recorder of the shim whose start call (already made) returned `started`,
/// and stops it however `f` ends (a recorder left running would slow every operation of the
/// process): `f`'s result and the recorder's lines, or what went wrong starting or stopping it.
fn recording<R>(what: &str, started: *mut libc::c_char, stop: Stop, f: impl FnOnce() -> R) -> Result<(R, String), String> {
    struct Running(Stop);
    impl Drop for Running {
        // Only on a panic out of `f`: stop without panicking again.
        fn drop(&mut self) {
            let mut text = std::ptr::null_mut::<libc::c_char>();
            let error = unsafe { (self.0)(&mut text) };
            take(text);
            take(error);
        }
    }
    if let Some(e) = take(started) {
        return Err(format!("starting {what}: {e}"));
    }
    let running = Running(stop);
    let r = f();
    std::mem::forget(running);
    let mut text = std::ptr::null_mut::<libc::c_char>();
    let error = unsafe { stop(&mut text) };
    let lines = take(text).unwrap_or_default(); // none: out of memory for the text
    match take(error) {
        Some(e) => Err(format!("stopping {what}: {e}")),
        None => Ok((r, lines)),
    }
}

/// Runs `f` and counts the kernels PyTorch runs meanwhile, on every thread: `aten::` operations
/// that are not views, allocations or composites of other operations (the rule is in
/// `csrc/torch_ops.cpp`; `benches/torch_reference.py --ops` applies it to PyTorch's profiler).
/// Each kernel name (with `by_shape`, followed by the dtype, sizes and strides of its tensor
/// inputs) with how often it ran and the elements of its tensor inputs, summed; sorted by name.
pub fn census<R>(by_shape: bool, f: impl FnOnce() -> R) -> Result<(R, Vec<(String, u64, u64)>), String> {
    let started = unsafe { maestro_census_start(by_shape as i32) };
    let (r, lines) = recording("the operation census", started, maestro_census_stop, f)?;
    let counts = lines
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    Ok((r, counts))
}

/// One event of PyTorch's profiler: a kernel, copy or fill the GPU ran (timed on the GPU by
/// CUPTI), or an operation the CPU ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfiledEvent {
    pub on_gpu: bool,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub name: String,
}

/// Runs `f` under PyTorch's profiler (Kineto), as `torch.profiler.profile` does: with `gpu`,
/// recording what CUDA runs (its activities alone, so the host pays no per-operation cost),
/// otherwise what the calling thread runs on the CPU. The events in the profiler's order.
pub fn profile<R>(gpu: bool, f: impl FnOnce() -> R) -> Result<(R, Vec<ProfiledEvent>), String> {
    let started = unsafe { maestro_profile_start(gpu as i32) };
    let (r, lines) = recording("PyTorch's profiler", started, maestro_profile_stop, f)?;
    let events = lines
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '\t');
            let on_gpu = f.next()? == "gpu";
            Some(ProfiledEvent { on_gpu, start_ns: f.next()?.parse().ok()?, duration_ns: f.next()?.parse().ok()?, name: f.next()?.to_string() })
        })
        .collect();
    Ok((r, events))
}
