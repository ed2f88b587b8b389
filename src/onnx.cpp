#include "salient/onnx.hpp"

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>

#include <map>

#include <onnx/onnx_pb.h>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

struct OnnxNet {
  cv::dnn::Net net;
  // OpenCV 4.6 cannot broadcast a constant over the batch (a YOLO export's grid offsets): such a
  // net runs a batch row by row, once a batch failed where its first row alone ran.
  bool rows_only = false;
};

namespace {

// torch.onnx.export (e.g. with training=PRESERVE) emits `Identity` nodes whose input is an
// initializer; OpenCV 4.6 rejects them ("Identity ... inputs.size()"). Each such node becomes a copy
// of the initializer under the node's output name. Returns the rewritten model's bytes, or "" when
// there is nothing to rewrite (or the file is not an ONNX protobuf: OpenCV then says why).
std::string rewrite_identities(const std::string& bytes) {
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) return "";
  onnx::GraphProto* graph = model.mutable_graph();
  std::map<std::string, int> inits;
  for (int i = 0; i < graph->initializer_size(); ++i) inits[graph->initializer(i).name()] = i;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  int rewritten = 0;
  for (const auto& node : graph->node()) {
    auto it = node.op_type() == "Identity" && node.input_size() == 1 && node.output_size() == 1 ? inits.find(node.input(0))
                                                                                                : inits.end();
    if (it == inits.end()) {
      *kept.Add() = node;
      continue;
    }
    onnx::TensorProto copy = graph->initializer(it->second);
    copy.set_name(node.output(0));
    *graph->add_initializer() = copy;
    ++rewritten;
  }
  if (rewritten == 0) return "";
  graph->mutable_node()->Swap(&kept);
  std::string out;
  model.SerializeToString(&out);
  return out;
}

}  // namespace

std::shared_ptr<OnnxNet> load_onnx(const std::string& path) {
  auto n = std::make_shared<OnnxNet>();
  try {
    const std::string rewritten = rewrite_identities(read_file(path));
    n->net = rewritten.empty() ? cv::dnn::readNetFromONNX(path)
                               : cv::dnn::readNetFromONNX(rewritten.data(), rewritten.size());
  } catch (const cv::Exception& e) {
    std::string what = e.err.empty() ? e.what() : e.err;
    throw Error("'" + path + "' is not an ONNX model OpenCV DNN can load (" + what.substr(0, what.find('\n')) + ")");
  }
  if (n->net.empty()) throw Error("'" + path + "' is not an ONNX model OpenCV DNN can load");
  n->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  n->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  return n;
}

namespace {

torch::Tensor run_net(cv::dnn::Net& net, const torch::Tensor& batch) {
  std::vector<int> dims(batch.sizes().begin(), batch.sizes().end());
  cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F, const_cast<float*>(batch.data_ptr<float>()));
  net.setInput(blob);
  cv::Mat out = net.forward();
  std::vector<int64_t> shape(out.size.p, out.size.p + out.dims);
  return torch::from_blob(out.data, shape, torch::kFloat).clone();
}

// OpenCV logs a failed layer before it throws; the exception says it again, in Salient's words.
struct QuietOpenCv {
  cv::utils::logging::LogLevel saved = cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  ~QuietOpenCv() { cv::utils::logging::setLogLevel(saved); }
};

}  // namespace

torch::Tensor onnx_forward(OnnxNet& n, const torch::Tensor& batch) {
  QuietOpenCv quiet;
  auto rows = [&] {
    std::vector<torch::Tensor> out;
    for (int64_t i = 0; i < batch.size(0); ++i) out.push_back(run_net(n.net, batch.slice(0, i, i + 1).contiguous()));
    return torch::cat(out);
  };
  try {
    if (n.rows_only) return rows();
    try {
      return run_net(n.net, batch);
    } catch (const cv::Exception&) {
      if (batch.size(0) == 1) throw;
      torch::Tensor out = rows();  // a batch failed: does each row run alone?
      n.rows_only = true;
      return out;
    }
  } catch (const cv::Exception& e) {
    std::string what = e.err.empty() ? e.what() : e.err;
    throw Error("the ONNX model failed on an input of shape " + c10::str(batch.sizes()) + " (" + what.substr(0, what.find('\n')) + ")");
  }
}

}  // namespace salient
