#include "salient/baseline.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/idx.hpp"
#include "salient/image.hpp"
#include "salient/npy.hpp"
#include "salient/tabular.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

std::string shape_text(c10::IntArrayRef s) {
  std::string out;
  for (auto d : s) out += (out.empty() ? "" : ",") + std::to_string(d);
  return "[" + out + "]";
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

torch::Tensor load_limit(const torch::Tensor& set, int64_t limit, uint64_t seed) {
  if (limit <= 0 || set.size(0) <= limit) return set;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor pick = at::randperm(set.size(0), gen, torch::TensorOptions().dtype(torch::kLong)).slice(0, 0, limit);
  return set.index_select(0, std::get<0>(pick.sort()));
}

torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma) {
  if (x.dim() != 3) throw Error("a blurred baseline needs image inputs [C,H,W]; got shape " + shape_text(x.sizes()));
  if (!(sigma > 0)) return x.clone();
  // The kernel never needs to reach further than the image: beyond, it is cut off anyway.
  const int64_t radius = std::min<int64_t>(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(3 * sigma))),
                                           std::max(x.size(1), x.size(2)));
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

torch::Tensor black_canvas(const torch::Tensor& x, const ModelMetadata& meta) {
  // Each channel: the pixel value range_lo (0 for most models) after the model's normalisation.
  torch::Tensor c = torch::empty_like(x);
  if (x.dim() != 3) return c.fill_(meta.mean.empty() ? meta.range_lo : (meta.range_lo - meta.mean[0]) / (meta.std.empty() ? 1.0 : meta.std[0]));
  for (int64_t ch = 0; ch < x.size(0); ++ch) {
    const double mean = meta.mean.empty() ? 0.0 : meta.mean[std::min<size_t>(ch, meta.mean.size() - 1)];
    const double sd = meta.std.empty() ? 1.0 : meta.std[std::min<size_t>(ch, meta.std.size() - 1)];
    c[ch].fill_((meta.range_lo - mean) / sd);
  }
  return c;
}

std::pair<torch::Tensor, torch::Tensor> kmeans(const torch::Tensor& rows_in, int64_t k, uint64_t seed) {
  const torch::Tensor rows = rows_in.to(torch::kDouble).flatten(1);
  const int64_t n = rows.size(0);
  auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  if (k >= n) return {rows_in, torch::full({n}, 1.0 / static_cast<double>(n), f64)};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // k-means++: each next centre drawn with probability ~ squared distance to the nearest one so far.
  std::vector<int64_t> picked{at::randint(n, {1}, gen, torch::TensorOptions().dtype(torch::kLong)).item<int64_t>()};
  torch::Tensor d2 = (rows - rows[picked[0]]).square().sum(1);
  while (static_cast<int64_t>(picked.size()) < k) {
    const double total = d2.sum().item<double>();
    const int64_t next = total > 0 ? at::multinomial(d2 / total, 1, false, gen).item<int64_t>()
                                   : at::randint(n, {1}, gen, torch::TensorOptions().dtype(torch::kLong)).item<int64_t>();
    picked.push_back(next);
    d2 = torch::minimum(d2, (rows - rows[next]).square().sum(1));
  }
  torch::Tensor centres = rows.index_select(0, torch::tensor(picked, torch::kLong));
  torch::Tensor assign;
  for (int it = 0; it < 300; ++it) {  // Lloyd's iterations until no row changes cluster
    torch::Tensor next = torch::cdist(rows, centres).argmin(1);
    if (assign.defined() && next.equal(assign)) break;
    assign = next;
    for (int64_t j = 0; j < k; ++j) {
      torch::Tensor members = assign == j;
      if (members.any().item<bool>()) centres[j] = rows.index({members}).mean(0);
    }
  }
  torch::Tensor counts = torch::bincount(assign, {}, k).to(torch::kDouble);
  std::vector<int64_t> shape{k};
  shape.insert(shape.end(), rows_in.sizes().begin() + 1, rows_in.sizes().end());
  return {centres.view(shape).to(rows_in.scalar_type()), counts / static_cast<double>(n)};
}

