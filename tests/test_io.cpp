// Files in and out: .npy, images and preprocessing, atomic writes, rendering.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "helpers.hpp"
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
