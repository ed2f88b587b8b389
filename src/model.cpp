#include "salient/model.hpp"

#include <filesystem>
#include <fstream>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "salient/error.hpp"
#include "salient/onnx.hpp"

namespace salient {

namespace {

torch::Device parse_device(const std::string& text) {
  try {
    torch::Device d(text);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw Error("device '" + text + "' is not available: this LibTorch build sees no CUDA device");
    return d;
  } catch (const c10::Error&) {
    throw Error("unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
  }
}

std::string shape_str(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

namespace fs = std::filesystem;

Model::Model(const std::string& path, ModelOptions options) : path_(path), options_(std::move(options)) {
  if (!fs::exists(path)) throw Error("model file '" + path + "' does not exist");
  if (fs::is_directory(path)) throw Error("model path '" + path + "' is a folder, not a TorchScript file");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw Error("cannot read model file '" + path + "'");
  }
  device_ = parse_device(options_.device);
  meta_ = options_.metadata_path.empty() ? ModelMetadata::for_model(path)
                                         : ModelMetadata::load(options_.metadata_path);
  if (fs::path(path).extension() == ".onnx") {
    if (!device_.is_cpu()) throw Error("ONNX models run on the CPU through OpenCV DNN; --device must be cpu");
    backend_ = Backend::Onnx;
    onnx_ = load_onnx(path);
    return;
  }
  try {
    module_ = torch::jit::load(path, device_);
  } catch (const std::exception& e) {
    throw Error("'" + path + "' is not a TorchScript model (" + one_line(e) + ")");
  }
  prepare();
}

torch::jit::Module& Model::module() {
  if (backend_ == Backend::Onnx)
    throw Error("'" + path_ + "' is an ONNX model: this needs a TorchScript model (gradients or layers)");
  return module_;
}

Model::Model(torch::jit::Module module, ModelOptions options, ModelMetadata meta)
    : path_("<in-memory>"), module_(std::move(module)), options_(std::move(options)), meta_(std::move(meta)) {
  device_ = parse_device(options_.device);
  module_.to(device_);
  prepare();
}

void Model::prepare() {
  module_.eval();
  // Attributions need gradients with respect to the input only: parameters that do not require
  // gradients make the backward pass ~10% faster and leave input gradients bit-identical.
  for (auto p : module_.parameters()) p.set_requires_grad(false);
  if (!module_.find_method("forward"))
    throw Error("TorchScript model '" + path_ + "' has no forward method");
}

torch::Tensor Model::select_output(const c10::IValue& out) const {
  const std::string& sel = options_.output;
  auto first_tensor = [](const std::vector<c10::IValue>& items) -> torch::Tensor {
    for (const auto& v : items)
      if (v.isTensor()) return v.toTensor();
    throw Error("the model returned no tensor among its outputs");
  };
  auto by_index = [&](const std::vector<c10::IValue>& items) -> torch::Tensor {
    if (sel.empty()) return first_tensor(items);
    size_t idx = 0;
    try {
      idx = std::stoul(sel);
    } catch (...) {
      throw Error("--output '" + sel + "' is not an index, and the model returns a tuple/list");
    }
    if (idx >= items.size())
      throw Error("--output " + sel + " is out of range: the model returns " + std::to_string(items.size()) + " outputs");
    if (!items[idx].isTensor()) throw Error("model output " + sel + " is not a tensor");
    return items[idx].toTensor();
  };
  torch::Tensor t;
  if (out.isTensor()) {
    if (!sel.empty() && sel != "0") throw Error("--output '" + sel + "' given, but the model returns a single tensor");
    t = out.toTensor();
  } else if (out.isTuple()) {
    t = by_index(out.toTupleRef().elements().vec());
  } else if (out.isList()) {
    t = by_index(out.toListRef().vec());
  } else if (out.isGenericDict()) {
    auto dict = out.toGenericDict();
    if (sel.empty()) {
      for (const auto& kv : dict)
        if (kv.value().isTensor()) { t = kv.value().toTensor(); break; }
      if (!t.defined()) throw Error("the model returned no tensor among its outputs");
    } else {
      bool found = false;
      std::string keys;
      for (const auto& kv : dict) {
        std::string key = kv.key().isString() ? kv.key().toStringRef() : "";
        keys += (keys.empty() ? "" : ", ") + key;
        if (key == sel && kv.value().isTensor()) { t = kv.value().toTensor(); found = true; }
      }
      if (!found) throw Error("--output '" + sel + "' is not a tensor key of the model's output (keys: " + keys + ")");
    }
  } else {
    throw Error("the model's output is neither a tensor nor a tuple/list/dict of tensors");
  }
  if (t.dim() == 1) t = t.unsqueeze(1);
  if (t.dim() != 2)
    throw Error("the explained output must be [N, K]; the model returned shape " + shape_str(t.sizes()));
  return t;
}

torch::Tensor Model::forward(const torch::Tensor& batch) {
  if (backend_ == Backend::Onnx)
    throw Error("'" + path_ + "' is an ONNX model, which gives no gradients: use a black-box method (see `salient methods`)");
  torch::Tensor x = batch.to(device_, dtype_);
  c10::IValue out;
  try {
    out = module_.forward({x});
  } catch (const c10::Error& e) {
    throw Error("the model failed on an input of shape " + shape_str(x.sizes()) + ": " + one_line(e));
  }
  torch::Tensor t = select_output(out);
  if (t.size(0) != x.size(0))
    throw Error("the model's output has batch size " + std::to_string(t.size(0)) + " for an input batch of " + std::to_string(x.size(0)));
  return t;
}

torch::Tensor Model::predict(const torch::Tensor& batch) {
  torch::NoGradGuard no_grad;
  if (backend_ == Backend::Onnx) {
    torch::Tensor out = onnx_forward(*onnx_, batch.detach().to(torch::kCPU, torch::kFloat).contiguous());
    if (out.dim() == 1) out = out.unsqueeze(1);
    if (out.dim() != 2 || out.size(0) != batch.size(0))
      throw Error("the ONNX model returned shape " + shape_str(out.sizes()) + " for a batch of " + std::to_string(batch.size(0)));
    return out;
  }
  if (options_.freeze && !freeze_failed_) {
    if (!frozen_) {
      // A frozen, inference-optimised copy (constants folded, conv+bn fused); the user's module
      // is cloned first, never changed. A model that cannot be frozen runs as it is.
      try {
        torch::jit::Module frozen = torch::jit::freeze(module_.clone());
        frozen_ = torch::jit::optimize_for_inference(frozen);
      } catch (const std::exception&) {
        freeze_failed_ = true;
        return forward(batch);
      }
    }
    torch::Tensor x = batch.to(device_, dtype_);
    try {
      return select_output(frozen_->forward({x}));
    } catch (const c10::Error& e) {
      throw Error("the model failed on an input of shape " + shape_str(x.sizes()) + ": " + one_line(e));
    }
  }
  return forward(batch);
}

int64_t Model::parameter_count() const {
  if (backend_ == Backend::Onnx) return 0;
  int64_t n = 0;
  for (const auto& p : module_.parameters()) n += p.numel();
  return n;
}

void Model::to(torch::Dtype dtype) {
  if (backend_ == Backend::Onnx) throw Error("ONNX models run in float32 only");
  frozen_.reset();
  module_.to(dtype);
  dtype_ = dtype;
  for (auto p : module_.parameters()) p.set_requires_grad(false);
}

void set_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

}  // namespace salient