namespace {

// A background set: "FILE" (.csv, or .npy under sample:/kmeans:), "sample:M:FILE" or "kmeans:K:FILE".
Baseline parse_set(const std::string& spec, const ModelMetadata& meta) {
  std::string file = spec, how = "sample";
  int64_t count = 100;
  for (const char* prefix : {"sample:", "kmeans:"}) {
    if (spec.rfind(prefix, 0) != 0) continue;
    how = std::string(prefix, 6);
    const size_t colon = spec.find(':', 7);
    const double v = colon == std::string::npos ? 0.0 : parse_number(spec.substr(7, colon - 7), spec);
    if (v < 1 || v != std::floor(v) || v > 100000)
      throw Error("baseline '" + spec + "': say " + how + ":N:FILE with a whole number N from 1 to 100000");
    count = static_cast<int64_t>(v);
    file = spec.substr(colon + 1);
  }
  if (!fs::is_regular_file(file)) throw Error("background set '" + file + "' does not exist");
  torch::Tensor rows;
  if (fs::path(file).extension() == ".csv") {
    TabularRows t = read_csv_rows(file, meta);
    if (t.items.empty()) throw Error("background set '" + file + "' has no rows");
    std::vector<torch::Tensor> xs;
    for (const auto& item : t.items) xs.push_back(item.tensor);
    rows = torch::stack(xs);
  } else {
    rows = load_input_set(file, meta, 0, 0);
  }
  Baseline b;
  b.kind = Baseline::Kind::Set;
  b.spec = spec;
  b.defaulted = false;
  if (how == "kmeans") {
    std::tie(b.tensor, b.weights) = kmeans(rows, count, 0);
  } else {
    b.tensor = load_limit(rows, count, 0);
    b.weights = torch::full({b.tensor.size(0)}, 1.0 / static_cast<double>(b.tensor.size(0)), torch::kDouble);
  }
  return b;
}

}  // namespace

bool Baseline::is_set_spec(const std::string& spec) {
  return spec.rfind("sample:", 0) == 0 || spec.rfind("kmeans:", 0) == 0 || fs::path(spec).extension() == ".csv";
}

Baseline Baseline::resolve_default(const Baseline& b, const ModelMetadata& meta) {
  if (!b.defaulted) return b;
  if (!meta.tokenizer.empty()) return parse("pad", meta);
  if (meta.features.empty()) return b;
  return parse("mean", meta);
}

Baseline Baseline::parse(const std::string& spec, const ModelMetadata& meta) {
  Baseline b;
  b.spec = spec;
  b.defaulted = false;
  if (spec.empty() || spec == "zeros") return b;
  if (spec == "pad" || spec == "unk" || spec == "mask") {
    if (meta.tokenizer.empty())
      throw Error("baseline '" + spec + "' replaces tokens: it needs a text model (metadata \"tokenizer\")");
    b.kind = Kind::Tokens;
    return b;
  }
  if (spec == "mean") {
    if (meta.features.empty())
      throw Error("baseline 'mean' (the mean row) needs a tabular model: its metadata names no features");
    b.kind = Kind::Mean;
    b.meta_ = meta;
    return b;
  }
  if (is_set_spec(spec)) return parse_set(spec, meta);
  if (spec == "zero")
    throw Error("baseline 'zero' is ambiguous: say 'zeros' (0 in the model's input space, after normalisation) or "
                "'black' (a pixel value of 0 before normalisation)");
  if (spec == "black") {
    b.kind = Kind::Black;
    b.meta_ = meta;
    return b;
  }
  if (spec.rfind("constant:", 0) == 0) {
    b.kind = Kind::Constant;
    b.value = parse_number(spec.substr(9), spec);
    return b;
  }
  {  // a bare number, as Captum users write it: constant:V
    char* end = nullptr;
    const double v = std::strtod(spec.c_str(), &end);
    if (end && *end == '\0' && end != spec.c_str() && std::isfinite(v)) {
      b.kind = Kind::Constant;
      b.value = v;
      b.spec = "constant:" + spec;
      return b;
    }
  }
  b.meta_ = meta;
  if (spec == "blur" || spec.rfind("blur:", 0) == 0) {
    b.kind = Kind::Blur;
    b.value = spec == "blur" ? 5.0 : parse_number(spec.substr(5), spec);
    if (!(b.value > 0) || b.value > 1000)
      throw Error("baseline '" + spec + "': the blur sigma must be > 0 and <= 1000 pixels");
    return b;
  }
  if (spec == "uniform") {
    b.kind = Kind::Uniform;
    return b;
  }
  fs::path p(spec);
  check_file_access(spec);  // first: a server's refusal must not depend on whether the file exists
  if (!fs::exists(p))
    throw Error("baseline '" + spec + "' is neither zeros, black, a number, constant:V, blur[:SIGMA], uniform, nor an existing file");
  b.kind = Kind::Tensor;
  if (p.extension() == ".npy") {
    b.tensor = read_npy(spec);
    if (b.tensor.dim() > 1 && b.tensor.size(0) == 1) b.tensor = b.tensor[0];
  } else {
    b.tensor = load_image(spec, meta).tensor;
  }
  return b;
}

