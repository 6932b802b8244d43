//! A batch's images onto the training device. On `libtorch-cuda` they go through page-locked
//! memory and the copy is queued without the host waiting for the GPU, as MAE's DataLoader
//! (`pin_memory=True`) and `.to(device, non_blocking=True)` do: the host moves on to issue the
//! step while the previous one still runs. burn's `from_data` (every other device) copies from
//! pageable memory, and on libtorch-cuda that copy waits for the GPU to finish its queued work.

use burn::tensor::{Device, Tensor, TensorData};

/// `data` (row-major, `shape`) as a tensor on `device`, autodiff or not as `device` is.
pub fn images(data: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    #[cfg(feature = "tch")]
    let data = match torch::upload(data, shape, device) {
        Ok(t) => return t,
        Err(data) => data,
    };
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// `MAESTRO_PAGEABLE_UPLOAD=1` turns the page-locked path off (burn's `from_data` everywhere),
/// to measure what it buys.
#[cfg(feature = "tch")]
fn pinned_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MAESTRO_PAGEABLE_UPLOAD").map_or(true, |v| v.is_empty() || v == "0"))
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated in burn 0.22 but is the path to PyTorch's kernels
mod torch {
    use std::sync::Arc;

    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, Dispatch, LibTorch, backend_extension};
    use burn::tensor::{Device, Tensor};

    /// A host-to-device copy; `like` only names the device (an extension routes by a tensor).
    #[backend_extension(LibTorch)]
    pub trait TorchUpload: Backend {
        fn upload_pinned(like: FloatTensor<Self>, data: Arc<Vec<f32>>, shape: Vec<usize>) -> FloatTensor<Self>;
    }

    impl TorchUpload for LibTorch {
        fn upload_pinned(like: TchTensor, data: Arc<Vec<f32>>, shape: Vec<usize>) -> TchTensor {
            match like.tensor.device() {
                tch::Device::Cuda(i) => TchTensor::new(crate::torch_ops::upload_pinned(&data, &shape, i)),
                other => {
                    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                    TchTensor::new(tch::Tensor::from_slice(&data).reshape(dims).to(other))
                }
            }
        }
    }

    /// Through the extension on any LibTorch device (on the CPU it is `from_data`'s copy, so the
    /// CPU tests run this path); `data` back for other backends or with `MAESTRO_PAGEABLE_UPLOAD`.
    pub(super) fn upload(data: Vec<f32>, shape: [usize; 4], device: &Device) -> Result<Tensor<4>, Vec<f32>> {
        if !super::pinned_enabled() || !crate::device::is_libtorch(device) {
            return Err(data);
        }
        let like = Tensor::<1>::empty([1], &device.clone().inner());
        let out = <Dispatch as TorchUpload>::upload_pinned(like.into_dispatch(), Arc::new(data), shape.to_vec());
        let t = Tensor::<4>::from_dispatch(out);
        Ok(if device.is_autodiff() { Tensor::from_inner(t) } else { t })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the test device (`MAESTRO_TEST_DEVICE=libtorch-cpu` takes the LibTorch path), with
    /// and without autodiff: the values, the shape, and a gradient flowing through.
    #[test]
    fn images_arrive_whole_on_the_device() {
        let device = crate::device::test_device();
        let data: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32 * 0.5 - 7.0).collect();
        for d in [device.clone(), device.clone().autodiff()] {
            let t = images(data.clone(), [2, 3, 4, 5], &d);
            assert_eq!(t.dims(), [2, 3, 4, 5]);
            assert_eq!(t.device().is_autodiff(), d.is_autodiff());
            assert_eq!(t.clone().into_data().try_to_vec::<f32>().unwrap(), data);
        }
        let ad = device.autodiff();
        let w = Tensor::<4>::ones([1, 3, 4, 5], &ad).require_grad();
        let loss = (images(data.clone(), [2, 3, 4, 5], &ad) * w.clone()).sum();
        let g = w.grad(&loss.backward()).expect("a gradient");
        let want: Vec<f32> = (0..60).map(|k| data[k] + data[60 + k]).collect();
        assert_eq!(g.into_data().try_to_vec::<f32>().unwrap(), want);
    }
}
