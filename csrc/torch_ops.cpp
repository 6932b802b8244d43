// PyTorch operations the LibTorch backend needs and tch does not bind: the vector-Jacobian
// product of a recorded graph with a given output gradient, LayerNorm's backward, the fused
// AdamW update, a host to GPU copy through page-locked memory that does not wait for the GPU,
// a census of the operations PyTorch runs (what `maestro bench step --ops` prints), and PyTorch's profiler
// (what `maestro bench step --kernel-times` reads).
// Tensors cross as tch's handles (`torch::Tensor *`); an exception comes back as a malloc'd
// message (null on success) that the caller frees.

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/csrc/autograd/variable.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>
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

// The operation census. Every operation PyTorch's dispatcher or autograd engine runs passes
// through RecordFunction; the census keeps the "kernels": `aten::` operations that are not
// views, allocations or composites, and that run no such operation themselves (`aten::linear`
// runs `aten::addmm`, which is counted; `aten::mm` runs only `resolve_conj`, so it is counted),
// and the matrix products, which are kernels even where they run another (the CPU's `addmm`
// copies its bias into the output first).
// Per kernel it adds the elements of its tensor inputs (not of tensor lists), a proxy for its
// memory traffic.
// benches/torch_reference.py applies the same rule to PyTorch's profiler events, reading the two
// lists below from this file.
const std::unordered_set<std::string> &not_kernels() {
    static const std::unordered_set<std::string> names = {
        "aten::as_strided", "aten::view", "aten::_reshape_alias", "aten::reshape", "aten::flatten",
        "aten::unflatten", "aten::expand", "aten::expand_as", "aten::permute", "aten::transpose",
        "aten::t", "aten::slice", "aten::select", "aten::squeeze", "aten::unsqueeze", "aten::alias",
        "aten::detach", "aten::detach_", "aten::empty", "aten::empty_strided", "aten::empty_like",
        "aten::resolve_conj", "aten::resolve_neg", "aten::_unsafe_view", "aten::lift_fresh",
        "aten::contiguous", "aten::unbind", "aten::split", "aten::split_with_sizes", "aten::chunk",
        "aten::narrow", "aten::view_as", "aten::movedim", "aten::swapaxes", "aten::to",
        "aten::requires_grad_", "aten::result_type", "aten::_has_compatible_shallow_copy_type",
        "aten::is_same_size", "aten::set_", "aten::resize_", "aten::pin_memory", "aten::_pin_memory",
        "aten::is_pinned", "aten::numpy_T", "aten::matrix_H", "aten::mT", "aten::_unsafe_split",
        "aten::new_empty", "aten::new_empty_strided", "aten::broadcast_to", "aten::as_strided_", "aten::dropout",
        "aten::_fused_sdp_choice"};
    return names;
}

const std::unordered_set<std::string> &products() {
    static const std::unordered_set<std::string> names = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                                                          "aten::addbmm", "aten::_addmm_activation", "aten::mv",
                                                          "aten::addmv"};
    return names;
}

struct Frame {
    bool has_kernel_below = false;
    int64_t elements = 0;
    std::string shapes;  // with a census by shape: sizes, strides and dtype of each tensor input
};

struct Census {
    std::mutex lock;
    std::map<std::string, std::pair<int64_t, int64_t>> kernels;  // name -> (count, input elements)
    at::CallbackHandle handle = 0;
    bool on = false;
    std::atomic<bool> by_shape{false};  // read by every thread's callback, outside the lock
};

Census &census() {
    static Census c;
    return c;
}

thread_local std::vector<Frame> frames;

// Elements of a tensor argument. Scalars (0-d tensors) and tensor lists count none, as PyTorch's
// profiler records no shape for them.
int64_t elements(const c10::IValue &v) {
    if (!v.isTensor()) return 0;
    const at::Tensor &t = v.toTensor();
    return t.defined() && t.dim() > 0 ? t.numel() : 0;
}

std::unique_ptr<at::ObserverContext> census_start(const at::RecordFunction &fn) {
    if (not_kernels().count(fn.name())) return nullptr;
    if (!frames.empty()) frames.back().has_kernel_below = true;
    Frame f;
    for (const c10::IValue &v : fn.inputs()) {
        f.elements += elements(v);
        if (census().by_shape.load(std::memory_order_relaxed) && v.isTensor() && v.toTensor().defined()) {
            std::ostringstream o;
            o << ' ' << v.toTensor().scalar_type() << v.toTensor().sizes() << v.toTensor().strides();
            f.shapes += o.str();
        }
    }
    frames.push_back(f);
    return nullptr;
}

void census_end(const at::RecordFunction &fn, at::ObserverContext *) {
    std::string name = fn.name();
    if (not_kernels().count(name) || frames.empty()) return;
    Frame f = frames.back();
    frames.pop_back();
    if ((f.has_kernel_below && !products().count(name)) || name.rfind("aten::", 0) != 0) return;
    Census &c = census();
    std::lock_guard<std::mutex> g(c.lock);
    auto &k = c.kernels[c.by_shape.load(std::memory_order_relaxed) ? name + f.shapes : name];
    k.first += 1;
    k.second += f.elements;
}

}  // namespace

