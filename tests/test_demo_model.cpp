// The demo CNN on real Fashion-MNIST data: accuracy, gradient parity with finite differences,
// determinism, chunking, and the SmoothGrad stability claim measured.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "helpers.hpp"
#include "salient/gradients.hpp"
#include "salient/idx.hpp"
#include "salient/image.hpp"
#include "salient/methods/saliency.hpp"
#include "salient/methods/smoothgrad.hpp"

using namespace salient;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist/";

// Test-set images [N,1,28,28], preprocessed as the metadata says, and labels [N].
std::pair<torch::Tensor, torch::Tensor> test_set(const ModelMetadata& meta) {
  torch::Tensor images = read_idx(kData + "t10k-images-idx3-ubyte.gz").to(torch::kFloat) / 255.0;
  torch::Tensor labels = read_idx(kData + "t10k-labels-idx1-ubyte.gz").to(torch::kLong);
  images = ((images * (meta.range_hi - meta.range_lo) + meta.range_lo) - meta.mean.at(0)) / meta.std.at(0);
  return {images.unsqueeze(1), labels};
}

// 1 - cosine similarity of two maps, per row.
torch::Tensor cosine_distance(const torch::Tensor& a, const torch::Tensor& b) {
  return 1 - torch::cosine_similarity(a.flatten(1), b.flatten(1), 1);
}

}  // namespace

TEST(DemoModel, AccuracyOnTheTenThousandTestImagesIsAtLeast90Percent) {
  set_threads(0);
  Model model(test::demo_model());
  auto [images, labels] = test_set(model.metadata());
  ASSERT_EQ(images.size(0), 10000);
  int64_t correct = 0;
  for_chunks(images.size(0), 1000, [&](int64_t b, int64_t e) {
    correct += (model.predict(images.slice(0, b, e)).argmax(1) == labels.slice(0, b, e)).sum().item<int64_t>();
  });
  const double acc = correct / 10000.0;
  std::cout << "demo CNN test accuracy: " << acc << "\n";
  EXPECT_GE(acc, 0.90);
}

TEST(DemoModel, SampleImagesDecodeToTheTestSetTensors) {
  // The bundled PNG of class 7 is a test-set image: decoding + preprocessing must reproduce it.
  Model model(test::demo_model());
  InputItem item = load_image(test::first_sample(), model.metadata());
  auto [images, labels] = test_set(model.metadata());
  torch::Tensor d = (images - item.tensor.unsqueeze(0)).abs().flatten(1).amax(1);
  EXPECT_LT(d.min().item<double>(), 1e-5);
  EXPECT_EQ(labels[d.argmin().item<int64_t>()].item<int64_t>(), 7);
}

TEST(DemoModel, GradientMatchesCentralFiniteDifferencesInFloat64) {
  Model model(test::demo_model());
  model.to(torch::kDouble);
  auto [images, labels] = test_set(model.metadata());
  // Fashion-MNIST backgrounds are flat, so max-pooling windows there hold exact ties, where the
  // function has no derivative (one-sided differences disagree). A tiny jitter breaks the ties.
  torch::manual_seed(3);
  for (int64_t idx : {0, 1}) {
    torch::Tensor x = images.slice(0, idx, idx + 1).to(torch::kDouble);
    x = x + 1e-2 * torch::randn_like(x);
    torch::Tensor t = labels.slice(0, idx, idx + 1);
    torch::Tensor g = target_gradient(model, x, t).flatten();
    // Every pixel perturbed by +h and -h, all in one batch of 2*784.
    const double h = 1e-7;
    const int64_t d = x.numel();
    torch::Tensor eye = torch::eye(d, torch::kDouble).view({d, 1, 28, 28}) * h;
    torch::Tensor plus = model.predict(x + eye).select(1, t.item<int64_t>());
    torch::Tensor minus = model.predict(x - eye).select(1, t.item<int64_t>());
    torch::Tensor fd = (plus - minus) / (2 * h);
    const double scale = g.abs().max().item<double>();
    ASSERT_GT(scale, 0);
    // ReLU and max-pooling are piecewise linear: away from a kink the difference quotient is exact
    // up to rounding; a step of 1e-7 against a jitter of 1e-2 crosses a kink for a pixel or two at most.
    torch::Tensor err = (fd - g).abs() / scale;
    const int64_t bad = (err > 1e-6).sum().item<int64_t>();
    EXPECT_LE(bad, 2) << "image " << idx << ": " << bad << " of 784 pixels differ; max err " << err.max().item<double>();
    EXPECT_LT(torch::median(err).item<double>(), 1e-7);  // rounding: ~2e-8 measured
  }
}

TEST(DemoModel, SameSeedSameMapAndChunkedEqualsUnchunked) {
  Model model(test::demo_model());
  auto [images, labels] = test_set(model.metadata());
  torch::Tensor x = images.slice(0, 0, 3);
  torch::Tensor t = labels.slice(0, 0, 3);
  SmoothGradOptions o;
  o.samples = 30;
  o.batch = 30;
  o.seed = 5;
  torch::Tensor a = SmoothGrad(o).attribute(model, x, t).map;
  torch::Tensor b = SmoothGrad(o).attribute(model, x, t).map;
  EXPECT_TRUE(torch::equal(a, b));
  o.batch = 7;  // 30 = 7+7+7+7+2
  torch::Tensor chunked = SmoothGrad(o).attribute(model, x, t).map;
  EXPECT_TRUE(torch::allclose(a, chunked, 1e-5, 1e-7)) << (a - chunked).abs().max().item<double>();
  o.seed = 6;
  torch::Tensor other = SmoothGrad(o).attribute(model, x, t).map;
  EXPECT_GT((a - other).abs().max().item<double>(), 1e-4);
  // An input's map does not depend on the other inputs of the batch.
  o.seed = 5;
  torch::Tensor alone = SmoothGrad(o).attribute(model, x.slice(0, 1, 2), t.slice(0, 1, 2)).map;
  EXPECT_TRUE(torch::allclose(alone[0], a[1], 1e-5, 1e-7));
}

TEST(DemoModel, SmoothGradChangesLessThanTheGradientUnderASmallPerturbation) {
  // The seed's claim (Smilkov et al. 2017): two almost identical images get very different
  // gradient maps, SmoothGrad maps much less so. Measured on 20 test images.
  set_threads(0);
  Model model(test::demo_model());
  auto [images, labels] = test_set(model.metadata());
  torch::Tensor x = images.slice(0, 0, 20);
  torch::Tensor t = labels.slice(0, 0, 20);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(123);
  const double range = (x.max() - x.min()).item<double>();
  torch::Tensor xp = x + at::normal(0.0, 0.02 * range, x.sizes(), gen);  // 2% of the range
  Saliency grad(SaliencyOptions{false});
  SmoothGradOptions o;
  o.samples = 50;
  SmoothGrad smooth(o);
  const double d_grad = cosine_distance(grad.attribute(model, x, t).map, grad.attribute(model, xp, t).map).mean().item<double>();
  const double d_smooth = cosine_distance(smooth.attribute(model, x, t).map, smooth.attribute(model, xp, t).map).mean().item<double>();
  std::cout << "mean cosine distance after a 2% perturbation: gradient " << d_grad << ", SmoothGrad " << d_smooth << "\n";
  EXPECT_LT(d_smooth, 0.5 * d_grad);
}
