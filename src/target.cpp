#include "salient/target.hpp"

#include <cctype>
#include <sstream>

#include "salient/error.hpp"
#include "salient/method.hpp"
#include "salient/image.hpp"
#include "salient/npy.hpp"

namespace salient {

namespace {
bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}
}  // namespace

Target Target::top_k(int k) {
  if (k < 1) throw Error("top-k target needs k >= 1, got " + std::to_string(k));
  Target t;
  t.kind_ = k == 1 ? Kind::Top : Kind::TopK;
  t.k_ = k;
  return t;
}

Target Target::index(int64_t i) {
  if (i < 0) throw Error("target class index must be >= 0, got " + std::to_string(i));
  Target t;
  t.kind_ = Kind::Index;
  t.index_ = i;
  return t;
}

Target Target::sum_of(std::vector<int64_t> classes, std::string text) {
  if (classes.empty()) throw Error("target '" + text + "': no class to sum");
  Target t;
  t.kind_ = Kind::Function;
  t.text_ = std::move(text);
  const std::string name = t.text_;
  t.reduce_ = [classes, name](const torch::Tensor& out) {
    if (out.dim() != 2)
      throw Error("target '" + name + "' sums classes of an [N, K] output; the model returned " + std::to_string(out.dim()) +
                  " dimensions (a dense output: use region:CLASS)");
    for (int64_t c : classes)
      if (c >= out.size(1))
        throw Error("target '" + name + "': class " + std::to_string(c) + " is out of range: the model has " +
                    std::to_string(out.size(1)) + " outputs");
    return out.index_select(1, torch::tensor(classes, torch::kLong).to(out.device())).sum(1, true);
  };
  return t;
}

Target Target::region(int64_t cls, torch::Tensor mask, std::string text) {
  if (cls < 0) throw Error("target '" + text + "': the class must be >= 0");
  if (mask.defined() && mask.dim() != 2) throw Error("target '" + text + "': the mask must be [H, W]");
  if (mask.defined() && mask.numel() > 0 && !mask.ne(0).any().item<bool>())
    throw Error("target '" + text + "': the mask is all zeros, an empty region: nothing to explain");
  Target t;
  t.kind_ = Kind::Function;
  t.text_ = std::move(text);
  const std::string name = t.text_;
  t.reduce_ = [cls, mask, name](const torch::Tensor& out) {
    if (out.dim() != 4)
      throw Error("target '" + name + "' needs a dense output [N, C, H, W]; the model returned " +
                  std::to_string(out.dim()) + " dimensions");
    if (cls >= out.size(1))
      throw Error("target '" + name + "': class " + std::to_string(cls) + " is out of range: the output has " +
                  std::to_string(out.size(1)) + " channels");
    const torch::Tensor plane = out.select(1, cls);  // [N, H, W]
    if (!mask.defined()) return plane.sum({1, 2}).unsqueeze(1);
    if (mask.size(0) != out.size(2) || mask.size(1) != out.size(3))
      throw Error("target '" + name + "': the mask is " + std::to_string(mask.size(0)) + "x" + std::to_string(mask.size(1)) +
                  ", the output's planes are " + std::to_string(out.size(2)) + "x" + std::to_string(out.size(3)));
    return (plane * mask.to(plane.options())).sum({1, 2}).unsqueeze(1);
  };
  return t;
}

Target Target::neuron(std::string layer, std::vector<int64_t> index, std::string text) {
  if (layer.empty()) throw Error("target '" + text + "': no layer given (layer:PATH:INDEX; see `salient layers`)");
  if (index.empty()) throw Error("target '" + text + "': no neuron index given (layer:PATH:I[,J,...])");
  for (int64_t i : index)
    if (i < 0) throw Error("target '" + text + "': a neuron index must be >= 0");
  Target t;
  t.kind_ = Kind::Function;
  t.text_ = std::move(text);
  t.layer_ = std::move(layer);
  const std::string name = t.text_;
  t.reduce_ = [index, name](const torch::Tensor& act) {
    // act: the layer's output [N, ...]; one index per dimension after the batch.
    const int64_t rank = act.dim() - 1;
    if (static_cast<int64_t>(index.size()) != rank)
      throw Error("target '" + name + "': the layer's output is " + c10::str(act.sizes().slice(1)) + " per input: give " +
                  std::to_string(rank) + " index" + (rank == 1 ? "" : "es") + ", got " + std::to_string(index.size()));
    torch::Tensor v = act;
    for (size_t d = 0; d < index.size(); ++d) {
      if (index[d] >= v.size(1))
        throw Error("target '" + name + "': index " + std::to_string(index[d]) + " is out of range in dimension " +
                    std::to_string(d + 1) + " of the layer's output " + c10::str(act.sizes().slice(1)));
      v = v.select(1, index[d]);
    }
    return v.unsqueeze(1);
  };
  return t;
}

Target Target::above(double threshold) {
  if (!(threshold > 0 && threshold < 1)) throw Error("target above:P needs 0 < P < 1, got " + std::to_string(threshold));
  Target t;
  t.kind_ = Kind::Threshold;
  t.threshold_ = threshold;
  std::ostringstream s;
  s << "above:" << threshold;
  t.text_ = s.str();
  return t;
}

