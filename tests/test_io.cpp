// Files in and out: .npy, images and preprocessing, atomic writes, rendering.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "helpers.hpp"
#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/image.hpp"
#include "salient/npy.hpp"

using namespace salient;

TEST(Npy, RoundTripsShapesAndValues) {
  test::TempDir dir;
  for (auto shape : {std::vector<int64_t>{5}, std::vector<int64_t>{2, 3}, std::vector<int64_t>{2, 1, 4, 3}}) {
    torch::Tensor t = torch::randn(shape);
    write_npy(dir / "a.npy", t);
    torch::Tensor back = read_npy(dir / "a.npy");
    EXPECT_EQ(back.sizes(), t.sizes());
    EXPECT_TRUE(torch::equal(back, t));
  }
  // No temporary file is left behind by the atomic write.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Npy, RejectsTruncatedAndNonFloatFiles) {
  test::TempDir dir;
  std::string bytes = encode_npy(torch::randn({4, 4}));
  write_file_atomic(dir / "cut.npy", bytes.substr(0, bytes.size() - 8));
  EXPECT_THROW(read_npy(dir / "cut.npy"), Error);
  write_file_atomic(dir / "text.npy", "hello");
  EXPECT_THROW(read_npy(dir / "text.npy"), Error);
  std::string complex = bytes;  // complex and big-endian arrays are refused; integers are read
  complex.replace(complex.find("<f4"), 3, "<c8");
  write_file_atomic(dir / "complex.npy", complex);
  EXPECT_THROW(read_npy(dir / "complex.npy"), Error);
  std::string big = bytes;
  big.replace(big.find("<f4"), 3, ">f4");
  write_file_atomic(dir / "big.npy", big);
  EXPECT_THROW(read_npy(dir / "big.npy"), Error);
}

TEST(Image, PreprocessesPerTheMetadataAndChecksShape) {
  test::TempDir dir;
  cv::Mat bgr(2, 3, CV_8UC3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(10 * x, 50 + y, 200);  // B, G, R
  cv::imwrite(dir / "p.png", bgr);
  ModelMetadata meta;
  meta.present = true;
  meta.input_shape = {3, 2, 3};
  meta.channel_order = "RGB";
  meta.mean = {0.5, 0.4, 0.3};
  meta.std = {0.2, 0.25, 0.5};
  InputItem item = load_image(dir / "p.png", meta);
  ASSERT_EQ(item.tensor.sizes(), (std::vector<int64_t>{3, 2, 3}));
  // channel 0 is red (200), channel 2 is blue (10*x)
  EXPECT_NEAR(item.tensor[0][1][2].item<double>(), (200 / 255.0 - 0.5) / 0.2, 1e-5);
  EXPECT_NEAR(item.tensor[1][1][0].item<double>(), (51 / 255.0 - 0.4) / 0.25, 1e-5);
  EXPECT_NEAR(item.tensor[2][0][2].item<double>(), (20 / 255.0 - 0.3) / 0.5, 1e-5);
  // Display is the inverse.
  cv::Mat shown = tensor_to_display(item.tensor, meta);
  EXPECT_EQ(cv::norm(shown, bgr, cv::NORM_INF), 0);

  meta.input_shape = {3, 4, 4};
  try {
    load_image(dir / "p.png", meta);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("3x2"), std::string::npos) << m;
    EXPECT_NE(m.find("4x4"), std::string::npos) << m;
  }
  EXPECT_EQ(load_image(dir / "p.png", meta, Resize::Stretch).tensor.sizes(), (std::vector<int64_t>{3, 4, 4}));
  meta.input_shape = {1, 2, 3};
  meta.channel_order = "L";
  EXPECT_THROW(load_image(dir / "p.png", meta), Error);
}

TEST(Image, CorruptAndTruncatedFilesAreErrors) {
  test::TempDir dir;
  std::string png = read_file(test::first_sample());
  write_file_atomic(dir / "half.png", png.substr(0, png.size() / 2));
  write_file_atomic(dir / "junk.png", std::string(300, 'x'));
  ModelMetadata meta;
  EXPECT_THROW(load_image(dir / "half.png", meta), Error);
  EXPECT_THROW(load_image(dir / "junk.png", meta), Error);
  EXPECT_THROW(load_image(dir / "missing.png", meta), Error);
}

