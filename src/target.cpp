#include "salient/target.hpp"

#include <cctype>

#include "salient/error.hpp"

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

Target Target::parse(const std::string& text, const ModelMetadata& meta) {
  if (text.empty() || text == "top") return top();
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

std::vector<std::vector<int64_t>> Target::resolve(const torch::Tensor& outputs) const {
  const int64_t n = outputs.size(0), k = outputs.size(1);
  std::vector<std::vector<int64_t>> out(n);
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
  }
  return "top";
}

}  // namespace salient
