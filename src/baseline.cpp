#include "salient/baseline.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>

#include "salient/error.hpp"
#include "salient/idx.hpp"
#include "salient/image.hpp"
#include "salient/npy.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

std::string shape_text(c10::IntArrayRef s) {
  std::string out;
  for (auto d : s) out += (out.empty() ? "" : ",") + std::to_string(d);
  return "[" + out + "]";
}

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
    if (ext == e) return true;
  return false;
}

double parse_number(const std::string& text, const std::string& spec) {
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (...) {
  }
  throw Error("baseline '" + spec + "': '" + text + "' is not a number");
}

}  // namespace

torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma) {
  if (x.dim() != 3) throw Error("a blurred baseline needs image inputs [C,H,W]; got shape " + shape_text(x.sizes()));
  if (!(sigma > 0)) return x.clone();
  const int64_t radius = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(3 * sigma)));
  torch::Tensor k = torch::arange(-radius, radius + 1, x.options()).div(sigma).square().mul(-0.5).exp();
  k = k / k.sum();
  const int64_t c = x.size(0);
  torch::Tensor img = x.unsqueeze(0);
  const int64_t ph = std::min(radius, x.size(1) - 1), pw = std::min(radius, x.size(2) - 1);
  // Replicate edges, then one horizontal and one vertical pass (depthwise conv).
  img = torch::replication_pad2d(img, {pw, pw, ph, ph});
  torch::Tensor kh = k.slice(0, radius - pw, radius + pw + 1).view({1, 1, 1, -1}).expand({c, 1, 1, 2 * pw + 1});
  torch::Tensor kv = k.slice(0, radius - ph, radius + ph + 1).view({1, 1, -1, 1}).expand({c, 1, 2 * ph + 1, 1});
  kh = kh / kh.sum({2, 3}, true);
  kv = kv / kv.sum({2, 3}, true);
  const std::vector<int64_t> one{1, 1}, zero{0, 0};
  img = torch::conv2d(img, kh, c10::nullopt, one, zero, one, c);
  img = torch::conv2d(img, kv, c10::nullopt, one, zero, one, c);
  return img.squeeze(0);
}

Baseline Baseline::parse(const std::string& spec, const ModelMetadata& meta) {
  Baseline b;
  b.spec = spec;
  if (spec.empty() || spec == "zeros" || spec == "zero") return b;
  if (spec.rfind("constant:", 0) == 0) {
    b.kind = Kind::Constant;
    b.value = parse_number(spec.substr(9), spec);
    return b;
  }
  if (spec == "blur" || spec.rfind("blur:", 0) == 0) {
    b.kind = Kind::Blur;
    b.value = spec == "blur" ? 5.0 : parse_number(spec.substr(5), spec);
    if (!(b.value > 0)) throw Error("baseline '" + spec + "': the blur sigma must be > 0");
    return b;
  }
  if (spec == "uniform") {
    b.kind = Kind::Uniform;
    return b;
  }
  fs::path p(spec);
  if (!fs::exists(p))
    throw Error("baseline '" + spec + "' is neither zeros, constant:V, blur[:SIGMA], uniform, nor an existing file");
  b.kind = Kind::Tensor;
  if (p.extension() == ".npy") {
    b.tensor = read_npy(spec);
    if (b.tensor.dim() > 1 && b.tensor.size(0) == 1) b.tensor = b.tensor[0];
  } else {
    b.tensor = load_image(spec, meta).tensor;
  }
  return b;
}

torch::Tensor Baseline::make(const torch::Tensor& x, uint64_t seed) const {
  switch (kind) {
    case Kind::Zeros: return torch::zeros_like(x);
    case Kind::Constant: return torch::full_like(x, value);
    case Kind::Blur: return gaussian_blur(x, value);
    case Kind::Uniform: {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      torch::Tensor u = at::rand(x.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat));
      const double lo = x.min().item<double>(), hi = x.max().item<double>();
      return (u * (hi - lo) + lo).to(x.options());
    }
    case Kind::Tensor:
      if (tensor.sizes() != x.sizes())
        throw Error("baseline '" + spec + "' has shape " + shape_text(tensor.sizes()) + ", the inputs have " +
                    shape_text(x.sizes()));
      return tensor.to(x.options());
  }
  return torch::zeros_like(x);
}

torch::Tensor load_input_set(const std::string& spec, const ModelMetadata& meta, int64_t limit, uint64_t seed) {
  fs::path p(spec);
  if (!fs::exists(p)) throw Error("baseline set '" + spec + "' does not exist");
  torch::Tensor set;
  if (fs::is_directory(p)) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(p))
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error("baseline set folder '" + spec + "' holds no image");
    std::vector<torch::Tensor> items;
    for (const auto& f : files) items.push_back(load_image(f, meta).tensor);
    set = torch::stack(items);
  } else if (p.extension() == ".npy") {
    set = read_npy(spec);
    if (set.dim() < 2) throw Error("baseline set '" + spec + "' must be a stack [M, ...]");
  } else {
    // IDX images [M,H,W] (uint8): preprocessed like 8-bit grayscale pictures.
    torch::Tensor raw = read_idx(spec);
    if (raw.dim() != 3) throw Error("IDX file '" + spec + "' does not hold images [M,H,W]");
    set = raw.to(torch::kFloat).div(255.0).mul(meta.range_hi - meta.range_lo).add(meta.range_lo).unsqueeze(1);
    if (!meta.mean.empty()) set = (set - meta.mean[0]) / (meta.std.empty() ? 1.0 : meta.std[0]);
  }
  if (set.size(0) == 0) throw Error("baseline set '" + spec + "' is empty");
  if (limit > 0 && set.size(0) > limit) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    torch::Tensor pick = at::randperm(set.size(0), gen, torch::TensorOptions().dtype(torch::kLong)).slice(0, 0, limit);
    set = set.index_select(0, std::get<0>(pick.sort()));
  }
  return set;
}

}  // namespace salient
