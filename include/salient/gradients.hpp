#pragma once
// Shared mechanics of the gradient family: target gradients and memory-bounded chunking.
#include <functional>

#include <torch/script.h>

#include "salient/model.hpp"

namespace salient {

// d f(x)[target] / dx for a batch: inputs [B, ...], targets [B] (int64). One forward and one
// backward. When `scores` is given it receives f(x)[target] [B] (detached).
torch::Tensor target_gradient(Model& model, const torch::Tensor& inputs,
                              const torch::Tensor& targets, torch::Tensor* scores = nullptr);
// The same for one target class of every row (a path's points): its column read directly, which
// backpropagates without gather's scatter. With `seed` [B], the backward pass starts from it
// instead of ones: row r's gradient comes out multiplied by seed[r] (a quadrature's weights), for
// no extra operation.
torch::Tensor target_gradient(Model& model, const torch::Tensor& inputs, int64_t target, torch::Tensor* scores = nullptr,
                              const torch::Tensor& seed = {});

// The op of `model` whose derivative LibTorch does not implement, found by one backward pass from
// the explained output on `example` [1, ...] (a model traced under torch.no_grad() bakes in fused
// inference ops, e.g. aten::_transformer_encoder_layer_fwd); "" when the gradient reaches the input
// or the pass fails for another reason (the methods then say why themselves).
std::string missing_derivative(Model& model, const torch::Tensor& example);
// The refusal of a gradient method on such a model: names the method, the op and the fix.
std::string missing_derivative_message(const std::string& method, const std::string& op);

// f(x)[target] [B] without autograd.
torch::Tensor target_scores(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets);

// Inputs (or noisy copies) per forward/backward pass unless the user sets --batch-size: measured
// fastest for SmoothGrad-50 on ResNet-18 and the demo CNN here (bench/), and ~0.6 GB on ResNet-18.
constexpr int64_t kDefaultBatch = 10;

// Calls fn(begin, end) for consecutive chunks [begin, end) of [0, total) of at most `batch`
// elements (batch <= 0: one chunk), except that a last chunk of one element joins the one before
// (batch + 1): LibTorch's CPU kernels give a row of a batch of one other bits (~1e-7) than the same
// row among others, and a row's result must not depend on where the chunking fell (a resumed or
// sharded batch run equals an uninterrupted one bit for bit). The batcher: memory is bounded by the
// chunk size.
void for_chunks(int64_t total, int64_t batch, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace salient
