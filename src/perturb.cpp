#include "salient/perturb.hpp"

#include <cmath>

#include <opencv2/imgproc.hpp>
#include <opencv2/ximgproc.hpp>

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/image.hpp"
#include "salient/npy.hpp"

namespace salient {

GroupSpec GroupSpec::parse(const std::string& spec) {
  GroupSpec g;
  g.spec = spec;
  auto number_after = [&](const std::string& prefix) -> int64_t {
    std::string rest = spec.substr(prefix.size());
    try {
      size_t used = 0;
      long long v = std::stoll(rest, &used);
      if (used == rest.size() && v >= 1) return v;
    } catch (...) {
    }
    throw Error("features '" + spec + "': '" + rest + "' is not a whole number >= 1");
  };
  if (spec == "slic" || spec == "grid" || spec == "elements" || spec == "columns" || spec == "tokens") return g;
  if (spec.rfind("slic:", 0) == 0 || spec.rfind("grid:", 0) == 0) {
    number_after(spec.substr(0, 5));  // validates
    return g;
  }
  if (spec.size() > 4 && spec.substr(spec.size() - 4) == ".npy") {
    torch::Tensor labels = read_npy_any(spec);  // integer label files as they are; float ones rounded
    g.mask = (labels.is_floating_point() ? labels.round() : labels).to(torch::kLong);
    return g;
  }
  throw Error("features '" + spec + "' is not slic[:SIZE], grid[:K], elements, columns, tokens, or an .npy label file");
}

namespace {

// Relabels arbitrary integer labels to 0..G-1.
FeatureGroups compact(const torch::Tensor& labels) {
  auto uniq = at::_unique(labels.flatten(), /*sorted=*/true, /*return_inverse=*/true);
  return {std::get<1>(uniq).view(labels.sizes()).to(torch::kLong), std::get<0>(uniq).numel()};
}

bool image_shape(const torch::Tensor& x) { return x.dim() == 3; }

}  // namespace

FeatureGroups GroupSpec::make(const torch::Tensor& x, const ModelMetadata& meta) const {
  FeatureGroups g = make_groups(x, meta);
  g.split = g.split || split;
  return g;
}

FeatureGroups GroupSpec::make_groups(const torch::Tensor& x, const ModelMetadata& meta) const {
  if (mask.defined()) {
    torch::Tensor m = mask;
    if (image_shape(x) && m.dim() == 2) m = m.unsqueeze(0).expand(x.sizes());
    if (m.sizes() != x.sizes())
      throw Error("features file '" + spec + "' has shape " + c10::str(mask.sizes()) + ", the inputs " + c10::str(x.sizes()));
    return compact(m.contiguous());
  }
  if (!meta.features.empty() && spec != "elements" && x.dim() == 1) {
    // A tabular row: one group per column of the user's, a one-hot group as a whole (the default).
    std::vector<int64_t> labels;
    int64_t column = 0;
    for (const auto& f : meta.features) {
      for (int64_t k = 0; k < f.width(); ++k) labels.push_back(column);
      ++column;
    }
    if (static_cast<int64_t>(labels.size()) == x.numel()) return {torch::tensor(labels, torch::kLong), column, /*split=*/true};
  }
  if (!meta.tokenizer.empty() && spec != "tokens" && spec != "elements")
    throw Error("features '" + spec + "' do not apply to a text model: tokens (its default), elements or an .npy label file");
  if (spec == "tokens") {
    // A text's embeddings [L, D]: one feature per token, its value split over the token's D values
    // (so that a token's score, their sum, is the feature's).
    if (x.dim() != 2) throw Error("features 'tokens' apply to a text model's embeddings [L, D]; the input is " + c10::str(x.sizes()));
    return {torch::arange(x.size(0), torch::kLong).view({-1, 1}).expand(x.sizes()).contiguous(), x.size(0), /*split=*/true};
  }
  if (spec == "elements" || !image_shape(x)) {  // tabular and sequence inputs: every element
    return {torch::arange(x.numel(), torch::kLong).view(x.sizes()), x.numel()};
  }
  const int64_t h = x.size(1), w = x.size(2);
  torch::Tensor plane;
  if (spec.rfind("grid", 0) == 0) {
    const int64_t k = spec == "grid" ? 7 : std::stoll(spec.substr(5));
    torch::Tensor rows = (torch::arange(h, torch::kLong) * k).div(h, "floor").view({h, 1});
    torch::Tensor cols = (torch::arange(w, torch::kLong) * k).div(w, "floor").view({1, w});
    plane = rows * k + cols;
  } else {
    const int size = spec == "slic" ? std::max(2, static_cast<int>(std::lround(std::sqrt(h * w / 50.0))))
                                    : std::stoi(spec.substr(5));
    cv::Mat picture = tensor_to_display(x, meta), lab;
    cv::cvtColor(picture, lab, cv::COLOR_BGR2Lab);
    auto slic = cv::ximgproc::createSuperpixelSLIC(lab, cv::ximgproc::SLICO, size);
    slic->iterate(10);
    slic->enforceLabelConnectivity(std::max(1, size / 2));
    cv::Mat labels;
    slic->getLabels(labels);
    plane = torch::from_blob(labels.data, {h, w}, torch::kInt).to(torch::kLong).clone();
  }
  return compact(plane.unsqueeze(0).expand(x.sizes()).contiguous());
}

torch::Tensor apply_coalitions(const torch::Tensor& x, const torch::Tensor& baseline, const FeatureGroups& groups,
                               const torch::Tensor& z) {
  // keep[b, ...] = z[b, labels[...]]
  torch::Tensor keep = z.to(x.options()).index_select(1, groups.labels.flatten().to(x.device()));
  std::vector<int64_t> shape{z.size(0)};
  shape.insert(shape.end(), x.sizes().begin(), x.sizes().end());
  keep = keep.view(shape);
  if (baseline.dim() == x.dim()) return baseline.unsqueeze(0) + (x - baseline).unsqueeze(0) * keep;
  // A background set [M, ...]: every coalition against every reference input, coalition-major.
  return (baseline.unsqueeze(0) + (x.unsqueeze(0) - baseline).unsqueeze(0) * keep.unsqueeze(1)).flatten(0, 1);
}

void check_coalitions(const std::string& method, int64_t rows, int64_t groups, bool surrogate) {
  const bool too_many = rows > kMaxCoalitionValues / std::max<int64_t>(1, groups);
  if (too_many || (surrogate && groups > kMaxSurrogateGroups))
    throw Error(method + ": " + std::to_string(rows) + " coalitions of " + std::to_string(groups) +
                " feature groups exceed Salient's cap (" + std::to_string(kMaxCoalitionValues) + " values" +
                (surrogate ? ", " + std::to_string(kMaxSurrogateGroups) + " groups" : std::string()) +
                "); use fewer groups (--features slic or grid:K) or fewer samples");
}

torch::Tensor batched_scores(Model& model, const torch::Tensor& inputs, int64_t target, int64_t batch) {
  std::vector<torch::Tensor> parts;
  for_chunks(inputs.size(0), batch, [&](int64_t b, int64_t e) {
    parts.push_back(model.predict(inputs.slice(0, b, e)).select(1, target).to(torch::kCPU, torch::kDouble));
  });
  return torch::cat(parts);
}

torch::Tensor coalition_scores(Model& model, const torch::Tensor& x, const torch::Tensor& baseline,
                               const torch::Tensor& weights, const FeatureGroups& groups, const torch::Tensor& z,
                               int64_t target, int64_t batch, const std::function<void(double)>& progress) {
  // With a background set of M inputs every coalition is M inputs: at most `batch` rows a pass
  // (and at least one coalition), each coalition's score the weighted mean of its M.
  const bool set = baseline.dim() > x.dim();
  const int64_t m = set ? baseline.size(0) : 1;
  std::vector<torch::Tensor> parts;
  for_chunks(z.size(0), std::max<int64_t>(1, batch / m), [&](int64_t b, int64_t e) {
    torch::Tensor s = model.predict(apply_coalitions(x, baseline, groups, z.slice(0, b, e))).select(1, target).to(torch::kCPU, torch::kDouble);
    parts.push_back(set ? torch::matmul(s.view({e - b, m}), weights.to(torch::kCPU, torch::kDouble)) : s);
    if (progress) progress(static_cast<double>(e) / z.size(0));
  });
  return torch::cat(parts);
}

double reference_score(Model& model, const torch::Tensor& baseline, const torch::Tensor& weights, int64_t x_dim,
                       int64_t target, int64_t batch) {
  if (baseline.dim() == x_dim) return model.predict(baseline.unsqueeze(0))[0][target].item<double>();
  torch::Tensor s = batched_scores(model, baseline, target, batch);
  return torch::dot(s, weights.to(torch::kCPU, torch::kDouble)).item<double>();
}

torch::Tensor spread(const torch::Tensor& values, const FeatureGroups& groups) {
  if (groups.split) {
    const torch::Tensor sizes = torch::bincount(groups.labels.flatten(), {}, groups.count).to(values.device(), values.scalar_type());
    return spread(values / sizes, FeatureGroups{groups.labels, groups.count});
  }
  return values.to(torch::kFloat).index_select(0, groups.labels.flatten().to(values.device())).view(groups.labels.sizes());
}

torch::Tensor cat_ragged(const std::vector<torch::Tensor>& parts) {
  int64_t width = 0;
  bool ragged = false;
  for (const auto& p : parts) {
    if (p.dim() != 2) return torch::cat(parts);
    ragged = ragged || (width && p.size(1) != width);
    width = std::max(width, p.size(1));
  }
  if (!ragged) return torch::cat(parts);
  std::vector<torch::Tensor> padded;
  for (const auto& p : parts)
    padded.push_back(p.size(1) == width ? p : torch::cat({p, torch::full({p.size(0), width - p.size(1)}, NAN, p.options())}, 1));
  return torch::cat(padded);
}

torch::Tensor trim_padding(const torch::Tensor& row) {
  if (row.dim() != 1 || !row.is_floating_point()) return row;
  const torch::Tensor r = row.contiguous().to(torch::kCPU, torch::kDouble);
  const double* v = r.data_ptr<double>();
  int64_t n = r.numel();
  while (n > 0 && std::isnan(v[n - 1])) --n;
  return row.slice(0, 0, n);
}

torch::Tensor spread_and_keep(const torch::Tensor& values, const FeatureGroups& groups, std::map<std::string, torch::Tensor>& extra) {
  extra["groups"] = values.to(torch::kCPU, torch::kFloat).contiguous();
  extra["segments"] = groups.labels.to(torch::kCPU, torch::kInt).contiguous();
  return spread(values, groups);
}

}  // namespace salient