Target Target::parse(const std::string& text, const ModelMetadata& meta) {
  if (text.empty() || text == "top") return top();
  if (text.rfind("layer:", 0) == 0) {
    const size_t colon = text.rfind(':');
    const std::string path = colon > 5 ? text.substr(6, colon - 6) : "";
    std::vector<int64_t> index;
    for (const auto& item : split_list(colon > 5 ? text.substr(colon + 1) : "")) {
      if (!all_digits(item) || item.size() > 12) throw Error("target '" + text + "': neuron index '" + item + "' is not a whole number >= 0");
      index.push_back(std::stoll(item));
    }
    return neuron(path, index, text);
  }
  if (text.rfind("above:", 0) == 0) {
    double v = 0;
    if (!parse_number(text.substr(6), v)) throw Error("target '" + text + "': expected above:P with P a probability in (0, 1)");
    return above(v);
  }
  auto one_class = [&](const std::string& part) -> int64_t {
    if (all_digits(part)) {
      if (part.size() > 12) throw Error("target '" + text + "': class '" + part + "' is out of range");
      return std::stoll(part);
    }
    for (size_t i = 0; i < meta.labels.size(); ++i)
      if (meta.labels[i] == part) return static_cast<int64_t>(i);
    throw Error("target '" + text + "': '" + part + "' is neither a class index nor a label of the model");
  };
  if (text.rfind("region:", 0) == 0) {
    const std::string rest = text.substr(7);
    const size_t colon = rest.find(':');
    torch::Tensor mask;
    if (colon != std::string::npos) {
      mask = read_npy(rest.substr(colon + 1));
      check_finite(mask, "the mask '" + rest.substr(colon + 1) + "'");
    }
    return region(one_class(rest.substr(0, colon)), mask, text);
  }
  bool is_label = false;
  for (const auto& l : meta.labels) is_label = is_label || l == text;
  if (text.find('+') != std::string::npos && !is_label) {
    std::vector<int64_t> classes;
    size_t start = 0;
    while (start <= text.size()) {
      const size_t end = std::min(text.find('+', start), text.size());
      classes.push_back(one_class(text.substr(start, end - start)));
      start = end + 1;
    }
    return sum_of(classes, text);
  }
  if (text.rfind("top-", 0) == 0) {
    std::string k = text.substr(4);
    if (!all_digits(k) || k.size() > 6) throw Error("target '" + text + "': expected top-K with K a positive whole number");
    return top_k(std::stoi(k));
  }
  if (all_digits(text)) {
    if (text.size() > 12) throw Error("target '" + text + "' is out of range");
    return index(std::stoll(text));
  }
  for (size_t i = 0; i < meta.labels.size(); ++i)
    if (meta.labels[i] == text) return index(static_cast<int64_t>(i));
  std::string known;  // at most 10 of them: an error is one short line
  for (size_t i = 0; i < std::min<size_t>(10, meta.labels.size()); ++i) known += (i ? ", " : "") + meta.labels[i];
  if (meta.labels.size() > 10) known += " and " + std::to_string(meta.labels.size() - 10) + " more; see `salient info`";
  throw Error("target '" + text + "' is not top, top-K, a class index or a label" +
              (known.empty() ? std::string(" (the model has no label metadata)") : " (labels: " + known + ")"));
}

std::vector<std::vector<int64_t>> Target::resolve(const torch::Tensor& outputs, const torch::Tensor& probabilities) const {
  const int64_t n = outputs.size(0), k = outputs.size(1);
  std::vector<std::vector<int64_t>> out(n);
  if (kind_ == Kind::Threshold) {
    if (!probabilities.defined()) throw Error("target " + text_ + " needs the model's probabilities", ErrorKind::Internal);
    // Each input's classes at or above the threshold, most probable first; none: the top class.
    const torch::Tensor p = probabilities.detach().to(torch::kCPU, torch::kDouble).contiguous();
    const torch::Tensor order = std::get<1>(p.sort(1, /*descending=*/true)).contiguous();
    const auto pa = p.accessor<double, 2>();
    const auto oa = order.accessor<int64_t, 2>();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k && pa[i][oa[i][j]] >= threshold_; ++j) out[i].push_back(oa[i][j]);
      if (out[i].empty()) out[i].push_back(oa[i][0]);
    }
    return out;
  }
  if (kind_ == Kind::Function) {  // outputs are the reduction's [N, 1]
    for (auto& v : out) v = {0};
    return out;
  }
  if (kind_ == Kind::Index) {
    if (index_ >= k)
      throw Error("target class " + std::to_string(index_) + " is out of range: the model has " +
                  std::to_string(k) + " outputs (0.." + std::to_string(k - 1) + ")");
    for (auto& v : out) v = {index_};
    return out;
  }
  if (k_ > k)
    throw Error("target top-" + std::to_string(k_) + " asks for more classes than the model's " + std::to_string(k));
  auto idx = std::get<1>(outputs.detach().to(torch::kCPU).topk(k_, 1)).contiguous();
  auto acc = idx.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < k_; ++j) out[i].push_back(acc[i][j]);
  return out;
}

std::string Target::to_string() const {
  switch (kind_) {
    case Kind::Top: return "top";
    case Kind::TopK: return "top-" + std::to_string(k_);
    case Kind::Index: return std::to_string(index_);
    case Kind::Function:
    case Kind::Threshold: return text_;
  }
  return "top";
}

torch::Tensor class_means(const torch::Tensor& output) { return output.dim() > 2 ? output.flatten(2).mean(2) : output; }

torch::Tensor class_scores(Model& model, const torch::Tensor& batch) {
  ReductionScope classes(model, Model::OutputReduction(class_means));
  return model.predict(batch);
}

std::vector<int64_t> model_output_shape(Model& model, const torch::Tensor& batch) {
  std::vector<int64_t> shape;
  ReductionScope seen(model, Model::OutputReduction([&shape](const torch::Tensor& t) {
                        shape = t.sizes().vec();
                        return class_means(t);
                      }));
  model.predict(batch);
  return shape;
}

}  // namespace salient
