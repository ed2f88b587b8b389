#pragma once
// Noise for the sampling methods, drawn from an explicit seed so that the same seed gives the
// same map, whatever the chunking.
#include <string>
#include <vector>

#include <torch/script.h>

namespace salient {

enum class NoiseKind {
  Gaussian,    // i.i.d. N(0, sigma^2)
  Antithetic,  // pairs (e, -e): odd-order noise terms cancel exactly
  Quasi        // Latin-hypercube Gaussians: each coordinate's samples are one per stratum
};

const std::vector<std::string>& noise_names();  // in NoiseKind's order
NoiseKind parse_noise_kind(const std::string&);
std::string to_string(NoiseKind);

// `samples` noise tensors of `shape` [S, shape...], standard deviation `sigma`, in float32 on
// `device`. Deterministic in (kind, samples, shape, sigma, seed).
torch::Tensor make_noise(NoiseKind kind, int64_t samples, c10::IntArrayRef shape, double sigma,
                         uint64_t seed, const torch::Device& device,
                         torch::Dtype dtype = torch::kFloat);
// Rows [begin, end) of the same sequence, and only those in memory (quasi noise, stratified over
// all samples, is made whole and sliced: at most kMaxQuasiValues values).
constexpr int64_t kMaxQuasiValues = int64_t{1} << 24;  // 64 MB of float32 (~0.4 GB while stratifying)
torch::Tensor make_noise(NoiseKind kind, int64_t samples, int64_t begin, int64_t end, c10::IntArrayRef shape,
                         double sigma, uint64_t seed, const torch::Device& device, torch::Dtype dtype = torch::kFloat);

}  // namespace salient
