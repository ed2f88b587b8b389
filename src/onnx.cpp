#include "salient/onnx.hpp"

#include <opencv2/dnn.hpp>

#include "salient/error.hpp"

namespace salient {

struct OnnxNet {
  cv::dnn::Net net;
};

std::shared_ptr<OnnxNet> load_onnx(const std::string& path) {
  auto n = std::make_shared<OnnxNet>();
  try {
    n->net = cv::dnn::readNetFromONNX(path);
  } catch (const cv::Exception& e) {
    std::string what = e.err.empty() ? e.what() : e.err;
    throw Error("'" + path + "' is not an ONNX model OpenCV DNN can load (" + what.substr(0, what.find('\n')) + ")");
  }
  if (n->net.empty()) throw Error("'" + path + "' is not an ONNX model OpenCV DNN can load");
  n->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  n->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  return n;
}

torch::Tensor onnx_forward(OnnxNet& n, const torch::Tensor& batch) {
  std::vector<int> dims(batch.sizes().begin(), batch.sizes().end());
  cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F, const_cast<float*>(batch.data_ptr<float>()));
  cv::Mat out;
  try {
    n.net.setInput(blob);
    out = n.net.forward().clone();
  } catch (const cv::Exception& e) {
    std::string what = e.err.empty() ? e.what() : e.err;
    throw Error("the ONNX model failed on an input of shape " + c10::str(batch.sizes()) + " (" + what.substr(0, what.find('\n')) + ")");
  }
  std::vector<int64_t> shape(out.size.p, out.size.p + out.dims);
  return torch::from_blob(out.data, shape, torch::kFloat).clone();
}

}  // namespace salient