TEST(Render, NormalisesByPercentileAndKeepsSign) {
  torch::Tensor one_hot = torch::zeros({1, 8, 8});
  one_hot[0][3][4] = 5.0;
  RenderOptions o;
  o.clip_percentile = 100;
  cv::Mat plane = normalise_map(one_hot, o);
  EXPECT_FLOAT_EQ(plane.at<float>(3, 4), 1.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(cv::sum(plane)[0]), 1.0f);
  o.reduce = Reduce::Sum;
  one_hot[0][0][0] = -5.0;
  plane = normalise_map(one_hot, o);
  EXPECT_FLOAT_EQ(plane.at<float>(0, 0), -1.0f);
  cv::Mat heat = render_heatmap(one_hot, cv::Mat(), o);
  EXPECT_EQ(heat.rows, 224);  // 8 px upscaled by 28
  o.colormap = "rainbow-unicorn";
  EXPECT_THROW(render_heatmap(one_hot, cv::Mat(), o), Error);
}

TEST(Image, CropResizesTheShortSideAndKeepsTheCentre) {
  test::TempDir dir;
  // 64x32 (WxH): a white 8x8 square in the centre, black elsewhere, and white bars at the far left
  // and right that a centre crop drops (a stretch would keep them).
  cv::Mat img(32, 64, CV_8UC1, cv::Scalar(0));
  img(cv::Rect(28, 12, 8, 8)).setTo(255);
  img(cv::Rect(0, 0, 4, 32)).setTo(255);
  img(cv::Rect(60, 0, 4, 32)).setTo(255);
  cv::imwrite(dir / "wide.png", img);
  ModelMetadata meta;
  meta.present = true;
  meta.input_shape = {1, 28, 28};
  meta.channel_order = "L";
  // Short side 32 -> round(28 / 0.875) = 32: no scaling; the centre 28x28 is cropped.
  torch::Tensor t = load_image(dir / "wide.png", meta, Resize::Crop).tensor[0];
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{28, 28}));
  EXPECT_NEAR(t.sum().item<double>(), 64.0, 1e-4);  // exactly the 8x8 square, at 1.0
  EXPECT_NEAR(t[14][14].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(t[14][0].item<double>(), 0.0, 1e-6);
  torch::Tensor s = load_image(dir / "wide.png", meta, Resize::Stretch).tensor[0];
  EXPECT_GT(s[14][0].item<double>(), 0.5);  // the stretched bar survives
  EXPECT_THROW(parse_resize("sideways"), Error);
}

TEST(Baseline, BlackIsPixelZeroBeforeNormalisationAndZerosIsZeroAfter) {
  ModelMetadata meta;
  meta.present = true;
  meta.mean = {0.286};
  meta.std = {0.353};
  meta.range_stated = true;
  const torch::Tensor x = torch::randn({1, 4, 4});
  EXPECT_NEAR(Baseline::parse("black", meta).make(x, 0).max().item<double>(), (0.0 - 0.286) / 0.353, 1e-6);
  EXPECT_NEAR(Baseline::parse("black", meta).make(x, 0).min().item<double>(), (0.0 - 0.286) / 0.353, 1e-6);
  EXPECT_EQ(Baseline::parse("zeros", meta).make(x, 0).abs().max().item<double>(), 0.0);
  EXPECT_NEAR(Baseline::parse("0.5", meta).make(x, 0).mean().item<double>(), 0.5, 1e-7);
  EXPECT_THROW(Baseline::parse("zero", meta), Error);
}

// The grid of many methods wraps at six panels a row (19 methods made one 4,648-px row), each
// panel where its row and column say; integer .npy outputs (segment labels) keep their type.
TEST(Image, GridsWrapAtSixPanelsAndIntegerArraysStayIntegers) {
  std::vector<cv::Mat> panels;
  std::vector<std::string> captions;
  for (int i = 0; i < 19; ++i) {
    panels.emplace_back(28, 28, CV_8UC3, cv::Scalar(i, 100, 200));
    captions.push_back("m" + std::to_string(i));
  }
  const cv::Mat grid = make_grid(panels, captions, "title");
  const int pad = 8, cap_h = 22, title_h = 28, row_h = cap_h + 28 + pad;
  EXPECT_EQ(grid.cols, 6 * (28 + pad) + pad);
  EXPECT_EQ(grid.rows, title_h + 4 * row_h + pad);
  for (int i : {0, 5, 6, 13, 18}) {
    const int x = pad + (i % 6) * (28 + pad) + 14, y = title_h + (i / 6) * row_h + cap_h + pad + 14;
    EXPECT_EQ(grid.at<cv::Vec3b>(y, x)[0], i) << i;
  }
  test::TempDir dir;
  write_npy(dir / "s.npy", torch::arange(6, torch::kInt).view({2, 3}));
  const torch::Tensor back = read_npy_any(dir / "s.npy");
  EXPECT_EQ(back.scalar_type(), torch::kInt);
  EXPECT_TRUE(torch::equal(back, torch::arange(6, torch::kInt).view({2, 3})));
}
