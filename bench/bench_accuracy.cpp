// Accuracy per compute, not time: how many samples or steps a map needs.
//
//   salient_accuracy --demo models/fashion_cnn.pt [--resnet resnet18.pt] [--threads 2]
//
// 1. SmoothGrad sample efficiency: relative L2 error against a 2,000-sample reference, for
//    n = 10, 25, 50, 100, with plain, antithetic and quasi-random (Latin hypercube) noise, averaged
//    over seeds.
// 2. Integrated Gradients completeness: relative gap |sum(attr) - (f(x) - f(0))| / |f(x) - f(0)| at
//    16..256 steps for every quadrature rule.
#include <cstring>
#include <iomanip>
#include <iostream>
#include <map>

#include "salient/image.hpp"
#include "salient/methods/integrated_gradients.hpp"
#include "salient/methods/smoothgrad.hpp"

using namespace salient;

namespace {

torch::Tensor smoothgrad(Model& m, const torch::Tensor& x, int64_t t, int64_t n, NoiseKind k, uint64_t seed) {
  SmoothGradOptions o;
  o.samples = n;
  o.noise = k;
  o.seed = seed;
  return SmoothGrad(o).attribute(m, x, torch::tensor({t}, torch::kLong)).map;
}

void sample_efficiency(const std::string& label, Model& m, const torch::Tensor& x, int seeds) {
  const int64_t t = m.predict(x).argmax(1).item<int64_t>();
  torch::Tensor ref = smoothgrad(m, x, t, 2000, NoiseKind::Gaussian, 987654321);
  std::cout << "\n" << label << ": SmoothGrad relative L2 error vs a 2,000-sample reference (mean of " << seeds
            << " seeds)\n| n | gaussian | antithetic | quasi |\n|---|---|---|---|\n";
  for (int64_t n : {10, 25, 50, 100}) {
    std::cout << "| " << n;
    for (auto k : {NoiseKind::Gaussian, NoiseKind::Antithetic, NoiseKind::Quasi}) {
      double err = 0;
      for (int s = 0; s < seeds; ++s)
        err += ((smoothgrad(m, x, t, n, k, 1000 + s) - ref).norm() / ref.norm()).item<double>();
      std::cout << " | " << std::fixed << std::setprecision(3) << err / seeds;
    }
    std::cout << " |\n" << std::flush;
  }
}

void completeness(const std::string& label, Model& m, const torch::Tensor& x) {
  const int64_t t = m.predict(x).argmax(1).item<int64_t>();
  std::cout << "\n" << label << ": Integrated Gradients relative completeness gap (zero baseline)\n"
            << "| rule | 16 | 32 | 64 | 128 | 256 |\n|---|---|---|---|---|---|\n";
  for (const auto& name : quadrature_names()) {
    std::cout << "| " << name;
    for (int64_t steps : {16, 32, 64, 128, 256}) {
      IntegratedGradientsOptions o;
      o.steps = steps;
      o.quadrature = parse_quadrature(name);
      o.batch = 16;
      Attribution a = IntegratedGradients(o).attribute(m, x, torch::tensor({t}, torch::kLong));
      std::cout << " | " << std::scientific << std::setprecision(1) << a.diagnostics["relative_gap"][0].get<double>();
    }
    std::cout << " |\n" << std::flush;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string demo, resnet;
  int threads = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--demo")) demo = argv[++i];
    else if (!std::strcmp(argv[i], "--resnet")) resnet = argv[++i];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[++i]);
  }
  set_threads(threads);
  if (!demo.empty()) {
    Model m(demo);
    // Three sample images: sneaker, bag, coat.
    for (const char* img : {"7-sneaker", "8-bag", "4-coat"}) {
      torch::Tensor x = load_image("models/samples/" + std::string(img) + ".png", m.metadata()).tensor.unsqueeze(0);
      sample_efficiency(std::string("demo CNN, ") + img, m, x, 10);
      completeness(std::string("demo CNN, ") + img, m, x);
    }
  }
  if (!resnet.empty()) {
    Model m(resnet);
    torch::manual_seed(0);
    torch::Tensor x = torch::randn({1, 3, 224, 224});
    sample_efficiency("ResNet-18 224x224 (random weights, random input)", m, x, 3);
    completeness("ResNet-18 224x224 (random weights, random input)", m, x);
  }
  return 0;
}
