// The floor `salient batch` is measured against: forward + backward of the same rows in passes of
// the same size and nothing else (parameters without gradients, the gradient w.r.t. the input) (no decoding, no noise, no writing), in plain LibTorch without
// Salient. usage: salient_floor MODEL ROWS PASS_ROWS THREADS C,H,W [forward]
// With "forward": forward passes only, without autograd (the floor of the black-box methods).
// Prints {"rows", "pass_rows", "seconds_compute", "seconds_load"} as JSON.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/script.h>

int main(int argc, char** argv) {
  if (argc != 6 && !(argc == 7 && std::string(argv[6]) == "forward")) {
    std::fprintf(stderr, "usage: salient_floor MODEL ROWS PASS_ROWS THREADS C,H,W [forward]\n");
    return 2;
  }
  const bool forward_only = argc == 7;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t rows = std::atoll(argv[2]), pass = std::atoll(argv[3]);
  at::set_num_threads(std::atoi(argv[4]));
  std::vector<int64_t> shape{pass};
  std::stringstream dims(argv[5]);
  for (std::string d; std::getline(dims, d, ',');) shape.push_back(std::stoll(d));
  torch::jit::Module m = torch::jit::load(argv[1]);
  m.eval();
  for (auto p : m.parameters()) p.set_requires_grad(false);  // gradients w.r.t. the input only, as Salient
  const torch::Tensor x = torch::rand(shape);
  const auto t1 = std::chrono::steady_clock::now();
  for (int64_t done = 0; done < rows; done += pass) {
    const int64_t b = std::min(pass, rows - done);
    if (forward_only) {
      torch::NoGradGuard no_grad;
      (void)m.forward({x.slice(0, 0, b)}).toTensor().select(1, 0).sum().item<float>();
      continue;
    }
    torch::Tensor xb = x.slice(0, 0, b).clone().requires_grad_(true);
    torch::Tensor out = m.forward({xb}).toTensor();
    torch::Tensor g = torch::autograd::grad({out.select(1, 0).sum()}, {xb})[0];
    (void)g.sum().item<float>();
  }
  const auto t2 = std::chrono::steady_clock::now();
  std::printf("{\"rows\": %lld, \"pass_rows\": %lld, \"seconds_load\": %.4f, \"seconds_compute\": %.4f}\n",
              static_cast<long long>(rows), static_cast<long long>(pass),
              std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
  return 0;
}
