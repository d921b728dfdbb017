//! The running statistics of `batch_norm` in the generated items: the
//! buffer fields after the parameters in the parameter struct, and the
//! batch tape's batch-norm mode, batch statistics and the update of the
//! running statistics (see `crate::ops::batchnorm`).

use super::items::Names;
use super::plan::Plan;
use proc_macro2::{Literal, TokenStream};
use quote::quote;

/// The buffer fields of the parameter struct (each `batch_norm`'s running
/// statistics), their float count, and their initialisation.
pub(super) fn buffers(plan: &Plan) -> (TokenStream, Literal, TokenStream) {
    let t = &plan.t;
    let mut fields = vec![];
    let mut init = vec![];
    let mut count = 0;
    for d in &plan.g.batch_norms {
        let [mean, var, tracked] = crate::ops::batchnorm::buffer_fields(d);
        let [mean_n, var_n, tracked_n] = crate::ops::batchnorm::buffer_names(&d.name);
        let c = Literal::usize_unsuffixed(d.channels);
        let docs = [
            format!("`{mean_n}`: [{}], the running mean (zeros at first); a buffer, trained by no optimiser", d.channels),
            format!("`{var_n}`: [{}], the running variance (ones at first); a buffer", d.channels),
            format!("`{tracked_n}`: the number of batches the running statistics have seen (a whole number); a buffer"),
        ];
        let [dm, dv, dt] = docs;
        fields.push(quote!(
            #[doc = #dm] pub #mean: [#t; #c],
            #[doc = #dv] pub #var: [#t; #c],
            #[doc = #dt] pub #tracked: #t,
        ));
        init.push(quote!(
            params.#mean = [0.0; #c];
            params.#var = [1.0; #c];
            params.#tracked = 0.0;
        ));
        count += 2 * d.channels + 1;
    }
    (
        quote!(#(#fields)*),
        Literal::usize_unsuffixed(count),
        quote!(#(#init)*),
    )
}

/// For a definition with `batch_norm`: the batch tape's mode and batch
/// statistics (fields), the methods that set the mode and move the running
/// statistics, and the statement of `block` that chooses the mode
/// (training with gradients, inference without).
pub(super) fn batch_norm_mode(plan: &Plan, n: &Names) -> (TokenStream, TokenStream, TokenStream) {
    let g = plan.g;
    if g.batch_norms.is_empty() {
        return (quote!(), quote!(), quote!());
    }
    let t = &plan.t;
    let (params_ty, tape_ty) = (&n.params, &n.batch_tape);
    let mut fields = vec![];
    let mut updates = vec![];
    let momentum = Literal::f64_unsuffixed(crate::ops::batchnorm::MOMENTUM);
    for (k, d) in g.batch_norms.iter().enumerate() {
        let [tm, tv] = crate::ops::batchnorm::tape_fields(k);
        let [mean, var, tracked] = crate::ops::batchnorm::buffer_fields(d);
        let c = Literal::usize_unsuffixed(d.channels);
        fields.push(quote!(
            #[doc = "The last training `forward_batch`'s mean of each channel of this batch norm."]
            pub #tm: [#t; #c],
            #[doc = "The last training `forward_batch`'s unbiased variance of each channel."]
            pub #tv: [#t; #c],
        ));
        updates.push(quote!(
            for i in 0..#c {
                params.#mean[i] = (1.0 - #momentum) * params.#mean[i] + #momentum * tape.#tm[i];
                params.#var[i] = (1.0 - #momentum) * params.#var[i] + #momentum * tape.#tv[i];
            }
            params.#tracked += 1.0;
        ));
    }
    let fields = quote!(
        /// The batch norms' mode: `false` (a new tape's) normalises with
        /// the batch's statistics (training), `true` with the running ones.
        pub __nn_bn_running: bool,
        /// Whether the batch statistics below are from a training
        /// `forward_batch` that `update_running_stats` has not used yet.
        pub __nn_bn_fresh: bool,
        #(#fields)*
    );
    let items = quote!(
        impl<const B: usize> #tape_ty<B> {
            /// Chooses what the batch norms of `forward_batch` normalise
            /// with: the batch's statistics (`true`, training; a new tape's
            /// mode), or the running statistics (`false`, inference, as
            /// `predict`).
            pub fn set_batch_statistics(&mut self, on: bool) {
                self.__nn_bn_running = !on;
            }
        }

        /// Moves the running statistics of every batch norm towards the
        /// batch statistics the last `forward_batch` on `tape` stored, if it
        /// was a training pass not used yet (`running = 0.9 running + 0.1
        /// batch`, the variance the unbiased one, as PyTorch), and counts
        /// the batch; whether it did. Once per batch: a second call, or a
        /// call after an inference-mode pass, changes nothing.
        pub fn update_running_stats<const B: usize>(params: &mut #params_ty, tape: &mut #tape_ty<B>) -> bool {
            if !tape.__nn_bn_fresh {
                return false;
            }
            tape.__nn_bn_fresh = false;
            #(#updates)*
            true
        }
    );
    let block = quote!(tape.__nn_bn_running = grads.is_none(););
    (fields, items, block)
}
