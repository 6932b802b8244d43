//! Training losses kept on the device and read back a batch of steps at a time.
//!
//! Reading a loss waits for the device to finish everything queued before it. MAE's engine reads
//! each step's loss before its backward pass (`loss.item()`), which on a GPU stops the host from
//! queuing the backward pass and the next step while the forward pass runs. Here each
//! micro-batch's loss stays on the device until [`READ_EVERY`] of them are waiting or the epoch
//! ends, then all are read with one transfer. Nothing is lost: every value is read, in order,
//! with the optimizer step it belongs to, so a NaN is still reported at its exact step, about
//! `READ_EVERY` micro-batches after it happened (a read waits for the step under way to finish).

use burn::tensor::Tensor;

/// Micro-batches between two reads.
pub const READ_EVERY: usize = 20;

#[derive(Default)]
pub struct DeviceLosses {
    /// Each micro-batch's step and its tensors; joined only when read, so a step adds no kernel.
    pending: Vec<(usize, Vec<Tensor<1>>)>,
}

impl DeviceLosses {
    /// Keeps `values` (tensors of one or more scalars, without autodiff; read back as one list)
    /// of one micro-batch of optimizer step `step`.
    pub fn push(&mut self, step: usize, values: Vec<Tensor<1>>) {
        self.pending.push((step, values));
    }

    pub fn is_due(&self) -> bool {
        self.pending.len() >= READ_EVERY
    }

    /// The waiting values in the order they were pushed, each with its step; one device read.
    pub fn read(&mut self) -> Vec<(usize, Vec<f64>)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let widths: Vec<usize> = self.pending.iter().map(|(_, ts)| ts.iter().map(|t| t.dims()[0]).sum()).collect();
        let (steps, tensors): (Vec<usize>, Vec<Vec<Tensor<1>>>) = self.pending.drain(..).unzip();
        let all = Tensor::cat(tensors.into_iter().flatten().collect(), 0).into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 after convert");
        let mut rest = all.as_slice();
        steps
            .into_iter()
            .zip(widths)
            .map(|(step, w)| {
                let (head, tail) = rest.split_at(w);
                rest = tail;
                (step, head.to_vec())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_in_order_with_their_steps() {
        let device = crate::device::test_device();
        let mut l = DeviceLosses::default();
        for step in 0..READ_EVERY {
            assert!(!l.is_due());
            l.push(step, vec![Tensor::from_floats([step as f32], &device), Tensor::from_floats([f32::NAN], &device)]);
        }
        assert!(l.is_due());
        let got = l.read();
        assert_eq!(got.len(), READ_EVERY);
        for (i, (step, v)) in got.iter().enumerate() {
            assert_eq!(*step, i);
            assert_eq!(v[0], i as f64);
            assert!(v[1].is_nan());
        }
        assert!(l.read().is_empty() && !l.is_due());
    }
}