torch::Tensor Baseline::make(const torch::Tensor& x, uint64_t seed, Model* model) const {
  switch (kind) {
    case Kind::Tokens: {
      if (!model || model->embedding_layer().empty())
        throw Error("baseline '" + spec + "' replaces tokens: it applies to a text model's embeddings");
      torch::Tensor b = model->token_baseline(spec);
      if (b.sizes() != x.sizes())
        throw Error("baseline '" + spec + "' has shape " + shape_text(b.sizes()) + ", the embeddings " + shape_text(x.sizes()),
                    ErrorKind::Internal);
      return b.to(x.options());
    }
    case Kind::Zeros: return torch::zeros_like(x);
    case Kind::Black: return black_canvas(x, meta_);
    case Kind::Constant: return torch::full_like(x, value);
    case Kind::Blur: return gaussian_blur(x, value);
    case Kind::Uniform: {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      torch::Tensor u = at::rand(x.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat));
      const double lo = x.min().item<double>(), hi = x.max().item<double>();
      return (u * (hi - lo) + lo).to(x.options());
    }
    case Kind::Mean: {
      std::vector<float> row;  // numeric columns standardised by their own mean: 0; one-hot groups 1/K
      for (const auto& f : meta_.features)
        for (int64_t k = 0; k < f.width(); ++k) row.push_back(f.type == "categorical" ? 1.0f / static_cast<float>(f.width()) : 0.0f);
      if (static_cast<int64_t>(row.size()) != x.numel())
        throw Error("baseline 'mean': the metadata's features encode to " + std::to_string(row.size()) + " values, the inputs have " +
                    shape_text(x.sizes()));
      return torch::tensor(row).view(x.sizes()).to(x.options());
    }
    case Kind::Set:
      if (tensor.sizes().slice(1) != x.sizes())
        throw Error("background set '" + spec + "' has inputs of shape " + shape_text(tensor.sizes().slice(1)) + ", the inputs have " +
                    shape_text(x.sizes()));
      return tensor.to(x.options());
    case Kind::Tensor:
      if (tensor.sizes() != x.sizes())
        throw Error("baseline '" + spec + "' has shape " + shape_text(tensor.sizes()) + ", the inputs have " +
                    shape_text(x.sizes()));
      return tensor.to(x.options());
  }
  return torch::zeros_like(x);
}

torch::Tensor load_input_set(const std::string& spec, const ModelMetadata& meta, int64_t limit, uint64_t seed,
                             Resize resize) {
  fs::path p(spec);
  check_file_access(spec);  // first, as above
  if (!fs::exists(p)) throw Error("baseline set '" + spec + "' does not exist");
  torch::Tensor set;
  if (fs::is_directory(p)) {
    std::vector<torch::Tensor> items;
    for (const auto& f : image_files_in(spec)) items.push_back(load_image(f, meta, resize).tensor);
    set = torch::stack(items);
  } else if (is_image_path(spec)) {
    set = load_image(spec, meta, resize).tensor.unsqueeze(0);  // one image: a set of one
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
  check_finite(set, "'" + spec + "'");
  return load_limit(set, limit, seed);
}

}  // namespace salient