extern "C" {

// Starts counting the kernels every thread runs (a census already running is restarted); with
// `by_shape`, each kernel name is followed by the dtype, sizes and strides of its tensor inputs.
char *maestro_census_start(int by_shape) {
    try {
        Census &c = census();
        std::lock_guard<std::mutex> g(c.lock);
        if (c.on) at::removeCallback(c.handle);
        c.kernels.clear();
        c.by_shape.store(by_shape != 0);
        c.handle = at::addGlobalCallback(at::RecordFunctionCallback(census_start, census_end)
                                             .needsInputs(true)
                                             .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
        c.on = true;
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

// Stops the census; `*result` gets its lines, "name<TAB>count<TAB>input elements", malloc'd.
char *maestro_census_stop(char **result) {
    try {
        Census &c = census();
        std::lock_guard<std::mutex> g(c.lock);
        if (c.on) at::removeCallback(c.handle);
        c.on = false;
        std::ostringstream out;
        for (const auto &[name, k] : c.kernels) out << name << '\t' << k.first << '\t' << k.second << '\n';
        c.kernels.clear();
        *result = message(out.str().c_str());
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}


// Starts PyTorch's profiler (Kineto), as torch.profiler.profile does: with `gpu`, on CUDA alone
// (CUPTI's record of every kernel, copy and fill the GPU runs, timed on the GPU), otherwise on
// the CPU (the operations the calling thread runs).
char *maestro_profile_start(int gpu) {
    try {
        using namespace torch::profiler::impl;
        ProfilerConfig config(ProfilerState::KINETO);
        std::set<ActivityType> activities{gpu ? ActivityType::CUDA : ActivityType::CPU};
        torch::autograd::profiler::prepareProfiler(config, activities);
        torch::autograd::profiler::enableProfiler(config, activities);
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

// Stops the profiler; `*result` gets one line per event, malloc'd:
// "gpu|cpu<TAB>start ns<TAB>duration ns<TAB>name", the name's tabs and line ends made spaces.
char *maestro_profile_stop(char **result) {
    try {
        std::unique_ptr<torch::autograd::profiler::ProfilerResult> r = torch::autograd::profiler::disableProfiler();
        std::ostringstream out;
        if (r != nullptr)
            for (const torch::autograd::profiler::KinetoEvent &e : r->events()) {
                std::string name = e.name();
                for (char &ch : name)
                    if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
                out << (e.deviceType() == c10::DeviceType::CUDA ? "gpu" : "cpu") << '\t' << e.startNs() << '\t'
                    << e.durationNs() << '\t' << name << '\n';
            }
        *result = message(out.str().c_str());
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

// Where the gradient of `output` enters the graph PyTorch recorded for it: its `grad_fn` and
// output number. Holding the edge keeps the graph (and what it saved) alive, but not the
// output itself, so an output PyTorch's backward does not need is freed as soon as its last
// consumer is done with it, as in a PyTorch training step.
char *maestro_grad_edge(at::Tensor *output, void **edge) {
    try {
        torch::autograd::Edge e = torch::autograd::impl::gradient_edge(*output);
        TORCH_CHECK(e.function, "the output was not recorded by autograd");
        *edge = new torch::autograd::Edge(std::move(e));
        return nullptr;
    } catch (const std::exception &e) {
        return message(e.what());
    } catch (...) {
        return message("unknown C++ exception");
    }
}

void maestro_edge_free(void *edge) { delete static_cast<torch::autograd::Edge *>(edge); }

// d inputs of sum(output * grad), through the graph recorded from `inputs` (leaves that require
// grad) to the output whose edge is `edge`, as torch.autograd.grad computes it; the graph's
// saved tensors are released afterwards (the edge itself is freed by maestro_edge_free). An input
// the output does not depend on gets zeros.
char *maestro_vjp(void *edge, at::Tensor *grad, at::Tensor **inputs, int n_in, at::Tensor **result) {
    try {
        using namespace torch::autograd;
        std::vector<at::Tensor> ins = list(inputs, n_in);
        edge_list wanted;
        wanted.reserve(n_in);
        for (const at::Tensor &in : ins) {
            std::shared_ptr<Node> fn = in.grad_fn();
            if (!fn) fn = impl::try_get_grad_accumulator(in);
            if (fn)
                wanted.emplace_back(std::move(fn), in.output_nr());
            else
                wanted.emplace_back(std::make_shared<Identity>(), 0);
        }
        variable_list g = Engine::get_default_engine().execute({*static_cast<Edge *>(edge)}, {*grad},
                                                               /*keep_graph=*/false, /*create_graph=*/false,
                                                               /*accumulate_grad=*/false, wanted);
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

// PyTorch's LayerNorm backward (NativeLayerNormBackward0's formula) called directly: d input,
// d weight and d bias of `native_layer_norm` over the last dimension, from the output gradient,
// the input and the mean and reciprocal std the forward returned. `mask[i]` says whether result
// i is wanted; an unwanted one comes back null.
char *maestro_layer_norm_backward(at::Tensor *grad, at::Tensor *input, at::Tensor *mean, at::Tensor *rstd,
                                  at::Tensor *weight, at::Tensor *bias, const int *mask, at::Tensor **result) {
    try {
        c10::NoGradGuard no_grad;
        std::array<bool, 3> wanted{mask[0] != 0, mask[1] != 0, mask[2] != 0};
        at::Tensor g = grad->scalar_type() == input->scalar_type() ? *grad : grad->to(input->scalar_type());
        auto [dx, dw, db] = at::native_layer_norm_backward(g.contiguous(), *input, {input->size(-1)}, *mean, *rstd,
                                                           *weight, *bias, wanted);
        at::Tensor *out[3] = {nullptr, nullptr, nullptr};
        at::Tensor got[3] = {dx, dw, db};
        for (int i = 0; i < 3; ++i)
            if (wanted[i]) out[i] = new at::Tensor(std::move(got[i]));
        for (int i = 0; i < 3; ++i) result[i] = out[i];
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
