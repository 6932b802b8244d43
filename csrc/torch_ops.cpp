// PyTorch operations the LibTorch backend needs and tch does not bind: the vector-Jacobian
// product of a recorded graph with given output gradients, the fused AdamW update, and a host
// to GPU copy through page-locked memory that does not wait for the GPU.
// Tensors cross as tch's handles (`torch::Tensor *`); an exception comes back as a malloc'd
// message (null on success) that the caller frees.

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

char *message(const char *what) {
    size_t n = std::strlen(what) + 1;
    char *s = static_cast<char *>(std::malloc(n));
    if (s != nullptr) std::memcpy(s, what, n);
    return s;
}

std::vector<at::Tensor> list(at::Tensor **ts, int n) {
    std::vector<at::Tensor> out;
    out.reserve(n);
    for (int i = 0; i < n; ++i) out.push_back(*ts[i]);
    return out;
}

}  // namespace

extern "C" {

// d inputs of sum(outputs[i] * grads[i]), through the graph recorded from `inputs` to `outputs`
// (freed afterwards). An input the outputs do not depend on gets zeros.
char *maestro_vjp(at::Tensor **outputs, at::Tensor **grads, int n_out, at::Tensor **inputs, int n_in,
                  at::Tensor **result) {
    try {
        std::vector<at::Tensor> ins = list(inputs, n_in);
        auto g = torch::autograd::grad(list(outputs, n_out), ins, list(grads, n_out), /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
        for (int i = 0; i < n_in; ++i)
            if (!g[i].defined()) g[i] = at::zeros_like(ins[i]);
        // Nothing below throws: the caller owns every handle or none.
        for (int i = 0; i < n_in; ++i) result[i] = new at::Tensor(std::move(g[i]));
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

// torch.optim.AdamW's fused update (amsgrad and maximize off) of `n` parameters in place: their
// moments, with `step` (a float scalar on their device) the step count after this update.
char *maestro_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                          at::Tensor **exp_avg_sqs, int n, at::Tensor *step, double lr, double beta1,
                          double beta2, double weight_decay, double eps) {
    try {
        c10::NoGradGuard no_grad;
        std::vector<at::Tensor> steps(n, *step);
        at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {}, steps, lr,
                          beta1, beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

// `numel(shape)` floats from `data` to CUDA device `device_index`, as a DataLoader with
// pin_memory and `.to(device, non_blocking=True)` does: copied into a page-locked buffer of
// PyTorch's caching host allocator, then queued on the device's current stream. The host does
// not wait for the GPU; the allocator keeps the buffer until the copy has run.
char *maestro_upload_pinned(const float *data, const int64_t *shape, int dim, int device_index, at::Tensor **result) {
    try {
        at::Tensor host = at::empty(at::IntArrayRef(shape, dim), at::TensorOptions().dtype(at::kFloat).pinned_memory(true));
        std::memcpy(host.data_ptr<float>(), data, host.numel() * sizeof(float));
        at::Tensor on_device = host.to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)), at::kFloat,
                                       /*non_blocking=*/true, /*copy=*/false);
        *result = new at::Tensor(std::move(on_device));
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

}  // extern "C"
