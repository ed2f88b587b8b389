#include "salient/gradients.hpp"

#include <algorithm>
#include <map>
#include <mutex>

#include <torch/csrc/autograd/autograd.h>

#include "salient/error.hpp"

namespace salient {

namespace {

torch::Tensor gradient_of_picked(Model& model, const torch::Tensor& inputs,
                                 const std::function<torch::Tensor(const torch::Tensor&)>& pick, torch::Tensor* scores,
                                 const torch::Tensor& seed) {
  torch::Tensor x = inputs.detach().to(model.device(), model.dtype()).requires_grad_(true);
  torch::Tensor out = model.forward(x);
  if (!out.requires_grad())
    throw Error("the model's output does not depend on its input through autograd (an integer or detached output): "
                "gradient methods cannot explain it; use a black-box method (occlusion, rise, ...)");
  torch::Tensor picked = pick(out);
  // Each row's score depends only on its own input (eval mode), so the gradient of the sum is the
  // per-input gradient, all in one backward pass.
  auto grads = seed.defined() ? torch::autograd::grad({picked}, {x}, {seed.to(picked.device(), picked.scalar_type())},
                                                      /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true)
                               : torch::autograd::grad({picked.sum()}, {x}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                       /*create_graph=*/false, /*allow_unused=*/true);
  if (scores) *scores = picked.detach();
  return grads[0].defined() ? grads[0] : torch::zeros_like(x);
}

}  // namespace

torch::Tensor target_gradient(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                              torch::Tensor* scores) {
  return gradient_of_picked(
      model, inputs,
      [&](const torch::Tensor& out) { return out.gather(1, targets.to(out.device(), torch::kLong).view({-1, 1})).squeeze(1); },
      scores, {});
}

torch::Tensor target_gradient(Model& model, const torch::Tensor& inputs, int64_t target, torch::Tensor* scores,
                              const torch::Tensor& seed) {
  return gradient_of_picked(
      model, inputs,
      [&](const torch::Tensor& out) {
        if (target < 0 || target >= out.size(1))
          throw Error("target " + std::to_string(target) + " is out of range for " + std::to_string(out.size(1)) + " outputs");
        return out.select(1, target);
      },
      scores, seed);
}

torch::Tensor target_scores(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets) {
  torch::Tensor out = model.predict(inputs);
  return out.gather(1, targets.to(out.device(), torch::kLong).view({-1, 1})).squeeze(1);
}

void for_chunks(int64_t total, int64_t batch, const std::function<void(int64_t, int64_t)>& fn) {
  if (batch <= 0) batch = total;
  for (int64_t begin = 0; begin < total;) {
    int64_t end = std::min(total, begin + batch);
    if (total - end == 1 && batch > 1) end = total;  // never a lone last row (see the header)
    fn(begin, end);
    begin = end;
  }
}

namespace {

// One probe per model and input shape: a server builds an Explainer per request, and a probe is a
// whole forward and backward pass. Keyed by the module object, held weakly (a freed module's
// address reused by another model is no hit).
struct ProbeCache {
  std::mutex mutex;
  struct Entry {
    c10::weak_intrusive_ptr<c10::ivalue::Object> module;
    std::string op;
  };
  std::map<std::pair<const void*, std::string>, Entry> entries;
};
ProbeCache& probe_cache() {
  static ProbeCache* c = new ProbeCache;  // never destroyed: used until the process ends
  return *c;
}

std::string probe_missing_derivative(Model& model, const torch::Tensor& example) {
  try {
    torch::Tensor x = example.detach().clone().requires_grad_(true);
    const torch::Tensor out = model.forward(x);
    if (!out.requires_grad()) return "";
    torch::autograd::grad({out.sum()}, {x}, {}, false, false, /*allow_unused=*/true);
  } catch (const std::exception& e) {  // a c10::Error, or the interpreter's error around it
    // LibTorch: "derivative for aten::NAME is not implemented" (or "the derivative for 'NAME' ...").
    const std::string what = one_line(e);
    const size_t at = what.find("derivative for ");
    const size_t end = what.find(" is not implemented", at);
    if (at == std::string::npos || end == std::string::npos) return "";
    std::string op = what.substr(at + 15, end - at - 15);
    op.erase(std::remove(op.begin(), op.end(), '\''), op.end());
    return op.rfind("aten::", 0) == 0 ? op : "aten::" + op;
  }
  return "";
}

}  // namespace

std::string missing_derivative(Model& model, const torch::Tensor& example) {
  if (model.backend() != Backend::TorchScript) return "";
  const auto module = model.module()._ivalue();
  const auto key = std::make_pair(static_cast<const void*>(module.get()), c10::str(example.sizes(), example.scalar_type(), model.embedding_layer(),
                                                                                 model.output_layer()));
  ProbeCache& cache = probe_cache();
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.entries.find(key);
    if (it != cache.entries.end() && it->second.module.lock() == module) return it->second.op;
  }
  const std::string op = probe_missing_derivative(model, example);
  std::lock_guard<std::mutex> lock(cache.mutex);
  if (cache.entries.size() >= 4096) cache.entries.clear();  // bounded: models come and go, shapes vary
  cache.entries.insert_or_assign(key, ProbeCache::Entry{c10::weak_intrusive_ptr<c10::ivalue::Object>(module), op});
  return op;
}

std::string missing_derivative_message(const std::string& method, const std::string& op) {
  return method + ": needs gradients, but the model's " + op +
         " has no derivative (a model traced under torch.no_grad() bakes in fused inference ops): re-trace it with "
         "gradients enabled (not under torch.no_grad()) or export it with torch.jit.script; black-box methods still run";
}

}  // namespace salient
