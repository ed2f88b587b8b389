#include "salient/noise.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "salient/error.hpp"

namespace salient {

const std::vector<std::string>& noise_names() {
  static const std::vector<std::string> names{"gaussian", "antithetic", "quasi"};
  return names;
}

NoiseKind parse_noise_kind(const std::string& s) {
  if (s == "gaussian") return NoiseKind::Gaussian;
  if (s == "antithetic") return NoiseKind::Antithetic;
  if (s == "quasi") return NoiseKind::Quasi;
  throw Error("unknown noise '" + s + "' (expected gaussian, antithetic or quasi)");
}

std::string to_string(NoiseKind k) {
  switch (k) {
    case NoiseKind::Gaussian: return "gaussian";
    case NoiseKind::Antithetic: return "antithetic";
    case NoiseKind::Quasi: return "quasi";
  }
  return "gaussian";
}

torch::Tensor make_noise(NoiseKind kind, int64_t samples, c10::IntArrayRef shape, double sigma,
                         uint64_t seed, const torch::Device& device, torch::Dtype dtype) {
  return make_noise(kind, samples, 0, samples, shape, sigma, seed, device, dtype);
}

torch::Tensor make_noise(NoiseKind kind, int64_t samples, int64_t begin, int64_t end, c10::IntArrayRef shape,
                         double sigma, uint64_t seed, const torch::Device& device, torch::Dtype dtype) {
  // Drawn on the CPU from generators of our own, so results do not depend on the device or on
  // anything else that used the global generator. Gaussian and antithetic draws are keyed by
  // sample (or pair) index: any chunk [begin, end) is the same rows of the whole sequence, and
  // only the chunk is ever in memory.
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  auto draw = [&](int64_t index) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) + 1);
    return at::normal(0.0, 1.0, shape, gen, opts);
  };
  std::vector<int64_t> full{samples};
  full.insert(full.end(), shape.begin(), shape.end());
  torch::Tensor z;
  switch (kind) {
    case NoiseKind::Gaussian:
    case NoiseKind::Antithetic: {
      // Antithetic: pairs (e, -e) share their draw; with an odd count the last sample is a lone draw.
      std::vector<torch::Tensor> rows;
      for (int64_t j = begin; j < end; ++j)
        rows.push_back(kind == NoiseKind::Gaussian ? draw(j) : (j % 2 ? -draw(j / 2) : draw(j / 2)));
      std::vector<int64_t> chunk = full;
      chunk[0] = 0;
      z = rows.empty() ? torch::empty(chunk, opts) : torch::stack(rows);
      return (z * sigma).to(device, dtype);
    }
    case NoiseKind::Quasi: {
      int64_t d = 1;
      for (auto s : shape) d *= s;
      if (samples * d > kMaxQuasiValues)
        throw Error("quasi noise stratifies all " + std::to_string(samples) + " samples at once: " +
                    std::to_string(samples) + " x " + std::to_string(d) + " values exceed the cap of " +
                    std::to_string(kMaxQuasiValues) + "; use fewer samples or gaussian noise");
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      // Latin hypercube: for every coordinate, the S samples fall one in each of S equal-probability
      // strata (a randomly permuted, jittered 1-D low-discrepancy set), mapped to N(0,1) by the
      // inverse normal CDF. Each coordinate's empirical distribution is then almost exact.
      torch::Tensor u = at::rand({samples, d}, gen, opts);
      torch::Tensor keys = at::rand({samples, d}, gen, opts);
      torch::Tensor strata = keys.argsort(/*dim=*/0, /*descending=*/false).to(torch::kFloat);  // a random permutation per column
      torch::Tensor p = (strata + u) / static_cast<double>(samples);
      p = p.clamp(1e-7, 1 - 1e-7);
      z = (torch::erfinv(p * 2 - 1) * std::sqrt(2.0)).view(full).slice(0, begin, end);
      break;
    }
  }
  return (z * sigma).to(device, dtype);
}

}  // namespace salient
