#include "salient/noise.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "salient/error.hpp"

namespace salient {

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
  // Drawn on the CPU from a generator of our own, so results do not depend on the device or on
  // anything else that used the global generator.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<int64_t> full{samples};
  full.insert(full.end(), shape.begin(), shape.end());
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor z;
  switch (kind) {
    case NoiseKind::Gaussian:
      z = at::normal(0.0, 1.0, full, gen, opts);
      break;
    case NoiseKind::Antithetic: {
      // Pairs (e, -e): with an odd count the last sample is a lone draw.
      std::vector<int64_t> half = full;
      half[0] = (samples + 1) / 2;
      torch::Tensor e = at::normal(0.0, 1.0, half, gen, opts);
      z = torch::stack({e, -e}, 1).flatten(0, 1).narrow(0, 0, samples);
      break;
    }
    case NoiseKind::Quasi: {
      // Latin hypercube: for every coordinate, the S samples fall one in each of S equal-probability
      // strata (a randomly permuted, jittered 1-D low-discrepancy set), mapped to N(0,1) by the
      // inverse normal CDF. Each coordinate's empirical distribution is then almost exact.
      int64_t d = 1;
      for (auto s : shape) d *= s;
      torch::Tensor u = at::rand({samples, d}, gen, opts);
      torch::Tensor keys = at::rand({samples, d}, gen, opts);
      torch::Tensor strata = keys.argsort(/*dim=*/0, /*descending=*/false).to(torch::kFloat);  // a random permutation per column
      torch::Tensor p = (strata + u) / static_cast<double>(samples);
      p = p.clamp(1e-7, 1 - 1e-7);
      z = (torch::erfinv(p * 2 - 1) * std::sqrt(2.0)).view(full);
      break;
    }
  }
  return (z * sigma).to(device, dtype);
}

}  // namespace salient
